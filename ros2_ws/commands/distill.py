"""Distil per-task teachers into one unified student (PolyTask phase 2, Eq. 2 / Algorithm 2).

Each --stores folder is an episode store (e.g. an expert's replay buffer); the --experts entry at the same
position is its teacher: an expert checkpoint, or `scripted` for the task's scripted policy (one entry applies to
all stores). Every stored state is relabelled with the teacher's action (into <out>/relabelled/, resumable), then
a randomly initialised student is trained on all tasks (resumable: rerun the same command after a crash) and
evaluated; the policy is <out>/student.safetensors, the per-task table <out>/eval.csv. The job itself is
polytask.learning.distill.pipeline (shared with the offline distiller node); this module only maps the flags.

With --lifelong, the stores' tasks are ADDED to the lifelong run in <out> one at a time (one command per added
task works too): the student is re-distilled over the relabelled stores of every task seen so far, with the same
parameter count, and each stage's policy and evaluation are kept in <out>/lifelong/<method>/history.json.

  polytask distill --experts scripted --stores data/replay/door-open data/replay/drawer-open --out runs/d1
  polytask distill --experts scripted --stores data/replay/hammer --out runs/ll --lifelong
  polytask distill --experts scripted --stores data/replay/* --out runs/d2 --nproc 4   # data-parallel (DDP)

With --nproc N the distillation runs data-parallel on N local processes (torchrun; gloo on CPU, NCCL with
--set device=cuda): each reads its share of the relabelled stores, gradients are all-reduced, process 0 writes the
usual files; batch_size stays the global batch. Across machines, see docs/scaling.md.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from polytask.learning.distill.pipeline import DistillJob

NAME = "distill"
HELP = "relabel stores with teachers and distil one unified student (multi-task or lifelong)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--experts", nargs="+", required=True,
                   help="one teacher per store: an expert checkpoint or 'scripted' (a single entry applies to all)")
    p.add_argument("--stores", nargs="+", required=True, help="episode stores to relabel (one task each)")
    p.add_argument("--out", required=True, help="run folder (relabelled stores, checkpoints, tables)")
    p.add_argument("--config", default=None, help="distillation YAML (default: Table V, see config/distill.yaml)")
    p.add_argument("--goal", choices=("onehot", "language", "image", "sinusoid"), default=None,
                   help="student goal modality (overrides the config)")
    p.add_argument("--goal-images", default=None,
                   help="demo store whose successful demos' last frames are the image goals (--goal image)")
    p.add_argument("--steps", type=int, default=None, help="gradient steps (per added task with --lifelong)")
    p.add_argument("--lifelong", action="store_true", help="add the stores' tasks to a lifelong run in --out")
    p.add_argument("--method", choices=("polytask", "finetune"), default="polytask",
                   help="lifelong method (finetune: the Fine-tuning baseline)")
    p.add_argument("--eval-episodes", type=int, default=10, help="episodes per task (0: skip evaluation)")
    p.add_argument("--eval-seed", type=int, default=1000,
                   help="evaluation episode i is reset with seed --eval-seed + i (default 1000)")
    p.add_argument("--no-resume", action="store_true", help="refuse to continue an existing distillation state")
    p.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="config overrides, e.g. lr=1e-3 student.hidden=512 (YAML values)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--nproc", type=int, default=1,
                   help="data-parallel processes on this machine, started through torchrun (default 1)")


def job_from_args(args: argparse.Namespace) -> DistillJob:
    from polytask.learning.config import parse_overrides
    from polytask.learning.distill.pipeline import DistillJob

    return DistillJob(experts=args.experts, stores=args.stores, out=args.out, config=args.config,
                      overrides=parse_overrides(args.set), goal=args.goal, goal_images=args.goal_images,
                      steps=args.steps, lifelong=args.lifelong, method=args.method,
                      eval_episodes=args.eval_episodes, eval_seed=args.eval_seed, resume=not args.no_resume,
                      show_progress=not args.no_progress)


def run(args: argparse.Namespace) -> int:
    import os

    from polytask.learning.distill.pipeline import run_distillation

    job = job_from_args(args)
    if args.nproc > 1 and args.lifelong:
        raise ValueError("--lifelong distils on one process; drop --nproc")
    if args.nproc > 1 and "LOCAL_RANK" not in os.environ:  # not yet inside torchrun: start the ranks
        from polytask.learning.distill.ddp import launch

        return launch(job, args.nproc)
    run_distillation(job)
    return 0
