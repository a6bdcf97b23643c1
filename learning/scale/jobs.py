"""One expert-training job: what a worker (a local process or a Ray task) runs for one task.

Why a job owns a fixed run folder: a retry must find the checkpoint of the attempt that died. The job runs the
expert trainer itself (`ExpertTrainer`, the code path of `polytask train-expert`): a run folder holding
`checkpoints/latest.safetensors` is resumed exactly (`ExpertTrainer.resume`), anything else starts afresh in it.
A retried job therefore continues from the step of its latest checkpoint (every `train.save_every` agent steps,
at the next episode end) and repeats only the steps after it.

Beside the trainer's own files, a job writes into its run folder:
- `progress.json` (atomic, every few seconds): status, step of total, attempt, the step this attempt resumed
  from, host and pid, the latest evaluation. The sweep's progress lines read these files.
- `job.log`: one line per attempt ("attempt 2 on host pid 123: resumed from step 300"), then the trainer's log.
- `job.json`: the finished job's result (a rerun of a finished job returns it instead of training again).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from polytask.learning.data.atomic import write_json

log = logging.getLogger(__name__)

PROGRESS = "progress.json"
RESULT = "job.json"
LOG = "job.log"
PROGRESS_EVERY_S = 2.0


@dataclass(frozen=True)
class ExpertJob:
    """One task's expert run: its folder, its config (YAML + dotted overrides) and its resource share."""

    task: str
    run_dir: str
    config: str | None = None  # ExpertConfig YAML; None: the paper's defaults
    overrides: dict[str, Any] = field(default_factory=dict)  # dotted keys, e.g. {"train.steps": 5000}
    cpus: float = 1.0  # CPU cores the job may use (its torch threads)
    gpus: float = 0.0  # a fraction (0.25: four jobs share one card) or a whole number of GPUs

    def __post_init__(self) -> None:
        if not self.cpus > 0:
            raise ValueError(f"job {self.task}: cpus is {self.cpus}, expected > 0")
        if self.gpus < 0 or (self.gpus > 1 and self.gpus != int(self.gpus)):
            raise ValueError(f"job {self.task}: gpus is {self.gpus}, expected a fraction in [0, 1] or a whole number")


@dataclass
class JobResult:
    """How a job ended. status: done | failed (crashed more often than retries allow) | error (could not start)."""

    task: str
    run_dir: str
    status: str
    step: int = 0
    total: int = 0
    success_rate: float | None = None
    score: float | None = None
    wall_s: float = 0.0  # time spent running, summed over the attempts (queueing and pauses between not counted)
    attempts: int = 0
    resumed_from: int = 0  # the step the last attempt started from (0: from scratch)
    message: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobResult:
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in names})


def read_json(path: Path) -> dict[str, Any] | None:
    """A job file, or None while it does not exist yet (or is unreadable: it is rewritten every few seconds)."""
    import json

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def failed_result(job: ExpertJob, message: str) -> JobResult:
    """The result of a job that crashed beyond its retries, from what its last attempt left in progress.json."""
    prog = read_json(Path(job.run_dir) / PROGRESS) or {}
    return JobResult(
        task=job.task,
        run_dir=job.run_dir,
        status="failed",
        step=int(prog.get("step", 0)),
        total=int(prog.get("total", 0)),
        attempts=int(prog.get("attempt", 0)),
        resumed_from=int(prog.get("resumed_from", 0)),
        wall_s=round(_wall(prog), 1),
        message=message,
    )


def _wall(prog: dict[str, Any]) -> float:
    """Running time of the attempts a progress record covers: the earlier ones plus its own, to its last write."""
    try:
        return float(prog.get("wall_prior", 0.0)) + max(0.0, float(prog["updated"]) - float(prog["started"]))
    except (KeyError, TypeError, ValueError):
        return 0.0


class _Reporter:
    """Writes the job's progress.json every few seconds from the trainer's counters (a daemon thread)."""

    def __init__(self, path: Path, base: dict[str, Any]) -> None:
        self.path = path
        self.base = base
        self.trainer: Any = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="job-progress")

    def write(self, status: str, **extra: Any) -> None:
        data = {**self.base, "status": status, "updated": time.time(), **extra}
        t = self.trainer
        if t is not None:
            data.update(
                step=int(t.state.step),
                total=int(t.cfg.train.steps),
                eval=t.last_eval,
                phase="bc" if not t.state.pretrained else "rl",
            )
        try:
            write_json(self.path, data)
        except OSError as err:  # a full or flaky disk must not kill the training it reports on
            log.warning("progress file %s: %s", self.path, err)

    def _loop(self) -> None:
        while not self._stop.wait(PROGRESS_EVERY_S):
            self.write("training")

    def start(self, trainer: Any) -> None:
        self.trainer = trainer
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


