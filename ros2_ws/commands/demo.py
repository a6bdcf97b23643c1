"""The main job on an embedded default (what `make demo` runs), end to end on a CPU in minutes:

  1. record scripted demos for a few tasks of each suite (pixels + state) and print the store summary;
  2. distil scripted Meta-World teachers into one state-based student and print its effective number of tasks
     beside goal-conditioned BC from one demo per task;
  3. start the deploy graph (sim bridge + policy server + monitor) with that student for about 20 seconds and
     print what the monitor saw.

Everything is written under --out (default runs/demo); run again to start over.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

NAME = "demo"
HELP = "run the embedded end-to-end demo (demos -> distilled policy -> evaluation -> deployment)"

DEMO_TASKS = ("metaworld/button-press-topdown", "metaworld/drawer-close", "kitchen/slide-cabinet",
              "xarm/reach", "xarm/push")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo; replaced)")
    p.add_argument("--episodes", type=int, default=2, help="demos per task in stage 1 (default 2)")
    p.add_argument("--skip", nargs="*", default=[], choices=("demos", "distill", "deploy"),
                   help="stages to skip")
    p.add_argument("--deploy-seconds", type=float, default=20.0, help="how long stage 3 runs the deploy graph")


def _banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def stage_demos(out: Path, episodes: int) -> None:
    from polytask.learning.data.episodes import EpisodeStore
    from polytask.learning.data.store_summary import format_summary, summarize
    from polytask.learning.policies.demos import record_demos

    store_dir = out / "demos"
    for name in DEMO_TASKS:
        t0 = time.perf_counter()
        report = record_demos(name, episodes, store_dir, seed=0, render=True)
        print(f"{name:<32} kept {report.kept}/{episodes}  success {report.successes}/{report.attempted}"
              f"  ({time.perf_counter() - t0:.1f} s)", flush=True)
    print(format_summary(summarize(EpisodeStore(store_dir)), store_dir, per_episode=False))
    print("DMC cheetah demos come from trained experts (bench/dmc_torso_experts.py: about 70 min on this CPU for "
          "all ten variants), which takes longer than this demo.")


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    if "demos" not in args.skip:
        _banner("1/3 scripted demonstrations")
        stage_demos(out, args.episodes)
    from polytask.commands import _demo_stages

    student = None
    if "distill" not in args.skip:
        _banner("2/3 behaviour distillation (state, scripted Meta-World teachers)")
        student = _demo_stages.stage_distill(out).student_path
    if "deploy" not in args.skip:
        _banner("3/3 deployment graph (sim bridge + policy server + monitor)")
        _demo_stages.stage_deploy(out, args.deploy_seconds, student_path=student)
    print(f"\ndemo finished; everything is under {out}")
    return 0
