"""What of an online-RL run's state lives outside its learner: the counters, where the full checkpoint is, and
the replay episodes a killed process stored after its last checkpoint (see rl/loop.py for the resume contract).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from polytask.learning.config import to_dict
from polytask.learning.data.checkpoint import (
    load_checkpoint,
    prefixed,
    restore_rng,
    rng_tensors,
    save_checkpoint,
    unprefixed,
)
from polytask.learning.data.episodes import EpisodeStore

if TYPE_CHECKING:
    from polytask.learning.rl.loop import OnlineRL

log = logging.getLogger(__name__)

LATEST = "latest.safetensors"  # the full training state in <run>/checkpoints/
STATE_KIND = "rl-state"  # not a policy: `polytask eval` refuses it by kind


@dataclass
class RunState:
    """The run's counters, saved in the full checkpoint's header."""

    step: int = 0  # agent steps over all tasks
    episode: int = 0
    updates: int = 0
    pretrained: bool = False  # BC pretraining done (or none to do)
    started: bool = False  # the evaluation at step 0 done
    last_eval: int = 0
    last_save: int = 0
    episodes_stored: dict[str, int] = field(default_factory=dict)  # per task: replay episodes in its store
    wall_s: float = 0.0  # training seconds before the last (re)start, so wall_s columns run on after a resume
    bc_loss_first: float | None = None
    bc_loss_last: float | None = None


def move_orphans(replay_dir: Path, dest: Path, keep: int) -> None:
    """Move the episodes of a replay store past the first `keep` (stored after the checkpoint) to `dest`."""
    orphans = EpisodeStore(replay_dir).paths()[keep:]
    if orphans:
        dest.mkdir(parents=True, exist_ok=True)
        for p in orphans:
            shutil.move(str(p), dest / p.name)
        log.info("%s: moved %d episodes stored after the checkpoint to %s", replay_dir, len(orphans), dest)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The full training state of a run folder, when it has one (what a resume continues from)."""
    path = Path(run_dir) / "checkpoints" / LATEST
    return path if path.exists() else None


def finite(row: Mapping[str, Any]) -> dict[str, Any]:
    """JSON has no NaN: non-finite numbers become None."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}


def save_run_state(run: OnlineRL, path: Path) -> None:
    """The full training state of `run` (its `state.wall_s` already brought up to date) into `path`."""
    st = run.state
    st.episodes_stored = {t: b.episodes_added for t, b in run.data.replay.items()}
    st.last_save = st.step
    tensors, learner_meta = run.learner.state_tensors()
    reward_t, reward_meta = run.reward.state_tensors()
    tensors.update(prefixed("reward", reward_t))
    rng_t, rng_meta = rng_tensors()
    tensors.update(rng_t)
    save_checkpoint(
        path,
        tensors,
        {
            "kind": STATE_KIND,
            "method": run.method,
            "network": run.spec.to_dict(),
            "tasks": run.names,
            "step": st.step,
            "frames": st.step * run.action_repeat,
            "config_hash": run.hash,
            "config": to_dict(run.cfg),
            "run_state": dataclasses.asdict(st),
            "learner": learner_meta,
            "reward": reward_meta,
            "rng": rng_meta,
            "replay": run.data.state(),
            "last_metrics": finite(run.last_metrics),
            "last_eval": finite(run.last_eval or {}) or None,
        },
    )


def load_run_state(run: OnlineRL, path: Path) -> None:
    """`run` (just built from the run's config) put back in the state `path` holds: counters, learner, reward hook,
    replay (the first `episodes_stored` episodes per task; later ones move to replay-orphans/) and RNGs."""
    where = str(path)
    tensors, header = load_checkpoint(
        path, expect={"kind": STATE_KIND, "method": run.method, "network": run.spec, "tasks": run.names}, device="cpu"
    )
    names = {f.name for f in dataclasses.fields(RunState)}
    run.state = RunState(**{k: v for k, v in header["run_state"].items() if k in names})
    run.learner.load_state_tensors(tensors, header["learner"], where)
    run.reward.load_state_tensors(unprefixed("reward", tensors), header.get("reward", {}), where)
    for t, buf in run.data.replay.items():  # episodes stored after this checkpoint are not history
        keep = int(run.state.episodes_stored.get(t, 0))
        move_orphans(run.replay_dir(t), run.run_dir / "replay-orphans" / run.parts.replay_dirs[t], keep)
        buf.store = EpisodeStore(run.replay_dir(t))
        buf.reload(keep)
    run.data.load_state(header["replay"], where)
    run.last_metrics = dict(header.get("last_metrics", {}))
    run.last_eval = header.get("last_eval")
    restore_rng(tensors, header["rng"])
