"""Inspect an episode store: episodes, lengths, tasks, success; optionally a contact sheet or video.

  polytask inspect data/demos/door-open
  polytask inspect data/demos/door-open --episode 0 --sheet /tmp/ep0.png --video /tmp/ep0.mp4
"""

from __future__ import annotations

import argparse
import logging

NAME = "inspect"
HELP = "print an episode store's contents; write a contact sheet or video of an episode"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="episode store folder")
    p.add_argument("--episode", type=int, default=0, help="episode index for --sheet/--video (default 0)")
    p.add_argument("--sheet", default=None, help="write a PNG contact sheet of the episode here")
    p.add_argument("--video", default=None, help="write an mp4 video of the episode here")
    p.add_argument("--totals-only", action="store_true", help="only the per-task totals")


class _CountWarnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def run(args: argparse.Namespace) -> int:
    from polytask.learning.data.episodes import EpisodeStore, load_episode
    from polytask.learning.data.store_summary import format_summary, summarize
    from polytask.learning.reporting.media import contact_sheet, write_video

    store = EpisodeStore(args.store, create=False)
    counter = _CountWarnings()
    logging.getLogger("polytask.learning.data.episodes").addHandler(counter)
    rows = summarize(store)
    print(format_summary(rows, store.root, skipped=counter.count, per_episode=not args.totals_only))
    if args.sheet or args.video:
        if not 0 <= args.episode < len(rows):
            raise ValueError(f"--episode {args.episode} out of range; the store has {len(rows)} valid episodes")
        episode = load_episode(store.root / rows[args.episode].file)
        if episode.pixels is None:
            raise ValueError(f"episode {rows[args.episode].file} has no pixels (a state-only store)")
        if args.sheet:
            print(f"contact sheet: {contact_sheet(episode.pixels, args.sheet)}")
        if args.video:
            print(f"video: {write_video(episode.pixels, args.video)}")
    return 0
