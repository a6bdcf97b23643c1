"""The Ray backend: every expert job is one Ray task with its CPU/GPU share; Ray retries a crashed or killed one.

Where jobs run: a local Ray instance started here (`local_cpus` CPUs, the dashboard UI off, a small object store: jobs
exchange only their small results), or the cluster at RAY_ADDRESS (`ray start --head` on one machine,
`ray start --address HEAD:6379` on the others). On a cluster every node needs polytask installed, and the runs
folder must be on a filesystem all nodes share: a retry may land on another node and must find the checkpoint.

Retries are Ray's own task retries (`max_retries`, with `retry_exceptions=True`, so a Python exception is retried
like a dead worker process). The retried task is the same call of `run_expert_job`, which resumes the run
folder's latest checkpoint; the other jobs are not touched. A GPU fraction (`gpus=0.25`) is Ray's `num_gpus`:
Ray packs four such jobs onto one card and points each at it with CUDA_VISIBLE_DEVICES.

Ray is an optional extra; without it `import_ray` raises `RayMissing` carrying the install line.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from polytask.learning.scale.jobs import ExpertJob, JobResult, failed_result, run_expert_job

INSTALL_HINT = (
    "the ray backend needs Ray, an optional extra: pip install -c constraints.txt -r "
    "requirements-ray.txt (or pip install 'polytask[ray]'); --backend local needs nothing more"
)
OBJECT_STORE_BYTES = 128 * 2**20  # results are a few hundred bytes; Ray's minimum is 75 MiB
ENV_PASSED = ("MUJOCO_GL", "PYOPENGL_PLATFORM", "HF_HUB_OFFLINE", "TOKENIZERS_PARALLELISM")


class RayMissing(RuntimeError):
    """Ray is not installed (the message says how to install it)."""


def import_ray() -> Any:
    try:
        import ray
    except ImportError as err:
        raise RayMissing(INSTALL_HINT) from err
    return ray


def start_ray(ray: Any, local_cpus: int | None = None) -> bool:
    """Connect to RAY_ADDRESS, or start a new local instance; True when this call started it (and must shut it
    down).

    The workers of a local instance inherit this process's environment; a cluster's get the rendering variables
    through the runtime environment.
    """
    if ray.is_initialized():
        return False
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    address = os.environ.get("RAY_ADDRESS")
    if address:
        env = {k: os.environ[k] for k in ENV_PASSED if k in os.environ}
        ray.init(address=address, runtime_env={"env_vars": env}, **quiet)
    else:
        ray.init(
            address="local",  # a new instance: never join another command's running one (Ray would by default)
            num_cpus=local_cpus or os.cpu_count() or 1,
            include_dashboard=False,
            object_store_memory=OBJECT_STORE_BYTES,
            **quiet,
        )
    return True


def check_fits(ray: Any, jobs: Sequence[ExpertJob], log: Callable[[str], None]) -> None:
    """Refuse (local instance) or warn about (cluster: nodes may join later) a job no node can ever hold."""
    have = ray.cluster_resources()
    cpus, gpus = max(j.cpus for j in jobs), max(j.gpus for j in jobs)
    if cpus <= have.get("CPU", 0) and gpus <= have.get("GPU", 0):
        return
    message = (
        f"a job asks for {cpus:g} CPUs and {gpus:g} GPUs, but Ray has {have.get('CPU', 0):g} CPUs and "
        f"{have.get('GPU', 0):g} GPUs"
    )
    if not os.environ.get("RAY_ADDRESS"):
        raise ValueError(f"{message}; lower --cpus-per-job/--gpus-per-job or raise --ray-cpus")
    log(f"warning: {message}; such jobs wait until nodes that can hold them join the cluster")


def run_on_ray(
    jobs: Sequence[ExpertJob],
    retries: int = 2,
    local_cpus: int | None = None,
    log: Callable[[str], None] = print,
    poll_s: float = 1.0,
) -> list[JobResult]:
    """Run every job as a Ray task (results in the jobs' order); a job that fails beyond its retries is
    reported as `failed`, the others go on."""
    ray = import_ray()
    started = start_ray(ray, local_cpus)
    try:
        check_fits(ray, jobs, log)
        task = ray.remote(run_expert_job)
        refs = {}
        for i, job in enumerate(jobs):
            ref = task.options(
                num_cpus=job.cpus,
                num_gpus=job.gpus,
                max_retries=retries,
                retry_exceptions=True,
                name=f"expert {job.task}",
            ).remote(job)
            refs[ref] = i
        results: list[JobResult | None] = [None] * len(jobs)
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=len(pending), timeout=poll_s)
            for ref in ready:
                i = refs[ref]
                try:
                    results[i] = ray.get(ref)
                except ray.exceptions.RayError as err:
                    lines = [ln for ln in str(err).splitlines() if ln.strip()]
                    results[i] = failed_result(jobs[i], lines[-1] if lines else type(err).__name__)
        return [r for r in results if r is not None]
    finally:
        if started:
            ray.shutdown()
