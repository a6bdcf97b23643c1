"""Training end to end, simulator included: env frames/s (and updates/s) of real expert runs, measured in one process
against a baseline run side by side, chunk by chunk (so that load from other jobs hits both alike).

Sections:
- `one`: one pixel expert (`ExpertTrainer`, the loop of `polytask train-expert`) with its task in process vs in an
  environment worker (`train.env_workers=1`: the step runs while the update does).
- `batched`: K experts (`polytask train-experts --batched`: lockstep, one batched update, `--agent-compile graph`
  captures it on a GPU) vs the same K runs one after another with the eager update (what one expert gets
  alone), aggregate env frames/s and updates/s; the batched side steps its tasks in K env workers unless
  `--batched-workers 0`.

Every run first plays one untimed episode (seed frames) and a warm-up episode with updates; then `--episodes`
timed episodes per side, alternating. Sizes: `--size toy` (hidden 64, 32-d features, batch 64: what a CPU runs in
seconds) or `paper` (hidden 1024, 512-d features, batch 256: GPU only). Demo-free (env reward, no BC term), so no
demo store is needed; the update is the same DrQ-v2 step with the BC term off.

  .venv/bin/python bench/bench_train_loop.py --section one --task metaworld/button-press-topdown
  .venv/bin/python bench/bench_train_loop.py --section batched --k 3 --obs state
  python3 bench/bench_train_loop.py --device cuda --size paper --k 16 --agent-compile graph   # GPU machine
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from polytask.learning.config import load_config
from polytask.learning.rl.batched_run import BatchedExpertRun
from polytask.learning.rl.expert import ExpertTrainer
from polytask.learning.rl.expert_config import ExpertConfig
from polytask.sim import registry

SIZES = {
    "toy": {"network.hidden": 64, "network.feature_dim": 32, "agent.batch_size": 64},
    "paper": {"network.hidden": 1024, "network.feature_dim": 512, "agent.batch_size": 256},
}


def sig(x: float, digits: int = 3) -> float:
    return float(f"{x:.{digits}g}")


def lockstep_tasks(pattern: str, k: int) -> list[str]:
    """K tasks of `pattern` that share one episode length (lockstep), the commonest length first; when fewer
    than K share it, they repeat (each expert then differs by its seed and run folder)."""
    names = registry.names(pattern)
    if not names:
        raise SystemExit(f"--tasks {pattern} matches no task")
    lengths = [(registry.spec(t).horizon, registry.spec(t).action_repeat) for t in names]
    common = max(set(lengths), key=lengths.count)
    same = [t for t, n in zip(names, lengths, strict=True) if n == common]
    return [same[i % len(same)] for i in range(k)]


def config(task: str, args: argparse.Namespace, root: Path, workers: int, index: int = 0) -> ExpertConfig:
    probe = registry.make(task, render=False)  # one episode of seed frames: replay before the first update
    spec = probe.spec
    probe.close()
    ov: dict[str, Any] = {
        **SIZES[args.size],
        "train.task": task,
        "train.runs_dir": str(root),
        "train.threads": args.threads,
        "train.device": args.device,
        "train.progress": False,
        "train.eval_video": False,
        "train.eval_episodes": 1,
        "train.eval_every": 0,
        "train.save_every": 0,
        "network.obs": args.obs,
        "bc.pretrain_steps": 0,
        "agent.bc_regularize": False,
        "agent.num_expl_steps": 0,
        "agent.compile": args.agent_compile,
        "network.goal_modality": "none",
        "train.seed_frames": spec.horizon * spec.action_repeat,
        "train.env_workers": workers,
        "train.steps": 10**9,
        "train.seed": 1 + index,
        "train.name": f"{index:02d}-{task.replace('/', '-')}",
        "replay.capacity": 100000,
    }
    return load_config(ExpertConfig, None, ov)


def advance(runs: list[ExpertTrainer], episodes: int, train: Callable[[], None]) -> tuple[float, int, int]:
    """Let `runs` play `episodes` more episodes each through `train`; returns (seconds, frames, updates)."""
    steps0, ups0 = sum(r.state.step for r in runs), sum(r.state.updates for r in runs)
    for r in runs:
        r.cfg.train.steps = r.state.step + episodes * r.task.spec.horizon
    if torch.cuda.is_available() and runs[0].device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    train()
    if runs[0].device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    frames = (sum(r.state.step for r in runs) - steps0) * runs[0].action_repeat
    return dt, frames, sum(r.state.updates for r in runs) - ups0


def _sequential(runs: list[ExpertTrainer]) -> Callable[[], None]:
    def go() -> None:
        for r in runs:
            r.train()

    return go


def compare(sides: dict[str, tuple[list[ExpertTrainer], Callable[[], None]]], episodes: int) -> dict[str, dict]:
    """Two untimed episodes per side (seed frames, then updates warm up), then `episodes` timed, alternating."""
    for runs, train in sides.values():
        advance(runs, 2, train)
    totals = {name: [0.0, 0, 0] for name in sides}
    for _ in range(episodes):
        for name, (runs, train) in sides.items():
            for i, v in enumerate(advance(runs, 1, train)):
                totals[name][i] += v
    return {
        name: {
            "seconds": round(s, 2),
            "env_frames": f,
            "updates": u,
            "env_frames_per_s": sig(f / s),
            "updates_per_s": sig(u / s),
        }
        for name, (s, f, u) in totals.items()
    }


def bench_one(args: argparse.Namespace, root: Path) -> dict:
    runs = {w: ExpertTrainer(config(args.task, args, root / f"one-w{w}", w)) for w in (0, 1)}
    try:
        for r in runs.values():
            r.begin()
        res = compare(
            {"in_process": ([runs[0]], runs[0].train), "env_worker": ([runs[1]], runs[1].train)}, args.episodes
        )
    finally:
        for r in runs.values():
            r.close()
    res["ratio_env_frames"] = sig(res["env_worker"]["env_frames_per_s"] / res["in_process"]["env_frames_per_s"])
    return {"task": args.task, **res}


def bench_batched(args: argparse.Namespace, root: Path) -> dict:
    tasks = lockstep_tasks(args.tasks, args.k)
    driver = BatchedExpertRun(
        [
            lambda i=i, t=t: ExpertTrainer(config(t, args, root / "batched", args.batched_workers, i))
            for i, t in enumerate(tasks)
        ],
        mode="graph" if args.agent_compile == "graph" else "none",
    )
    eager = argparse.Namespace(**{**vars(args), "agent_compile": "none"})  # the baseline: one eager expert at a time
    seq = [ExpertTrainer(config(t, eager, root / "sequential", 0, i)) for i, t in enumerate(tasks)]
    try:
        driver.begin()
        for r in seq:
            r.begin()
        res = compare(
            {"one_after_another_eager": (seq, _sequential(seq)), "batched": (driver.runs, driver.train)}, args.episodes
        )
    finally:
        driver.close()
        for r in seq:
            r.close()
    base, new = res["one_after_another_eager"], res["batched"]
    res["ratio_env_frames"] = sig(new["env_frames_per_s"] / base["env_frames_per_s"])
    res["ratio_updates"] = sig(new["updates_per_s"] / base["updates_per_s"])
    return {"k": args.k, "tasks": tasks, "batched_env_workers": args.batched_workers, **res}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--section", choices=("one", "batched", "all"), default="all")
    p.add_argument("--task", default="metaworld/button-press-topdown", help="section one: the pixel task")
    p.add_argument("--tasks", default="metaworld/*", help="section batched: the tasks (a registry glob)")
    p.add_argument("--k", type=int, default=3, help="section batched: experts")
    p.add_argument("--obs", choices=("pixels", "state"), default="pixels")
    p.add_argument("--size", choices=tuple(SIZES), default="toy")
    p.add_argument("--episodes", type=int, default=2, help="timed episodes per side")
    p.add_argument("--batched-workers", type=int, default=1, help="env workers of each batched run (0: in process)")
    p.add_argument("--agent-compile", choices=("none", "graph"), default="none")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--json", help="write the results here too")
    args = p.parse_args(argv)
    out: dict[str, Any] = {
        "machine": f"{platform.node()} {os.cpu_count()} cores, torch {torch.__version__}, {args.device}",
        "size": args.size,
        "obs": args.obs,
    }
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as tmp:
        if args.section in ("one", "all"):
            out["one"] = bench_one(args, Path(tmp))
            print(json.dumps({"one": out["one"]}), flush=True)
        if args.section in ("batched", "all"):
            out["batched"] = bench_batched(args, Path(tmp))
            print(json.dumps({"batched": out["batched"]}), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
