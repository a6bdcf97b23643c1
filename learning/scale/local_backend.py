"""The local backend: the sweep's jobs on this machine, one after another in this process or in a process pool.

Retries as on Ray: a job whose training raised is started again (from its latest checkpoint) up to `retries`
times. One difference: when a pool worker process dies (SIGKILL, out of memory), Python's process pool breaks
and stops every job it was running; those jobs are started again in a new pool, each from its own checkpoint,
and each counts one try. Ray keeps such a failure to the one job.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from polytask.learning.scale.jobs import ExpertJob, JobResult, failed_result, run_expert_job


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


def _in_process(job: ExpertJob, retries: int, log: Callable[[str], None]) -> JobResult:
    message = ""
    for attempt in range(retries + 1):
        try:
            return run_expert_job(job)
        except Exception as err:  # any training failure is retried from the checkpoint
            message = _describe(err)
            more = "retrying from its latest checkpoint" if attempt < retries else "no retries left"
            log(f"{job.task}: attempt failed ({message}); {more}")
    return failed_result(job, message)


def _pool(jobs: Sequence[ExpertJob], retries: int, workers: int, log: Callable[[str], None]) -> list[JobResult]:
    ctx = multiprocessing.get_context("spawn")  # no forked copies of torch/MuJoCo state
    failures = [0] * len(jobs)
    results: dict[int, JobResult] = {}
    waiting = list(range(len(jobs)))
    while waiting:
        with ProcessPoolExecutor(max_workers=min(workers, len(waiting)), mp_context=ctx) as pool:
            running: dict[Future, int] = {pool.submit(run_expert_job, jobs[i]): i for i in waiting}
            waiting = []
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in done:
                    i = running.pop(fut)
                    try:
                        results[i] = fut.result()
                        continue
                    except BrokenProcessPool as err:
                        message = f"a pool worker died ({err})"
                    except Exception as err:
                        message = _describe(err)
                    failures[i] += 1
                    if failures[i] > retries:
                        log(f"{jobs[i].task}: attempt failed ({message}); no retries left")
                        results[i] = failed_result(jobs[i], message)
                    else:
                        log(f"{jobs[i].task}: attempt failed ({message}); retrying from its latest checkpoint")
                        try:
                            running[pool.submit(run_expert_job, jobs[i])] = i
                        except BrokenProcessPool:  # the pool is gone: this job waits for the next one
                            waiting.append(i)
    return [results[i] for i in range(len(jobs))]


def run_locally(
    jobs: Sequence[ExpertJob], retries: int = 2, workers: int = 1, log: Callable[[str], None] = print
) -> list[JobResult]:
    """Run `jobs` here (results in the jobs' order); `workers` > 1 runs that many at once in processes."""
    if workers <= 1:
        return [_in_process(job, retries, log) for job in jobs]
    return _pool(jobs, retries, workers, log)
