"""Data-parallel distillation with torch.distributed (DDP): gloo on CPU, NCCL on GPU, processes started by torchrun.

What changes with N processes (ranks), and what does not:
- Data: each rank reads only its share of every task's relabelled store: of the most recent episodes kept for
  the task (`buffer_per_task`, as on one process), every N-th one starting at its rank. The state normaliser is
  computed over all shares (per-task sums all-reduced), so it equals the one-process one.
- Sampling (Algorithm 2, per rank): every rank draws the SAME task each step (the task stream has one seed), and
  `batch_size / N` rows of that task from its own share (its row generator is seeded with seed + rank). A step is
  therefore still one task with `batch_size` rows in all, as on one process: the global batch is unchanged.
- Gradients: the student is wrapped in `DistributedDataParallel`, which all-reduces (averages) the gradients in
  backward, so every replica takes the same Adam step. PCGrad's per-task gradients are all-reduced by hand first.
- Writes: rank 0 alone writes `distill_state.safetensors` (with every rank's row-generator state, so a resume with
  the same N continues each rank's stream), the student checkpoint, the history and the evaluation. The logged
  loss is the mean over ranks.

`polytask distill --nproc N` starts N local ranks through `torch.distributed.run` (torchrun); across machines
run torchrun yourself with `-m polytask.cli distill ...` (docs/scaling.md). A rerun of the same command resumes.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

T = TypeVar("T")
JOB_FILE = "distill_job.json"
GROUP_TIMEOUT = timedelta(hours=2)  # rank 0 relabels the stores while the others wait at the first collective


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job: rank `rank` of `world` (world 1: a plain single-process run)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


_CURRENT = DistContext()


def from_env() -> DistContext:
    """The context torchrun describes in RANK / WORLD_SIZE / LOCAL_RANK (single process when they are unset)."""
    try:
        ctx = DistContext(
            int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))
        )
    except ValueError as err:
        raise ValueError(f"torchrun variables RANK/WORLD_SIZE/LOCAL_RANK are not integers ({err})") from err
    if not 0 <= ctx.rank < max(ctx.world, 1):
        raise ValueError(f"RANK {ctx.rank} is outside WORLD_SIZE {ctx.world}")
    return ctx


def setup(device: str) -> tuple[DistContext, str]:
    """Join the process group of a torchrun job (nothing for one process); returns the context and the device
    this rank trains on (`cuda` becomes `cuda:<local rank>`, with NCCL; CPU uses gloo)."""
    global _CURRENT
    ctx = from_env()
    if not ctx.active:
        return ctx, device
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device is {device!r} but torch sees no CUDA device")
        torch.cuda.set_device(ctx.local_rank)
        device, backend = f"cuda:{ctx.local_rank}", "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=GROUP_TIMEOUT)
    _CURRENT = ctx
    return ctx, device


def teardown(wait: bool = False) -> None:
    """Leave the process group. `wait`: every rank first meets at a barrier, so that no rank destroys its half of
    the group while another still uses it (a gloo rank that exits early can abort the job)."""
    global _CURRENT
    if dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()
    _CURRENT = DistContext()


def current() -> DistContext:
    """The context `setup` joined (rank 0 of 1 outside a torchrun job)."""
    return _CURRENT


def _coll_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def rank_batch(batch: int, ctx: DistContext) -> int:
    """Rows each rank samples per step so that the ranks together draw `batch` (the configured global batch)."""
    if batch % ctx.world:
        raise ValueError(
            f"distill: batch_size {batch} does not split over {ctx.world} processes; use a multiple of {ctx.world}"
        )
    return batch // ctx.world


def share(items: Sequence[T], ctx: DistContext, what: str) -> list[T]:
    """Every world-th item from the rank-th on; an empty share is an error naming `what`."""
    mine = list(items)[ctx.rank :: ctx.world]
    if not mine:
        raise ValueError(
            f"{what}: {len(items)} episodes cannot be shared by {ctx.world} processes (each needs at "
            "least one); use fewer processes or more data"
        )
    return mine


def wrap(module: torch.nn.Module, ctx: DistContext) -> torch.nn.Module:
    """The module to run forward/backward through: DDP over it in a multi-process job, else the module itself.

    Buffers (the state normaliser) are equal on every rank by construction: synced once at the start, not at
    every forward."""
    if not ctx.active:
        return module
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [ctx.local_rank] if dist.get_backend() == "nccl" else None
    return DistributedDataParallel(module, device_ids=device_ids, forward_sync_buffers=False)


def mean_over_ranks(value: float, ctx: DistContext) -> float:
    if not ctx.active:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=_coll_device())
    dist.all_reduce(t)
    return float(t.item()) / ctx.world


def average_tensor(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """The mean of `t` over ranks (in place; returned for chaining)."""
    if ctx.active:
        dist.all_reduce(t)
        t /= ctx.world
    return t


def broadcast(obj: T, ctx: DistContext) -> T:
    """Rank 0's `obj` on every rank (any picklable value)."""
    if not ctx.active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=_coll_device())
    return box[0]


