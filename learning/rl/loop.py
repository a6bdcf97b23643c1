"""The one online-RL loop: the expert trainer, the multi-task RL baselines and lifelong RL all run on it.

What the loop owns, once: the run folder (config.yaml, checkpoints/, replay stores, CSV/TensorBoard logs), one
replay and one demo buffer per task (`TaskReplay`), the counters (`RunState`), the step loop and its update cadence
(none before `train.seed_frames`, then one every `agent.update_every_steps`), the reward hook a finished episode
goes through, evaluation and checkpoint cadence, and the exact resume after a kill. What varies comes in as
`RunParts` (rl/parts.py): the learner (rl/learners.py), the reward hook (rl/rewards.py), each task's goal, and
the writer of the policy checkpoint.

Episodes cycle over the tasks: episode e plays task e mod N and is reset with seed `seed*1000003 + e`, so an
episode boundary needs no simulator state. That is why checkpoints land at episode ends (every `train.save_every`
steps, after BC pretraining and at the end): the full checkpoint (`checkpoints/latest.safetensors`) then holds
everything else that decides the future — the learner's weights, target critics and Adam moments, the reward hook's
state (OT target encoder and scale), the counters, torch/numpy/Python RNG states and the replay and demo samplers'
RNGs. The replay episodes themselves are in the run's episode stores, of which a resumed run reloads exactly the
first `episodes_stored` per task (later files, written by the killed process after its last checkpoint, move to
`replay-orphans/`), and the CSV rows logged after the checkpoint are dropped. On CPU with the same thread count a
resumed run therefore repeats the uninterrupted one bit for bit (tests/test_trainer.py, test_multitask_resume.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from polytask.learning.config import dump_yaml, load_config, to_dict
from polytask.learning.data.atomic import write_text
from polytask.learning.data.checkpoint import (
    config_hash,
)
from polytask.learning.data.episodes import Episode, EpisodeStore
from polytask.learning.data.frames import FrameStacker
from polytask.learning.data.recorder import EpisodeRecorder
from polytask.learning.data.replay import ReplayBuffer, TaskReplay
from polytask.learning.policies.evaluate import evaluate
from polytask.learning.policies.multitask import MultiTaskPolicy
from polytask.learning.reporting.report import per_task_rows, table
from polytask.learning.reporting.run_logging import Progress, RunLogger, open_run_dir
from polytask.learning.rl.parts import RunParts
from polytask.learning.rl.run_state import (  # LATEST, STATE_KIND, latest_checkpoint: the loop's names too
    LATEST,
    STATE_KIND,  # noqa: F401
    RunState,
    latest_checkpoint,
    load_run_state,
    save_run_state,
)
from polytask.sim import registry
from polytask.sim.task import Step, Task

log = logging.getLogger(__name__)

EVAL_SEED = 1_000_000  # evaluation placements never coincide with training ones
RESET_SEED_STRIDE = 1_000_003  # episode e is reset with seed*stride + e


@dataclass
class _Playing:
    """The episode being played: its task, last step, stacked observation, recorder and the step in flight."""

    name: str
    task: Task
    step: Step
    x: np.ndarray
    rec: EpisodeRecorder
    action: np.ndarray | None = None
    pending: Callable[[], Step] | None = None
    updated: bool = False  # an update ran at the step in flight


class OnlineRL:
    """One online-RL run over one or more tasks. Subclasses (rl/expert.py, rl/multitask.py) only build the parts;
    `run()` does pretraining, the evaluation at step 0, `train.steps` steps, the final evaluation and checkpoint,
    and `resume(run_dir)` continues a killed run."""

    config_type: type[Any]  # the config dataclass a subclass trains from (what `resume` loads config.yaml into)

    def __init__(self, cfg: Any, parts: RunParts, run_dir: str | Path | None = None, resume: bool = False) -> None:
        tc = cfg.train
        self.cfg, self.parts, self.method = cfg, parts, parts.method
        self.tasks, self.names = parts.tasks, list(parts.tasks)
        self.spec, self.goals, self.learner, self.reward = parts.spec, parts.goals, parts.learner, parts.reward
        self.device, self.pixels = parts.device, self.spec.obs_modality == "pixels"
        self.action_repeat = self.tasks[self.names[0]].spec.action_repeat
        self.run_dir, self.resumed = open_run_dir(run_dir, tc.runs_dir, tc.name or parts.run_name), resume
        if not resume:
            write_text(self.run_dir / "config.yaml", dump_yaml(cfg))

        def buffer(t: str, i: int) -> ReplayBuffer:
            return ReplayBuffer(cfg.replay.capacity, self.pixels, self.spec.frame_stack,
                                cfg.agent.n_step or self.tasks[t].spec.n_step, cfg.agent.gamma, seed=tc.seed + 10 * i,
                                store=EpisodeStore(self.replay_dir(t)))

        def demo_buffer(t: str, i: int) -> ReplayBuffer:
            return ReplayBuffer(10**9, self.pixels, self.spec.frame_stack, 1, cfg.agent.gamma,
                                seed=tc.seed + 10 * i + 1)

        self.data = TaskReplay(self.names, self.goals, buffer, demo_buffer, seed=tc.seed)
        for t, ep in ((t, ep) for t, episodes in parts.demos.items() for ep in episodes):
            self.data.demos[t].add(ep, persist=False)
        self.state = RunState()
        self.hash = config_hash(to_dict(cfg))
        self.last_metrics: dict[str, float] = {}
        self.last_eval: dict[str, Any] | None = None  # the latest evaluation's row
        self.first_update_metrics: dict[str, float] | None = None  # the first update after (re)start, for tests
        self.on_update: Callable[[int, dict[str, float]], None] | None = None  # e.g. tests recording every update
        self._eval_tasks: dict[str, Task] = {}
        self._logger: RunLogger | None = None
        self._progress: Progress | None = None
        self._stacker = FrameStacker(self.spec.frame_stack, self.pixels)
        self._ep: _Playing
        self._start = time.time()

    # --- where things are ----------------------------------------------------------------------------------
    @property
    def step(self) -> int:
        return self.state.step

    @property
    def episode(self) -> int:
        return self.state.episode

    @property
    def updates(self) -> int:
        return self.state.updates

    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def policy_path(self) -> Path:
        return self.checkpoint_dir / self.parts.policy_file

    def replay_dir(self, task: str) -> Path:
        return self.run_dir / "replay" / self.parts.replay_dirs[task]

    @property
    def logger(self) -> RunLogger:
        """CSV + TensorBoard (a resumed run opens it when it loads its checkpoint)."""
        if self._logger is None:
            self._logger = RunLogger(self.run_dir, self.names)
        return self._logger

    def _wall_s(self) -> float:
        return self.state.wall_s + time.time() - self._start

    # --- resume --------------------------------------------------------------------------------------------
    @classmethod
    def resume(cls, run_dir: str | Path, overrides: Mapping[str, Any] | None = None, **kwargs: Any) -> OnlineRL:
        """Continue a run from `run_dir/checkpoints/latest.safetensors` with its saved config (+ overrides, e.g.
        `{"train.steps": N}` to train on); `kwargs` go to the subclass's constructor."""
        run_dir = Path(run_dir)
        ckpt = run_dir / "checkpoints" / LATEST
        if not ckpt.exists():
            raise FileNotFoundError(f"{run_dir}: no checkpoint {ckpt.relative_to(run_dir)} to resume from "
                                    f"(train.save_every > 0 writes one every that many steps)")
        cfg = load_config(cls.config_type, run_dir / "config.yaml", dict(overrides or {}))
        trainer = cls(cfg, run_dir, _resume=True, **kwargs)
        try:
            trainer._load(ckpt)
        except Exception:
            trainer.close()
            raise
        if overrides:
            write_text(run_dir / "config.yaml", dump_yaml(cfg))
        return trainer

    @classmethod
    def open(cls, cfg: Any, run_dir: str | Path, overrides: Mapping[str, Any] | None = None,
             **kwargs: Any) -> OnlineRL:
        """`run_dir` resumed when it holds a full checkpoint (with `overrides`), else a new run of `cfg` there."""
        if latest_checkpoint(run_dir) is not None:
            return cls.resume(run_dir, overrides, **kwargs)
        return cls(cfg, run_dir, **kwargs)

    def _load(self, path: Path) -> None:
        load_run_state(self, path)
        self._start = time.time()
        self._logger = RunLogger(self.run_dir, self.names, resume_step=self.state.step)  # drops rows past the step
        log.info("resumed %s at step %d (episode %d)", self.run_dir, self.state.step, self.state.episode)

    def save(self) -> Path:
        """The full training state (checkpoints/latest.safetensors) and the policy checkpoint; returns the latter."""
        st = self.state
        st.wall_s, self._start = round(self._wall_s(), 2), time.time()
        save_run_state(self, self.checkpoint_dir / LATEST)
        return self.parts.write_policy(self, self.policy_path)

    # --- evaluation ------------------------------------------------------------------------------------------
    def policy(self) -> MultiTaskPolicy:
        """The policy being trained, acting with its actor's mean, its goal looked up by task name."""
        encoder, actor = self.learner.policy_modules()
        return MultiTaskPolicy(encoder, actor, self.spec, self.goals, self.device)

    def evaluate(self) -> dict[str, Any]:
        """Every task for `train.eval_episodes` episodes from seed EVAL_SEED; logs and returns the row: the effective
        number of tasks (sum of the scores: success rate, DMC return/1000), the means, and each task's score."""
        tc, st = self.cfg.train, self.state
        policy = self.policy()
        render = self.pixels or tc.eval_video
        results = {}
        for t in self.names:
            if t not in self._eval_tasks:
                self._eval_tasks[t] = registry.make(t, render=render, quality=tc.render_quality)
            video = (self.run_dir / "videos" / f"eval_{st.step:08d}_{t.replace('/', '-')}.mp4"
                     if tc.eval_video else None)
            results[t] = evaluate(policy, t, episodes=tc.eval_episodes, seed=EVAL_SEED, task=self._eval_tasks[t],
                                  video_path=video)
        row: dict[str, Any] = {
            "step": st.step, "frames": st.step * self.action_repeat,
            "effective_tasks": float(sum(r.mean_score for r in results.values())),
            "score": float(np.mean([r.mean_score for r in results.values()])),
            "success_rate": float(np.mean([r.success_rate for r in results.values()])),
            "return": float(np.mean([r.mean_return for r in results.values()])), "episodes": tc.eval_episodes}
        for t, r in results.items():
            row[f"score/{t}"], row[f"return/{t}"] = r.mean_score, r.mean_return
        st.last_eval = st.step
        self.last_eval = row
        self.logger.log("eval", st.step, {**row, "wall_s": round(self._wall_s(), 2)})
        self.logger.plot_curves()
        return row

    def scores(self, row: Mapping[str, Any]) -> dict[str, float]:
        """task -> score of an evaluation row."""
        return {t: float(row[f"score/{t}"]) for t in self.names}

    # --- training ----------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Pretraining, the evaluation at step 0, `train.steps` steps, the final evaluation and checkpoint; a resumed
        run skips what its checkpoint says is done."""
        try:
            summary = self.begin()
            self.train()
            return self.conclude(summary)
        finally:
            self.logger.plot_curves()
            self.logger.flush()

    def begin(self) -> dict[str, Any]:
        """What comes before the RL loop: BC pretraining and the evaluation at step 0 (unless done)."""
        st = self.state
        summary: dict[str, Any] = {"run_dir": str(self.run_dir), "method": self.method}
        summary.update(self.pretrain())
        if not st.started:
            summary["eval_start"] = self.scores(self.evaluate())
            st.started = True
        return summary

    def conclude(self, summary: dict[str, Any]) -> dict[str, Any]:
        """What comes after it: the final evaluation (unless the last one was at this step), the checkpoint, the
        table of scores; returns `summary` completed."""
        st = self.state
        final = self.last_eval if st.last_eval == st.step and self.last_eval else self.evaluate()
        if st.last_save != st.step or not self.policy_path.exists():
            self.save()
        scores = self.scores(final)
        table(per_task_rows({self.method: scores}, self.names), self.run_dir / "eval_table",
              title=f"{self.method}: score per task after {st.step} steps")
        summary.update(step=st.step, updates=st.updates, wall_s=round(self._wall_s(), 1),
                       effective_tasks=float(final["effective_tasks"]), eval_final=scores, eval_final_row=final)
        return summary

    def pretrain(self) -> dict[str, float]:
        """BC pretraining on the demos (the learner decides whether it does any), then a checkpoint (with
        train.save_every > 0); returns the first and last loss, or nothing when there was none. A resumed run does
        not pretrain again."""
        st = self.state
        if not st.pretrained:
            st.pretrained = True
            losses = self.learner.pretrain(self.data)
            if losses:
                st.bc_loss_first, st.bc_loss_last = losses[0], losses[-1]
                for i in range(0, len(losses), max(1, len(losses) // 100)):
                    self.logger.log("bc", i, {"loss": losses[i]})
                if self.cfg.train.save_every > 0:
                    self.save()
        if st.bc_loss_first is None or st.bc_loss_last is None:
            return {}
        return {"bc_loss_first": st.bc_loss_first, "bc_loss_last": st.bc_loss_last}

    def train(self) -> None:
        """The RL loop alone: on to `train.steps` agent steps, with the periodic evaluations and checkpoints.

        A step is sent to the task (`send_step`: act, start the simulator step), the update due at it runs while
        the step is in flight (a task in an environment worker steps meanwhile; an in-process one has stepped
        already), then the step is received (`receive_step`). The pieces are public so that a driver of several
        runs in lockstep (rl/batched_run.py) steps them with one batched update in place of `update_due`."""
        self.begin_training()
        try:
            while not self.finished:
                self.start_episode()
                while self.playing:
                    if self.send_step():
                        self.record_update(self.learner.update(self.data, self._ep.name, self.state.step))
                    self.receive_step()
                self.end_episode()
        finally:
            self.end_training()

    def begin_training(self) -> None:
        self._stacker = FrameStacker(self.spec.frame_stack, self.pixels)
        self._progress = Progress(self.cfg.train.steps, self.state.step, self.action_repeat,
                                  enabled=self.cfg.train.progress, desc=f"train {self.parts.run_name}")

    def end_training(self) -> None:
        if self._progress is not None:
            self._progress.close()

    @property
    def finished(self) -> bool:
        return self.state.step >= self.cfg.train.steps

    @property
    def playing(self) -> bool:
        """The episode goes on: not done, and steps left."""
        return not self._ep.step.done and not self.finished

    def start_episode(self) -> None:
        """Reset the task of the next episode (episodes cycle over the tasks) with the episode's seed."""
        st = self.state
        name = self.names[st.episode % len(self.names)]
        task = self.tasks[name]
        step = task.reset(seed=self.cfg.train.seed * RESET_SEED_STRIDE + st.episode)
        self._ep = _Playing(name, task, step, self._stacker.reset(self._obs(step)), EpisodeRecorder(step))

    def send_step(self) -> bool:
        """Act and start the step; True when an update is due now (none before `train.seed_frames`, then one
        every `agent.update_every_steps`, once there is replay)."""
        ep, st = self._ep, self.state
        self.reward.before_step(st.step)
        ep.action = self.learner.act(ep.name, ep.x, st.step)
        ep.pending = ep.task.step_async(ep.action)
        st.step += 1
        ep.updated = (st.step >= self.cfg.train.seed_frames // self.action_repeat
                      and st.step % self.cfg.agent.update_every_steps == 0 and len(self.data) > 0)
        return ep.updated

    def receive_step(self) -> None:
        ep = self._ep
        assert ep.pending is not None and ep.action is not None
        ep.step = ep.pending()
        ep.x = self._stacker.push(self._obs(ep.step))
        ep.rec.add(ep.action, ep.step)
        if self._progress is not None:
            self._progress.advance(1, int(ep.updated))

    def end_episode(self) -> None:
        """The episode into replay and the log; the evaluation and checkpoint when due."""
        tc, st, ep = self.cfg.train, self.state, self._ep
        self._log_episode(ep.name, self._finish_episode(ep.name, ep.task, ep.rec))
        if tc.eval_every > 0 and st.step - st.last_eval >= tc.eval_every:
            self.evaluate()
        if tc.save_every > 0 and st.step - st.last_save >= tc.save_every:
            self.save()

    def _obs(self, step: Any) -> np.ndarray:
        return step.pixels if self.pixels else step.state

    def record_update(self, metrics: dict[str, float]) -> None:
        """The counters and hooks of one update done at this step."""
        st = self.state
        if self.first_update_metrics is None:
            self.first_update_metrics = dict(metrics, step=st.step)
        self.last_metrics = metrics
        if self.on_update is not None:
            self.on_update(st.step, metrics)
        st.updates += 1

    def _finish_episode(self, name: str, task: Task, rec: EpisodeRecorder) -> Episode:
        """The played episode, rewarded by the reward hook, into the task's replay (and its store)."""
        reward, noted = self.reward.episode_rewards(name, rec)
        extra = {"terminal": bool(rec.last.terminal), "env_return": float(rec.env_reward.sum()),
                 "episode_index": self.state.episode, **noted}
        episode = rec.episode(task, source="replay", keep_pixels=self.pixels, reward=reward, extra=extra,
                              goal_pixels=self.parts.goal_pixels.get(name))
        self.data.replay[name].add(episode)
        self.state.episode += 1
        return episode

    def _log_episode(self, name: str, episode: Episode) -> None:
        st, progress = self.state, self._progress
        self.logger.log("train", st.step, {
            "frames": st.step * self.action_repeat, "episode": st.episode, "task": name,
            "episode_return": episode.extra["env_return"], "train_reward_return": float(episode.reward.sum()),
            "episode_score": episode.score, "episode_success": int(episode.episode_success),
            "env_fps": round(progress.env_fps, 1) if progress else "", "updates_per_s":
            round(progress.ups, 2) if progress else "", "wall_s": round(self._wall_s(), 2), **self.last_metrics})

    def close(self) -> None:
        for t in [*self.tasks.values(), *self._eval_tasks.values()]:
            t.close()
        if self._logger is not None:
            self._logger.close()
