"""A sweep: one expert job per task in one folder, run by a backend, watched, summed up in one table.

Layout: `<runs_dir>/<date>-<name>/jobs.json` (the plan: every job's task, config, overrides, resources),
one run folder per task beside it (`metaworld-door-open/`, the layout of `polytask train-expert`'s runs plus the
job files of `polytask.learning.scale.jobs`), and `summary.csv` at the end. Running a sweep again
(`--resume <sweep>`) skips finished jobs and resumes the others from their checkpoints.

Backends: `local` (in this process one job after another, or a pool of processes) and `ray` (a local Ray
instance, or the cluster at RAY_ADDRESS). Both run `jobs.run_expert_job`, so a job's files are the same
whichever ran it; the backend only decides where and how often it runs.
"""

from __future__ import annotations

import csv
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from polytask.learning.data.atomic import atomic_open, write_json
from polytask.learning.scale.jobs import PROGRESS, ExpertJob, JobResult, read_json

PLAN = "jobs.json"
SUMMARY = "summary.csv"
BACKENDS = ("local", "ray")


def task_slug(task: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in task)


def demo_store_for(demos_root: str | Path, task: str) -> Path:
    """`<root>/<suite>_<task>` when such a per-task store exists, else `<root>` itself (one store, many tasks)."""
    root = Path(demos_root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"--demos {root}: no such folder (an episode store, or a folder of per-task "
            "stores named like metaworld_door-open)"
        )
    per_task = root / task.replace("/", "_")
    return per_task if per_task.is_dir() else root


@dataclass
class Sweep:
    root: Path
    jobs: list[ExpertJob]

    def save(self) -> None:
        write_json(self.root / PLAN, {"jobs": [asdict(j) for j in self.jobs]}, indent=1)

    @classmethod
    def load(cls, root: str | Path) -> Sweep:
        root = Path(root)
        data = read_json(root / PLAN)
        if not data or not isinstance(data.get("jobs"), list):
            raise FileNotFoundError(f"{root}: no readable {PLAN}; is it a folder made by `polytask train-experts`?")
        try:
            jobs = [ExpertJob(**j) for j in data["jobs"]]
        except TypeError as err:
            raise ValueError(f"{root / PLAN}: bad job entry ({err})") from err
        return cls(root, jobs)


def plan_sweep(
    tasks: Sequence[str],
    runs_dir: str | Path,
    name: str = "experts",
    config: str | None = None,
    overrides: dict[str, Any] | None = None,
    demos: str | Path | None = None,
    cpus: float = 1.0,
    gpus: float = 0.0,
) -> Sweep:
    """A new sweep folder with one job per task; the jobs share `config` and `overrides`.

    Each job trains with `cpus` torch threads (at least 1) and on `cuda` when it has a GPU share, unless the
    overrides name `train.threads` / `train.device` themselves; progress bars are off (the sweep reports). Paths
    are made absolute: a Ray worker does not start in this process's folder.
    """
    from polytask.learning.reporting.run_logging import make_run_dir

    if not tasks:
        raise ValueError("train-experts: no tasks")
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"train-experts: tasks repeat: {list(tasks)}")
    root = make_run_dir(runs_dir, name).resolve()
    config = str(Path(config).resolve()) if config else None
    jobs = []
    for task in tasks:
        ov: dict[str, Any] = {
            "train.threads": max(1, int(cpus)),
            **({"train.device": "cuda"} if gpus > 0 else {}),
            **(overrides or {}),
            "train.task": task,
            "train.progress": False,
        }
        if demos:
            ov["train.demos"] = str(demo_store_for(demos, task).resolve())
        jobs.append(
            ExpertJob(task=task, run_dir=str(root / task_slug(task)), config=config, overrides=ov, cpus=cpus, gpus=gpus)
        )
    sweep = Sweep(root, jobs)
    sweep.save()
    return sweep


def _fmt_wall(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def progress_lines(jobs: Sequence[ExpertJob], elapsed: float) -> list[str]:
    """One line of counts, then one line per job that is running (from each job's progress.json)."""
    states = [read_json(Path(j.run_dir) / PROGRESS) for j in jobs]
    counts: dict[str, int] = {}
    lines = []
    for job, st in zip(jobs, states, strict=True):
        status = (st or {}).get("status", "waiting")
        counts[status] = counts.get(status, 0) + 1
        if st is None or status in ("done", "error"):
            continue
        ev = st.get("eval") or {}
        success = f" success {float(ev['success_rate']):.2f}" if ev.get("success_rate") not in (None, "") else ""
        resumed = f" (resumed from {st['resumed_from']})" if st.get("resumed_from") else ""
        lines.append(
            f"    {job.task:40s} {status:9s} {st.get('step', 0):>8}/{st.get('total', 0):<8} "
            f"try {st.get('attempt', 1)}{resumed}{success}"
        )
    head = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    return [f"[{_fmt_wall(elapsed)}] {len(jobs)} jobs: {head}", *lines]


class ProgressPrinter:
    """Prints `progress_lines` every `every` seconds while the backend runs (a daemon thread)."""

    def __init__(self, jobs: Sequence[ExpertJob], every: float, out: Callable[[str], None] = print) -> None:
        self.jobs, self.every, self.out = list(jobs), every, out
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="sweep-progress")
        self._start = time.time()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.out("\n".join(progress_lines(self.jobs, time.time() - self._start)))

    def __enter__(self) -> ProgressPrinter:
        if self.every > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


