"""The pixel runs: Meta-World from 84x84 camera frames with image goals, each run one job of a time budget.

  experts  run 1: pixel experts from 1 scripted demo each (BC pretraining, then DrQ-v2 + the BC term on the
           environment reward, image goals, placements drawn at every reset), one process per task side by side;
           each keeps its replay store and checkpoint in WORK/experts/<task>/
  ot       run 2: the OT-only pixel expert (no environment reward; target encoder and auto scale, Table IV), two
           seeds side by side (with `experts` in the same job: all in one pool)
  table1   run 3: Table I on pixels: exploratory pixel stores per task, relabelled by the task's pixel expert where
           WORK holds one, else by its scripted teacher on the privileged state; one pixel student for all tasks
           (one-hot goals, and image goals) against pixel GCBC from 1 demo per task, same network, same evaluation
  distil   run 4: run 1's experts distilled into one pixel student (`polytask distill`'s job: each expert
           relabels its own replay store), evaluated on their tasks against the experts
  curve    run 5: the reduced pixel distillation of this CPU (4 tasks, smaller student and batch) with a learning
           curve: success during training of the one-hot student, and GCBC beside it

Every evaluation: `--eval-episodes` (10) episodes per task on reset seeds from 1e6, which no store, demo or training
episode uses (placements are drawn from Meta-World's 50 per reset seed), actor means. The runs given share the
budget (`--budget-s`); stages size themselves from rates measured in the job (bench/pixel_common.py). Results:
OUT/pixel_runs.json after every stage, and OUT/rows.md (the rows for docs/results*.md), printed last.

On the GPU machine run through bench/pixel_runs.sh (installs the brought wheels and EGL first):
  bench/pixel_runs.sh $OUT table1                 # run 3 alone: one job
  bench/pixel_runs.sh $OUT experts ot distil      # runs 1, 2 and 4: one job
Here (run 5, CPU): .venv/bin/python bench/pixel_runs.py curve --profile cpu --budget-s 1200 --out OUT
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pixel_common as pc
import pixel_distil as pd
import pixel_experts as pe
import pixel_students as ps
from pixel_common import Job

RUNS = ("experts", "ot", "table1", "distil", "curve")
WEIGHTS = {"rl": 4.0, "table1": 4.0, "distil": 1.5, "curve": 1.0}  # shares of the budget when runs share a job


RENDER = {**pe.RENDER, **ps.RENDER, **pd.RENDER}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", choices=RUNS)
    ap.add_argument("--out", required=True, help="results folder (pixel_runs.json, rows.md)")
    ap.add_argument("--work", default="/tmp/pixel-work", help="stores, demos, run folders, checkpoints")
    ap.add_argument("--profile", default="gpu", choices=sorted(pc.PROFILES))
    ap.add_argument("--budget-s", type=float, default=480.0, help="wall clock of the whole job")
    ap.add_argument("--eval-episodes", type=int, default=None)
    ap.add_argument("--transitions", type=int, default=None, help="exploratory transitions per task at most")
    ap.add_argument("--expert-tasks", nargs="*", default=None)
    args = ap.parse_args(argv)
    args.command = "bench/pixel_runs.py " + shlex.join(argv)
    job = Job(args)
    job.report.save()
    groups = (["rl"] if {"experts", "ot"} & set(args.runs) else []) + [r for r in args.runs if r in WEIGHTS]
    for i, group in enumerate(groups):
        share = WEIGHTS[group] / sum(WEIGHTS[g] for g in groups[i:])
        names = [r for r in ("experts", "ot") if r in args.runs] if group == "rl" else [group]
        t0 = time.perf_counter()
        try:
            if group == "rl":
                results = pe.rl(job, names, share)
            elif group == "distil":
                results = {"distil": pd.distil(job, share)}
            else:
                results = {group: ps.students(job, group, share)}
            for name in names:
                job.report.runs[name] = {"status": "ok", **results[name], "seconds": round(time.perf_counter() - t0, 1)}
        except Exception as err:
            import traceback

            for name in names:
                job.report.runs[name] = {
                    "status": "error",
                    "error": f"{type(err).__name__}: {err}",
                    "trace": traceback.format_exc()[-3000:],
                    "seconds": round(time.perf_counter() - t0, 1),
                }
        job.report.save()
        job.log(f"{'+'.join(names)}: {', '.join(job.report.runs[n]['status'] for n in names)}")
    job.close()
    print(job.report.rows(RENDER), flush=True)
    return 0 if all(job.report.runs[r]["status"] == "ok" for r in args.runs) else 1


if __name__ == "__main__":
    sys.exit(main())
