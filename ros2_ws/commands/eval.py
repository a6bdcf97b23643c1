"""Evaluate a policy checkpoint (student, expert, multi-task RL baseline, progressive net) on tasks by the
suites' scoring rules (learning/policies/loaders.py picks the loader from the checkpoint's kind).

Prints the per-task score (success rate; DMC return/1000) and the effective number of tasks (their sum, the
paper's headline figure); --out writes the table as CSV. Episode i uses reset seed --seed + i, so two policies
evaluated with the same seed face the same placements.

  polytask eval --policy runs/d1/student.safetensors --tasks 'metaworld/*'
"""

from __future__ import annotations

import argparse

NAME = "eval"
HELP = "evaluate a student or expert checkpoint: per-task scores and the effective number of tasks"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policy", required=True,
                   help="policy checkpoint (.safetensors): student, expert, multi-task RL or progressive")
    p.add_argument("--tasks", default=None,
                   help="task glob, e.g. 'metaworld/*' (default: the tasks the checkpoint was trained on)")
    p.add_argument("--episodes", type=int, default=10, help="episodes per task (default 10)")
    p.add_argument("--seed", type=int, default=1000, help="episode i is reset with seed --seed + i (default 1000)")
    p.add_argument("--out", default=None, help="CSV of the per-task table")
    p.add_argument("--video", default=None, help="folder for one mp4 per task")
    p.add_argument("--device", default="cpu", help="torch device: cpu or cuda (default cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from polytask.learning.policies.evaluate import effective_tasks, evaluate, write_csv
    from polytask.learning.policies.loaders import load_any_policy
    from polytask.sim import registry

    torch.set_num_threads(1)
    loaded = load_any_policy(args.policy, args.device)
    policy, known, render = loaded.policy, loaded.tasks, loaded.pixels
    tasks = registry.names(args.tasks) if args.tasks else known
    if not tasks:
        raise ValueError(f"no tasks to evaluate: --tasks {args.tasks!r} matches nothing and the checkpoint "
                         "names no tasks")
    unknown = [t for t in tasks if known and t not in known]
    if unknown:
        raise ValueError(f"{args.policy}: policy was not trained on {unknown}; it knows {known}")
    iterator = tasks
    if not args.no_progress:
        from tqdm import tqdm

        iterator = tqdm(tasks, desc="eval", unit="task")
    results = {}
    for t in iterator:
        video = Path(args.video) / f"{t.replace('/', '_')}.mp4" if args.video else None
        results[t] = evaluate(policy, t, episodes=args.episodes, seed=args.seed, render=render, video_path=video)
    for t, r in results.items():
        print(f"  {t:45s} score {r.mean_score:.2f}  success {r.success_rate:.2f}  return {r.mean_return:.1f}")
    print(f"effective tasks: {effective_tasks(results):.2f} / {len(tasks)}")
    if args.out:
        write_csv(results, args.out)
    return 0