SUMMARY_COLUMNS = (
    "task",
    "status",
    "step",
    "total",
    "success_rate",
    "score",
    "wall_s",
    "attempts",
    "resumed_from",
    "run_dir",
    "message",
)


def summary_table(results: Sequence[JobResult]) -> str:
    """The closing table: task, steps, success, wall time, tries, run folder (and why a job did not finish)."""
    rows = [("task", "status", "steps", "success", "wall", "tries", "run folder")]
    for r in results:
        success = "-" if r.success_rate is None else f"{r.success_rate:.2f}"
        rows.append((r.task, r.status, f"{r.step}/{r.total}", success, _fmt_wall(r.wall_s), str(r.attempts), r.run_dir))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for r in results:
        if r.status != "done" and r.message:
            lines.append(f"{r.task}: {r.message.splitlines()[0][:300]}")
    return "\n".join(lines)


def write_summary(results: Sequence[JobResult], path: Path) -> Path:
    with atomic_open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(SUMMARY_COLUMNS), extrasaction="ignore")
        w.writeheader()
        for r in results:
            w.writerow(asdict(r))
    return path


def run_sweep(
    sweep: Sweep,
    backend: str = "local",
    retries: int = 2,
    workers: int = 1,
    ray_cpus: int | None = None,
    progress_every: float = 10.0,
    out: Callable[[str], None] = print,
) -> list[JobResult]:
    """Run every job of `sweep` on `backend`, printing progress lines, and write the sweep's summary.csv.

    `retries`: how often a crashed or killed job is started again (each time from its latest checkpoint).
    `workers`: local backend only, processes running jobs at once (1: one after another in this process).
    `ray_cpus`: the CPUs of a local Ray instance (default: all); ignored on a cluster (RAY_ADDRESS).
    Results come back in the plan's order.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r} unknown; expected one of {BACKENDS}")
    if retries < 0 or workers < 1:
        raise ValueError(f"retries is {retries} (expected >= 0), workers {workers} (expected >= 1)")
    with ProgressPrinter(sweep.jobs, progress_every, out):
        if backend == "ray":
            from polytask.learning.scale.ray_backend import run_on_ray

            results = run_on_ray(sweep.jobs, retries=retries, local_cpus=ray_cpus, log=out)
        else:
            from polytask.learning.scale.local_backend import run_locally

            results = run_locally(sweep.jobs, retries=retries, workers=workers, log=out)
    write_summary(results, sweep.root / SUMMARY)
    return results


def run_batched(sweep: Sweep, out: Callable[[str], None] = print) -> list[JobResult]:
    """The jobs of `sweep` in this process as lockstep runs with one batched update each (rl/batched_run.py): the
    jobs whose tasks share an episode length form one batch (Meta-World's bin-picking, 88 steps, trains apart
    from the 63-step tasks), batches one after another. Same run folders, checkpoints and resume as the other
    backends; no retries (a crash stops the batch; the command again with `--resume` continues every run from
    its checkpoint). `agent.compile: graph` captures each batched update in one CUDA graph on a GPU."""
    from polytask.learning.config import load_config
    from polytask.learning.rl.batched_run import BatchedExpertRun
    from polytask.learning.rl.expert import ExpertTrainer
    from polytask.learning.rl.expert_config import ExpertConfig
    from polytask.sim import registry

    def builder(job: ExpertJob) -> Callable[[], ExpertTrainer]:
        return lambda: ExpertTrainer.open(load_config(ExpertConfig, job.config, dict(job.overrides)), job.run_dir)

    groups: dict[tuple[int, int], list[ExpertJob]] = {}
    for job in sweep.jobs:
        spec = registry.spec(job.task)
        groups.setdefault((spec.horizon, spec.action_repeat), []).append(job)
    done: dict[str, JobResult] = {}
    for (horizon, repeat), jobs in groups.items():
        start = time.time()
        driver = BatchedExpertRun([builder(j) for j in jobs])
        try:
            if driver.runs[0].cfg.agent.compile == "graph":
                driver.mode = "graph"
            resumed_from = driver.runs[0].state.step
            out(
                f"batched: {len(jobs)} experts ({horizon} steps x {repeat} per episode) in one process, "
                f"from step {resumed_from}"
            )
            summaries = driver.run()
        finally:
            driver.close()
        for job, run, summary in zip(jobs, driver.runs, summaries, strict=True):
            final = summary.get("eval_final_row") or {}
            done[job.task] = JobResult(
                task=job.task,
                run_dir=job.run_dir,
                status="done",
                step=int(summary["step"]),
                total=int(run.cfg.train.steps),
                success_rate=final.get("success_rate"),
                score=final.get("score"),
                wall_s=round(time.time() - start, 1),
                attempts=1,
                resumed_from=resumed_from,
            )
    results = [done[j.task] for j in sweep.jobs]
    write_summary(results, sweep.root / SUMMARY)
    return results
