"""List the registered tasks (all suites), with their observation/action sizes and horizons.

  polytask tasks 'metaworld/*'
"""

from __future__ import annotations

import argparse

NAME = "tasks"
HELP = "list registered tasks of every suite"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pattern", nargs="?", default="*", help="glob over task names (default: all)")
    p.add_argument("--details", action="store_true", help="build each task to show its sizes (slower)")


def run(args: argparse.Namespace) -> int:
    from polytask.sim import registry

    names = registry.names(args.pattern)
    for name in names:
        if args.details:
            task = registry.make(name, render=False)
            s = task.spec
            print(f"{name:<36} id={s.task_id:<3} state={s.state_dim:<3} action={s.action_dim} "
                  f"horizon={s.horizon} repeat={s.action_repeat}")
            task.close()
        else:
            print(name)
    for module, reason in registry.failed_suites().items():
        print(f"unavailable suite {module}: {reason}")
    return 0 if names else 1
