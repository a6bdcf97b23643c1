"""Start a launch graph here, without the ros2 CLI: one process per node, Ctrl-C stops them all cleanly.

    polytask launch deploy robot:=sim task:=xarm/reach checkpoint:=runs/distill/unified.safetensors
    polytask launch deploy --dry-run          # print the node command lines only
    polytask launch --markdown                # the README section describing every graph
    polytask launch --write-readme README.md  # rewrite that section between its markers

The graphs are the ones `ros2 launch polytask <name>.launch.py` starts (both read polytask.launch.graphs).
"""

from __future__ import annotations

import argparse
import shlex
import sys

NAME = "launch"
HELP = "start a launch graph (teleop_record, train_task, deploy, distill) without the ros2 CLI"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from polytask.launch.graphs import GRAPHS

    parser.add_argument("graph", nargs="?", choices=sorted(GRAPHS), help="which graph to start")
    parser.add_argument("args", nargs="*", metavar="arg:=value", help="launch arguments (see --show)")
    parser.add_argument("--dry-run", action="store_true", help="print the node commands and exit")
    parser.add_argument("--show", action="store_true", help="print the graph's arguments and nodes and exit")
    parser.add_argument("--markdown", action="store_true", help="print the README section for all graphs")
    parser.add_argument("--write-readme", metavar="README", default=None,
                        help="rewrite the launch section between the markers of this README file")
    parser.add_argument("--respawn", action="store_true", help="restart any node that exits")
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")


def run(args: argparse.Namespace) -> int:
    from polytask.launch import graph_docs, graphs
    from polytask.launcher import Launcher, node_command

    if args.markdown:
        sys.stdout.write(graph_docs.markdown())
        return 0
    if args.write_readme:
        from pathlib import Path

        from polytask.learning.data.atomic import write_text

        path = Path(args.write_readme)
        write_text(path, graph_docs.render_readme(path.read_text()))
        print(f"updated the launch section of {path}")
        return 0
    if not args.graph:
        for g in graphs.GRAPHS.values():
            print(f"{g.name:14s} {g.description}")
        return 0
    if args.show:
        section = graph_docs.markdown().split("### ")
        print("### " + next(s for s in section if s.startswith(f"`{args.graph}`")).rstrip())
        return 0
    nodes = graphs.resolve(args.graph, list(args.args))
    if args.dry_run:
        for n in nodes:
            cmd = node_command(n)
            print(f"{n.name}: " + (shlex.join(cmd) if cmd else f"(not started: ROS package {n.package} is not "
                                                                  f"installed here)"))
        return 0
    launcher = Launcher(nodes, respawn=True if args.respawn else None)
    launcher.start()
    return launcher.run(duration=args.duration)