def gather_generators(gen: torch.Generator, ctx: DistContext) -> list[torch.Tensor]:
    """Every rank's generator state, in rank order (all ranks must call; only rank 0 needs the answer)."""
    state = gen.get_state()
    if not ctx.active:
        return [state]
    out: list[Any] = [None] * ctx.world
    dist.all_gather_object(out, state.numpy().tobytes())
    return [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in out]


def global_normalizer(datasets: Sequence[Any], ctx: DistContext) -> tuple[np.ndarray, np.ndarray]:
    """`distill.data.normalizer` over the union of every rank's share: per-task means of x and x², tasks equally
    weighted, from per-task sums all-reduced over ranks."""
    sums = np.stack([d.states.astype(np.float64).sum(0) for d in datasets])
    sq = np.stack([(d.states.astype(np.float64) ** 2).sum(0) for d in datasets])
    n = np.array([len(d) for d in datasets], np.float64)
    packed = torch.from_numpy(np.concatenate([sums.ravel(), sq.ravel(), n]))
    if ctx.active:
        packed = packed.to(_coll_device())
        dist.all_reduce(packed)
        packed = packed.cpu()
    flat = packed.numpy()
    k = sums.size
    sums, sq, n = flat[:k].reshape(sums.shape), flat[k : 2 * k].reshape(sq.shape), flat[2 * k :]
    means, sq_means = sums / n[:, None], sq / n[:, None]
    mean = means.mean(0)
    var = np.maximum(sq_means.mean(0) - mean**2, 0.0)
    return mean.astype(np.float32), np.sqrt(var).astype(np.float32)


def replica_spread(module: torch.nn.Module, ctx: DistContext) -> float:
    """Largest difference of any parameter between replicas (0.0 when DDP kept them in step, as it must)."""
    if not ctx.active:
        return 0.0
    flat = torch.cat([p.detach().reshape(-1).double() for p in module.parameters()]).to(_coll_device())
    hi, lo = flat.clone(), flat.clone()
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    return float((hi - lo).max().item()) if flat.numel() else 0.0


# --- `polytask distill --nproc N`: the job in a file, N ranks started by torchrun ------------------------------
def write_job(job: Any, out: str | Path) -> Path:
    from polytask.learning.data.atomic import write_json

    data = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(job).items()}
    data["stores"] = [str(s) for s in data["stores"]]
    return write_json(Path(out) / JOB_FILE, data, indent=1)


def torchrun_command(job_path: str | Path, nproc: int) -> list[str]:
    """torchrun on this machine (`--standalone`: a free rendezvous port, one node) running `main` per rank."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "polytask.learning.distill.ddp",
        str(job_path),
    ]


def launch(job: Any, nproc: int) -> int:
    """Run `job` on `nproc` local processes and wait; the exit status is torchrun's (non-zero if a rank failed)."""
    import subprocess

    if nproc < 1:
        raise ValueError(f"--nproc is {nproc}, expected >= 1")
    path = write_job(job, job.out)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return subprocess.call(torchrun_command(path, nproc), env=env)


def main(argv: list[str] | None = None) -> int:
    """One rank: read the job file, run the distillation pipeline (which joins the process group)."""
    import logging

    from polytask.learning.distill.pipeline import DistillJob, run_distillation

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m polytask.learning.distill.ddp JOB_JSON (under torchrun)", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    data = json.loads(Path(args[0]).read_text())
    run_distillation(DistillJob(**data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
