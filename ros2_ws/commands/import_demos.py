"""Import the authors' demonstrations (a pickle of [pixels, states, actions, rewards]) or DrQ-v2 replay `.npz`
episodes into an episode store. Pickles are read with a numpy-only unpickler: anything else is refused unrun.

  polytask import-demos --pickle expert_demos.pkl --task metaworld/door-open --out data/demos/door-open
  polytask import-demos --drqv2 buffer/*.npz --task metaworld/door-open --out data/replay/door-open
"""

from __future__ import annotations

import argparse

NAME = "import-demos"
HELP = "import the authors' demo pickles or DrQ-v2 replay episodes into an episode store"


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--pickle", help="the authors' demo pickle [pixels, states, actions, rewards]")
    src.add_argument("--drqv2", nargs="+", help="DrQ-v2 replay episode .npz files")
    p.add_argument("--task", required=True, help="registry task the demos belong to")
    p.add_argument("--out", required=True, help="episode store folder (created or appended to)")


def run(args: argparse.Namespace) -> int:
    from polytask.learning.data.episodes import EpisodeStore
    from polytask.learning.data.import_authors import import_authors_demos, import_drqv2_episode
    from polytask.sim import registry

    task_id = registry.spec(args.task).task_id
    store = EpisodeStore(args.out)
    if args.pickle:
        written = import_authors_demos(args.pickle, args.task, task_id, store)
    else:
        written = [import_drqv2_episode(p, args.task, task_id, store) for p in args.drqv2]
    print(f"imported {len(written)} episodes into {store.root}")
    return 0