def _clear_for_fresh_start(run_dir: Path) -> None:
    """A folder without a checkpoint holds nothing resumable (an attempt that died in its BC pretraining):
    everything but the job's own log and progress goes, so the new attempt's logs and replay start clean."""
    for p in run_dir.iterdir():
        if p.name in (PROGRESS, LOG):
            continue
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


def _job_log(run_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(run_dir / LOG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    return handler


def run_expert_job(job: ExpertJob) -> JobResult:
    """Train (or continue) one expert in `job.run_dir` and return its result.

    Errors while building the trainer (bad config, a demo store without the task) come back as an `error`
    result: retrying cannot fix them. An exception while training propagates, so the backend retries the job,
    which then resumes from its latest checkpoint.
    """
    from polytask.learning.config import ConfigError, load_config
    from polytask.learning.rl.expert import LATEST, ExpertTrainer
    from polytask.learning.rl.expert_config import ExpertConfig

    run_dir = Path(job.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    done = read_json(run_dir / RESULT)
    if done and done.get("status") == "done":
        return JobResult.from_dict(done)
    previous = read_json(run_dir / PROGRESS) or {}
    attempt = int(previous.get("attempt", 0)) + 1
    now = time.time()
    wall_prior = _wall(previous)  # a killed attempt's time ends at its last progress write
    base = {
        "task": job.task,
        "attempt": attempt,
        "wall_prior": wall_prior,
        "started": now,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "step": int(previous.get("step", 0)),
        "total": int(previous.get("total", job.overrides.get("train.steps", 0))),
    }
    reporter = _Reporter(run_dir / PROGRESS, base)
    handler = _job_log(run_dir)
    plog = logging.getLogger("polytask")
    old_level = plog.level
    plog.addHandler(handler)
    plog.setLevel(logging.INFO)
    try:
        reporter.write("starting")
        resumable = (run_dir / "checkpoints" / LATEST).exists()
        try:
            if resumable:
                trainer = ExpertTrainer.resume(run_dir)
            else:
                _clear_for_fresh_start(run_dir)
                trainer = ExpertTrainer(load_config(ExpertConfig, job.config, dict(job.overrides)), run_dir)
        except (ConfigError, ValueError, KeyError, FileNotFoundError) as err:
            message = f"{type(err).__name__}: {err.args[0] if isinstance(err, KeyError) and err.args else err}"
            log.error("job %s cannot start: %s", job.task, message)
            reporter.write("error", message=message)
            result = JobResult(task=job.task, run_dir=str(run_dir), status="error", attempts=attempt, message=message)
            write_json(run_dir / RESULT, asdict(result))
            return result
        resumed_from = int(trainer.state.step)
        how = f"resumed from step {resumed_from}" if resumable else "started from scratch"
        log.info("attempt %d on %s pid %d: %s", attempt, base["host"], os.getpid(), how)
        reporter.base["resumed_from"] = resumed_from
        reporter.start(trainer)
        try:
            summary = trainer.run()
        except BaseException as err:
            log.error("attempt %d crashed at step %d", attempt, trainer.state.step, exc_info=True)
            reporter.write("crashed", message=f"{type(err).__name__}: {err}")
            raise
        finally:
            reporter.stop()
            trainer.close()
        final = summary.get("eval_final") or {}
        result = JobResult(
            task=job.task,
            run_dir=str(run_dir),
            status="done",
            step=int(summary["step"]),
            total=int(trainer.cfg.train.steps),
            success_rate=_num(final.get("success_rate")),
            score=_num(final.get("score")),
            wall_s=round(wall_prior + time.time() - now, 1),
            attempts=attempt,
            resumed_from=resumed_from,
        )
        write_json(run_dir / RESULT, asdict(result))
        reporter.write("done", step=result.step, eval=final)
        log.info("attempt %d done at step %d", attempt, result.step)
        return result
    finally:
        plog.removeHandler(handler)
        plog.setLevel(old_level)
        handler.close()


def _num(value: Any) -> float | None:
    try:
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None
