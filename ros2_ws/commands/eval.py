"""Evaluate a policy checkpoint (distilled student or per-task expert) on tasks by the suites' scoring rules.

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
    p.add_argument("--policy", required=True, help="checkpoint (.safetensors) of a student or an expert")
    p.add_argument("--tasks", default=None,
                   help="task glob, e.g. 'metaworld/*' (default: the tasks the checkpoint was trained on)")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=1000)
    p.add_argument("--out", default=None, help="CSV of the per-task table")
    p.add_argument("--video", default=None, help="folder for one mp4 per task")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from polytask.learning.checkpoint import read_header
    from polytask.learning.evaluate import effective_tasks, evaluate, write_csv
    from polytask.sim import registry

    torch.set_num_threads(1)
    header = read_header(args.policy)
    if header.get("kind") == "student":
        from polytask.learning.distill.student import load_student_policy

        policy = load_student_policy(args.policy, args.device)
        known = list(header["tasks"])
        render = policy.spec.obs == "pixels"
    else:
        from polytask.learning.expert_policy import load_policy

        policy = load_policy(args.policy, device=args.device)
        known = [str(header.get("task", ""))] if header.get("task") else []
        render = header.get("network", {}).get("obs_modality") == "pixels"
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
