"""Import the authors' demonstrations (a pickle of [pixels, states, actions, rewards]) or DrQ-v2 replay `.npz`
episodes into an episode store, or cut Franka Kitchen play data (the relay-policy-learning demos) into task
snippets. Pickles are read with a numpy-only unpickler: anything else is refused unrun.

  polytask import-demos --pickle expert_demos.pkl --task metaworld/door-open --out data/demos/door-open
  polytask import-demos --drqv2 buffer/*.npz --task metaworld/door-open --out data/replay/door-open
  polytask import-demos --kitchen-play relay-kitchen/ --out data/demos/kitchen-play
"""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "import-demos"
HELP = "import the authors' demo pickles, DrQ-v2 replay episodes or Kitchen play data into an episode store"


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--pickle", help="the authors' demo pickle [pixels, states, actions, rewards]")
    src.add_argument("--drqv2", nargs="+", help="DrQ-v2 replay episode .npz files")
    src.add_argument(
        "--kitchen-play",
        help="a Kitchen play file or folder (relay-policy-learning parsed .pkl, "
        "D4RL .npz/.hdf5): every trajectory cut at each completion into snippets of the six tasks",
    )
    p.add_argument(
        "--task",
        help="registry task the demos belong to (not with --kitchen-play: snippets are "
        "labelled by the element they complete)",
    )
    p.add_argument("--render", action="store_true", help="--kitchen-play: render 84x84 frames by kinematic playback")
    p.add_argument("--out", required=True, help="episode store folder (created or appended to)")


def run(args: argparse.Namespace) -> int:
    from polytask.learning.data.episodes import EpisodeStore
    from polytask.sim import registry

    if args.kitchen_play and args.task:
        raise SystemExit("--task is not used with --kitchen-play (each snippet is labelled by what it completes)")
    if not args.kitchen_play and not args.task:
        raise SystemExit("--task is required with --pickle and --drqv2 (the registry task the demos belong to)")
    store = EpisodeStore(args.out)
    if args.kitchen_play:
        from polytask.learning.data.kitchen_import import import_play
        from polytask.learning.data.play_files import load_play_dir, load_play_file

        path = Path(args.kitchen_play)
        trajs = load_play_dir(path) if path.is_dir() else load_play_file(path)
        episodes = import_play(trajs, store, render=args.render)
        counts = {t: sum(1 for ep in episodes if ep.task == t) for t in registry.names("kitchen/*")}
        print(f"imported {len(episodes)} snippets from {len(trajs)} trajectories into {store.root}: {counts}")
        return 0
    from polytask.learning.data.import_authors import import_authors_demos, import_drqv2_episode

    task_id = registry.spec(args.task).task_id
    if args.pickle:
        written = import_authors_demos(args.pickle, args.task, task_id, store)
    else:
        written = [import_drqv2_episode(p, args.task, task_id, store) for p in args.drqv2]
    print(f"imported {len(written)} episodes into {store.root}")
    return 0
