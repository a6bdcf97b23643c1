"""The robot protocol bench's parts that are not its stages (bench/xarm_protocol.py): its command line (and the
part of it a worker process inherits), the per-expert OT-return summary, and the bars of the Table II analogue."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

STAGES = ("demos", "experts", "bc", "multitask", "lifelong", "report")


def ot_returns(run_dir: Path, k: int = 5) -> dict[str, float]:
    """Mean OT return (the reward the expert trains on) of its first and last `k` training episodes, and its
    success rate over the last quarter of training episodes (with exploration noise)."""
    with open(run_dir / "train.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    ret = np.array([float(r["train_reward_return"]) for r in rows])
    succ = np.array([float(r["episode_success"]) for r in rows])
    q = max(1, len(rows) // 4)
    return {
        "ot_return_first": float(ret[:k].mean()),
        "ot_return_last": float(ret[-k:].mean()),
        "train_success_last_quarter": float(succ[-q:].mean()),
        "train_episodes": len(rows),
    }


def bar_verdicts(totals: dict[str, float], n: int) -> list[str]:
    """The bars: experts >= 7 of 10 (0.7 n), multi-task >= experts - 0.5, lifelong >= 0.9 x multi-task."""
    out = []
    if "expert" in totals:
        out.append(
            f"experts {totals['expert']:.1f} >= {0.7 * n:.1f}: {'met' if totals['expert'] >= 0.7 * n else 'MISSED'}"
        )
    if "expert" in totals and "multitask" in totals:
        ok = totals["multitask"] >= totals["expert"] - 0.5
        out.append(
            f"multi-task {totals['multitask']:.1f} >= experts - 0.5 = {totals['expert'] - 0.5:.1f}: "
            f"{'met' if ok else 'MISSED'}"
        )
    if "multitask" in totals and "lifelong" in totals:
        ok = totals["lifelong"] >= 0.9 * totals["multitask"]
        out.append(
            f"lifelong {totals['lifelong']:.1f} >= 0.9 x multi-task = {0.9 * totals['multitask']:.2f}: "
            f"{'met' if ok else 'MISSED'}"
        )
    return out


NOT_FORWARDED = ("help", "tasks", "stages", "workers")  # what a worker gets from its parent, not from its argv


def forwarded_argv(args: argparse.Namespace) -> list[str]:
    """The options of `args` as a command line, less those a worker is given anew (NOT_FORWARDED)."""
    out: list[str] = []
    for action in parser()._actions:
        if action.dest in NOT_FORWARDED:
            continue
        value, flag = getattr(args, action.dest), action.option_strings[0]
        if isinstance(action, argparse._StoreTrueAction):
            out += [flag] if value else []
        elif action.nargs == "*":
            out += [flag, *map(str, value)] if value else []
        else:
            out += [flag, str(value)]
    return out


def parser(description: str = "") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="/tmp/xarm-protocol", help="run root; every stage is cached here")
    p.add_argument("--tasks", nargs="*", default=["*"], help="patterns over the paper's 10 robot tasks")
    p.add_argument("--stages", nargs="*", default=list(STAGES), choices=STAGES)
    p.add_argument("--demos", default="", help="episode store with recorded demos (e.g. teleop); default: scripted")
    p.add_argument("--num-demos", type=int, default=2, help="demos per task (the paper: up to 2)")
    p.add_argument("--pixels", action="store_true", help="84x84 camera experts and students (a GPU machine)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--expert-steps", type=int, default=6000, help="agent steps of online RL per expert")
    p.add_argument("--bc-pretrain-steps", type=int, default=3000, help="the expert's BC pretraining steps")
    p.add_argument("--expert-hidden", type=int, default=256, help="Table IV: 1024 (the CPU default is 256)")
    p.add_argument("--expert-batch", type=int, default=0, help="0: Table IV's 256")
    p.add_argument("--set", nargs="*", default=[], help="further expert config overrides, key=value")
    p.add_argument("--bc-steps", type=int, default=1500, help="single-task BC gradient steps")
    p.add_argument("--distill-steps", type=int, default=12000, help="multi-task distillation steps")
    p.add_argument("--lifelong-steps", type=int, default=1500, help="distillation steps per added task")
    p.add_argument("--lr", type=float, default=1e-3, help="multi-task / BC student lr (cosine schedule)")
    p.add_argument("--lifelong-lr", type=float, default=5e-4, help="lifelong student lr (constant)")
    p.add_argument("--student-hidden", type=int, default=256, help="Table V: 1024")
    p.add_argument("--student-layers", type=int, default=3)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workers", type=int, default=1, help="processes training experts at once (one per core)")
    return p
