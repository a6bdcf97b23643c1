"""Train one expert per task as a sweep of jobs, on this machine or on a Ray cluster.

Each job is `polytask train-expert` for one task (same trainer, same run folder contents: checkpoints, eval,
curves, replay), in a sweep folder <runs-dir>/<date>-<name>/ with one run folder per task, jobs.json (the plan)
and summary.csv. Every job writes progress.json and job.log into its run folder; progress lines are printed
every --progress-every seconds and a summary table ends the command. A job that crashes or is killed is started
again from its latest checkpoint (--retries times); `--resume SWEEP` continues a stopped sweep the same way.

Backends: `local` runs the jobs one after another in this process (or --workers N at once in processes);
`ray` runs each job as a Ray task with --cpus-per-job / --gpus-per-job (a fraction shares one card), on a local
Ray instance, or on the cluster at RAY_ADDRESS. Ray is an optional extra (see docs/scaling.md).
`--batched` runs all the jobs in this process in lockstep with ONE batched update of the K experts (the GPU's way:
one update costs about the launches of one expert's); same run folders, checkpoints and --resume.

  polytask train-experts --tasks 'metaworld/*' --demos data/demos --steps 100000
  polytask train-experts --tasks 'metaworld/*' --demos data/demos --backend ray --gpus-per-job 0.25
  RAY_ADDRESS=head:6379 polytask train-experts --tasks 'dmc/*' --bc-steps 0 --set agent.bc_regularize=false \
      --backend ray --cpus-per-job 2
  polytask train-experts --resume runs/20260101-120000-experts --backend ray
  polytask train-experts --tasks 'metaworld/*' --demos data/demos --batched --set train.device=cuda \
      agent.compile=graph train.env_workers=1
"""

from __future__ import annotations

import argparse
import sys

NAME = "train-experts"
HELP = "train one expert per task as parallel jobs (local process pool or Ray), with retries and a summary"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tasks", nargs="+", metavar="GLOB", help="registry task names or globs, e.g. 'metaworld/*'")
    p.add_argument(
        "--demos",
        metavar="STORE_ROOT",
        help="an episode store holding every task's demos, or a folder of per-task stores named "
        "like metaworld_door-open (omit to learn from scratch: needs --bc-steps 0 "
        "--set agent.bc_regularize=false)",
    )
    p.add_argument("--reward", choices=("env", "ot"), help="environment reward or OT trajectory matching")
    p.add_argument("--steps", type=int, help="agent steps of online finetuning per job")
    p.add_argument("--bc-steps", type=int, help="BC pretraining steps per job (0 = skip)")
    p.add_argument("--config", help="YAML file of ExpertConfig values, shared by every job")
    p.add_argument("--seed", type=int, help="random seed of every job")
    p.add_argument(
        "--set",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="override any ExpertConfig key for every job, e.g. --set train.save_every=5000",
    )
    p.add_argument("--runs-dir", default="runs", help="parent folder of the sweep (default runs)")
    p.add_argument("--name", default="experts", help="sweep folder name (<runs-dir>/<date>-<name>)")
    p.add_argument(
        "--resume",
        metavar="SWEEP_DIR",
        help="continue a sweep: finished jobs are kept, the others "
        "resume from their checkpoints (the plan's tasks and settings are used)",
    )
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local: this machine (in turn, or --workers N processes); ray: Ray tasks (default local)")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="local backend: jobs at once, each in its own process (1: one after another, here)",
    )
    p.add_argument("--batched", action="store_true",
                   help="all jobs in this process in lockstep, with one batched update of the K experts (tasks "
                   "of one episode length; --cpus-per-job is then the process's torch threads)")
    p.add_argument("--cpus-per-job", type=float, default=1.0, help="CPU cores per job (its torch threads)")
    p.add_argument(
        "--gpus-per-job",
        type=float,
        default=0.0,
        help="ray backend: GPUs per job, a fraction shares a card (jobs train on cuda when > 0)",
    )
    p.add_argument(
        "--ray-cpus",
        type=int,
        default=None,
        help="CPUs of the local Ray instance (default: all of this machine's; ignored with RAY_ADDRESS)",
    )
    p.add_argument("--retries", type=int, default=2, help="restarts of a crashed or killed job (default 2)")
    p.add_argument("--progress-every", type=float, default=10.0, help="seconds between progress lines (0: off)")


def _overrides(args: argparse.Namespace) -> dict:
    from polytask.learning.config import parse_overrides

    out: dict = {}
    for key, value in (
        ("reward.kind", args.reward),
        ("train.steps", args.steps),
        ("train.seed", args.seed),
        ("bc.pretrain_steps", args.bc_steps),
    ):
        if value is not None:
            out[key] = value
    out.update(parse_overrides(args.set))
    return out


def run(args: argparse.Namespace) -> int:
    from polytask.learning.scale.sweep import Sweep, plan_sweep, run_batched, run_sweep, summary_table
    from polytask.sim import registry

    if args.batched and (args.backend != "local" or args.workers != 1):
        raise ValueError("--batched runs every job in this process: give no --backend ray or --workers")
    if args.backend == "ray":
        from polytask.learning.scale.ray_backend import RayMissing, import_ray

        try:
            import_ray()
        except RayMissing as err:
            print(f"polytask {NAME}: {err}", file=sys.stderr)
            return 2
    elif args.gpus_per_job > 0:
        raise ValueError("--gpus-per-job is a Ray resource; with --backend local set --set train.device=cuda")
    if args.resume:
        if args.tasks or args.demos or args.config or args.set:
            raise ValueError("--resume uses the sweep's own jobs.json; give no --tasks/--demos/--config/--set")
        sweep = Sweep.load(args.resume)
    else:
        if not args.tasks:
            raise ValueError("give --tasks GLOB... (or --resume SWEEP_DIR)")
        sweep = plan_sweep(
            registry.expand(args.tasks),
            args.runs_dir,
            args.name,
            args.config,
            _overrides(args),
            args.demos,
            args.cpus_per_job,
            args.gpus_per_job,
        )
    how = "batched in this process" if args.batched else f"backend {args.backend}"
    print(f"sweep folder: {sweep.root} ({len(sweep.jobs)} jobs, {how})", flush=True)
    if args.batched:
        results = run_batched(sweep, out=lambda s: print(s, flush=True))
        print(summary_table(results))
        return 0
    results = run_sweep(
        sweep,
        args.backend,
        retries=args.retries,
        workers=args.workers,
        ray_cpus=args.ray_cpus,
        progress_every=args.progress_every,
        out=lambda s: print(s, flush=True),
    )
    print(summary_table(results))
    return 0 if all(r.status == "done" for r in results) else 1
