"""The `polytask` command: every user-facing job is a subcommand (`polytask <cmd> --help`)."""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from types import ModuleType

from polytask import commands


def command_modules() -> list[ModuleType]:
    """Every module of polytask.commands, in name order."""
    found = []
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        found.append(importlib.import_module(f"{commands.__name__}.{info.name}"))
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="polytask",
        description="PolyTask: per-task experts from a few demos, distilled into one unified policy.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for module in command_modules():
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, KeyError, FileNotFoundError) as err:
        # Errors from validation name the file/key; show them plainly instead of a traceback.
        if args.verbose:
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"polytask {args.command}: error: {message}", file=sys.stderr)
        return 1
    except Exception as err:
        from polytask.sim.mujoco_render import gl_failure

        line = gl_failure(err)
        if line is None or args.verbose:
            raise
        print(f"polytask {args.command}: error: {line}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
