"""Record demonstrations into an episode store.

With no --policy, the task's scripted expert acts (Meta-World policies, Kitchen IK controllers, xArm
reach/push). With --policy <checkpoint>, a trained expert acts (DMC demos come from experts, as in the paper).
Successful episodes are kept; the success rate is reported.

  polytask record-demos --task metaworld/door-open --episodes 5 --out data/demos/door-open
"""

from __future__ import annotations

import argparse

NAME = "record-demos"
HELP = "record scripted or expert demonstrations into an episode store"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True, action="append",
                   help="registry task name or glob (repeatable), e.g. metaworld/door-open or 'xarm/*'")
    p.add_argument("--episodes", type=int, default=10, help="successful demos to keep per task (default 10)")
    p.add_argument("--out", required=True, help="episode store folder (created or resumed)")
    p.add_argument("--policy", default=None, help="expert checkpoint to act with instead of the scripted expert")
    p.add_argument("--seed", type=int, default=0, help="first reset seed; seeds count up from it")
    p.add_argument("--no-pixels", action="store_true", help="state only (no rendering; much faster)")
    p.add_argument("--quality", choices=("fast", "default"), default="fast", help="render quality")
    p.add_argument("--keep-failed", action="store_true", help="also store failed episodes")
    p.add_argument("--device", default="cpu", help="torch device for --policy (cpu|cuda)")


def run(args: argparse.Namespace) -> int:
    from polytask.learning.policies.demos import record_demos
    from polytask.sim import registry

    tasks = registry.expand(args.task)
    status = 0
    for name in tasks:
        policy, source = None, "scripted"
        if args.policy:
            from polytask.learning.policies.expert import load_policy

            policy, source = load_policy(args.policy, device=args.device), "expert"
        report = record_demos(name, args.episodes, args.out, seed=args.seed, render=not args.no_pixels,
                              quality=args.quality, policy=policy, source=source, keep_failed=args.keep_failed)
        verdict = (f"success rate {report.successes}/{report.attempted} = {100 * report.success_rate:.0f}%"
                   if report.has_success else f"mean score {report.mean_score:.3f} (no success rule: all kept)")
        print(f"{name}: kept {report.kept}/{args.episodes} demos, {verdict}")
        if report.kept < args.episodes:
            status = 1
    return status
