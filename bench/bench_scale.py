"""Scaling out, both halves in one run: expert jobs per hour on a local Ray instance with 1 vs 2 workers, and
distillation samples/s on 1 vs 2 data-parallel processes (torchrun, gloo), each pair measured back to back.

Experts: `--jobs` tiny Meta-World state experts (the real trainer: BC, DrQ-v2 finetuning, evaluation,
checkpoints) run as Ray tasks of 1 CPU each, on a local instance of 1 CPU (one job at a time) and then of 2 CPUs;
jobs/hour counts from submission to the last result (Ray's start-up is timed apart). Distillation: the same
relabelled stores and student (Table V sizes by default), 1 process then 2 (`--nproc 2`, same global batch);
samples/s over the training loop (from the run's history), and the command's wall time with start-up. Prints
`uptime` before and after: other jobs on the machine change the figures.

  .venv/bin/python bench/bench_scale.py --jobs 4 --expert-steps 600 --distill-steps 300
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TASKS = [
    "metaworld/button-press-topdown",
    "metaworld/coffee-button",
    "metaworld/drawer-close",
    "metaworld/door-open",
    "metaworld/drawer-open",
    "metaworld/button-press",
]
TINY = {
    "network.obs": "state",
    "network.hidden": 64,
    "network.actor_layers": 2,
    "agent.batch_size": 64,
    "bc.batch_size": 64,
    "train.seed_frames": 200,
    "agent.num_expl_steps": 0,
    "train.eval_episodes": 2,
    "train.eval_every": 0,
    "train.eval_video": False,
    "train.save_every": 200,
    "bc.pretrain_steps": 50,
}


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def bench_experts(scratch: Path, n_jobs: int, steps: int) -> dict[str, float]:
    from polytask.learning.policies.demos import record_demos
    from polytask.learning.scale.ray_backend import import_ray, run_on_ray, start_ray
    from polytask.learning.scale.sweep import plan_sweep

    tasks = TASKS[:n_jobs]
    demos = scratch / "demos"
    for t in tasks:
        record_demos(t, 2, demos, render=False, progress=False)
    ray = import_ray()
    out: dict[str, float] = {}
    for workers in (1, 2):
        sweep = plan_sweep(
            tasks, scratch / "runs", f"bench-{workers}", overrides={**TINY, "train.steps": steps}, demos=demos
        )
        t0 = time.perf_counter()
        start_ray(ray, workers)
        t1 = time.perf_counter()
        results = run_on_ray(sweep.jobs, retries=0, log=lambda _: None)
        t2 = time.perf_counter()
        ray.shutdown()
        if not all(r.status == "done" for r in results):
            raise RuntimeError(f"expert jobs failed: {[(r.task, r.status, r.message) for r in results]}")
        out[f"ray_start_s_{workers}"] = t1 - t0
        out[f"jobs_s_{workers}"] = t2 - t1
        out[f"jobs_per_hour_{workers}"] = len(results) / (t2 - t1) * 3600
        print(
            f"experts, {workers} Ray worker(s): {len(results)} jobs of {steps} steps in {t2 - t1:.1f} s "
            f"({out[f'jobs_per_hour_{workers}']:.0f} jobs/hour; Ray start {t1 - t0:.1f} s)",
            flush=True,
        )
    return out


def _stores(scratch: Path, transitions: int) -> list[Path]:
    from polytask.learning.distill.collect import collect_noisy_stores

    return collect_noisy_stores(("metaworld/drawer-close", "metaworld/button-press"), scratch / "stores", transitions)


def _distill(stores: list[Path], out: Path, steps: int, nproc: int, overrides: dict) -> tuple[float, float]:
    cmd = [
        sys.executable,
        "-m",
        "polytask.cli",
        "distill",
        "--experts",
        "scripted",
        "--stores",
        *map(str, stores),
        "--out",
        str(out),
        "--steps",
        str(steps),
        "--eval-episodes",
        "0",
        "--no-progress",
        "--nproc",
        str(nproc),
        "--set",
        *[f"{k}={v}" for k, v in overrides.items()],
    ]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - t
    with open(out / "distill_history.csv", newline="") as fh:
        return float(list(csv.DictReader(fh))[-1]["samples_per_s"]), wall


def bench_distill(scratch: Path, steps: int, hidden: int, layers: int, batch: int) -> dict[str, float]:
    stores = _stores(scratch, 3000)
    base = {
        "student.hidden": hidden,
        "student.layers": layers,
        "batch_size": batch,
        "log_every": steps,
        "checkpoint_every": 10 * steps,
        "threads": 1,
    }
    out: dict[str, float] = {}
    # relabel once (not timed) so that both timed runs only check the relabelled stores
    _distill(stores, scratch / "warm", 2, 1, {**base, "log_every": 1})
    for label, nproc, threads in (("1proc", 1, 1), ("2proc", 2, 1), ("1proc_2threads", 1, 2)):
        run = scratch / f"distill-{label}"
        shutil.copytree(scratch / "warm" / "relabelled", run / "relabelled")
        sps, wall = _distill(stores, run, steps, nproc, {**base, "threads": threads})
        out[f"samples_per_s_{label}"], out[f"wall_s_{label}"] = sps, wall
        print(
            f"distill, {nproc} process(es) x {threads} thread(s): {sps:.0f} samples/s in the loop, "
            f"{wall:.1f} s wall with start-up ({steps} steps, global batch {batch})",
            flush=True,
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=4, help="expert jobs per measurement (at most 6)")
    p.add_argument("--expert-steps", type=int, default=600)
    p.add_argument("--distill-steps", type=int, default=300)
    p.add_argument("--hidden", type=int, default=1024, help="student width (Table V: 1024)")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--batch", type=int, default=256, help="global batch (Table V: 256)")
    p.add_argument("--skip", choices=("experts", "distill"), default=None)
    args = p.parse_args()
    os.environ.setdefault("MUJOCO_GL", "egl")
    scratch = Path(tempfile.mkdtemp(prefix="bench_scale_"))
    os.environ.setdefault("RAY_TMPDIR", tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    print(f"before: {uptime()}", flush=True)
    res: dict[str, float] = {}
    try:
        if args.skip != "experts":
            res.update(bench_experts(scratch, min(args.jobs, len(TASKS)), args.expert_steps))
            res["experts_ratio_2_vs_1"] = res["jobs_per_hour_2"] / res["jobs_per_hour_1"]
            print(f"expert jobs/hour, 2 vs 1 Ray workers: {res['experts_ratio_2_vs_1']:.2f}x", flush=True)
        if args.skip != "distill":
            res.update(bench_distill(scratch, args.distill_steps, args.hidden, args.layers, args.batch))
            res["distill_ratio_2_vs_1"] = res["samples_per_s_2proc"] / res["samples_per_s_1proc"]
            print(f"distill samples/s, 2 vs 1 processes: {res['distill_ratio_2_vs_1']:.2f}x", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(os.environ["RAY_TMPDIR"], ignore_errors=True)
    print(f"after: {uptime()}")
    print(json.dumps({k: round(v, 2) for k, v in res.items()}))


if __name__ == "__main__":
    main()
