"""Behaviour distillation (Eq. 2, Algorithm 2): one student regresses every teacher's actions on its own data.

Each gradient step samples ONE task uniformly, then a batch of that task's relabelled (state, teacher action)
rows, and minimises the squared error between the student's action and the teacher's. With `pcgrad`, a step
takes several tasks, each with its own batch, and projects away the conflicting parts of their gradients
(PolyTask-PCGrad). The learning rate may follow a cosine schedule computed from the step number alone, so a
resumed run continues exactly where the schedule was.

Resumable: every `checkpoint_every` steps the student, the Adam moments, the RNG states and the step go to
`<run>/distill_state.safetensors` (atomic). A run killed with SIGKILL and started again with the same arguments
continues from that step; the relabelled stores are read-only inputs and stay intact.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from polytask.learning.data.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_module,
    load_optimizer,
    optimizer_tensors,
    restore_rng,
    rng_tensors,
)
from polytask.learning.distill import ddp
from polytask.learning.distill.config import DistillConfig
from polytask.learning.distill.data import MemorySampler, TaskData, normalizer
from polytask.learning.nets.student import StudentNet, StudentSpec, goal_tensor
from polytask.learning.pcgrad import set_pcgrad
from polytask.learning.policies.student import save_student, student_tensors
from polytask.learning.reporting.report import write_rows

log = logging.getLogger(__name__)
STATE_FILE = "distill_state.safetensors"
STUDENT_FILE = "student.safetensors"


def student_spec(cfg: DistillConfig, obs_dim: int, action_dim: int, goal_dim: int,
                 goal_image_size: int = 84) -> StudentSpec:
    s = cfg.student
    return StudentSpec(obs=cfg.obs, obs_dim=obs_dim, action_dim=action_dim, goal=cfg.goal,
                       goal_dim=goal_dim if cfg.goal != "image" else 0, hidden=s.hidden, layers=s.layers,
                       feature_dim=s.feature_dim, frame_stack=s.frame_stack, normalize_obs=s.normalize_obs,
                       goal_image_size=goal_image_size)


def lr_at(cfg: DistillConfig, step: int, total: int) -> float:
    """Learning rate at `step` of a run of `total` steps (constant, or linear warm-up then cosine to a floor)."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "constant":
        return cfg.lr
    span = max(1, total - cfg.warmup_steps)
    progress = min(1.0, max(0.0, (step - cfg.warmup_steps) / span))
    floor = cfg.min_lr_ratio
    return cfg.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


@dataclass
class DistillResult:
    step: int
    final_loss: float
    seconds: float
    samples_per_s: float
    resumed_from: int


class Distiller:
    """Owns the optimisation of one student on a fixed set of tasks (their samplers and goals)."""

    def __init__(self, student: StudentNet, goals: Mapping[str, np.ndarray], sampler: Any, tasks: Sequence[str],
                 cfg: DistillConfig, run_dir: str | Path | None = None, header_extra: Mapping[str, Any] | None = None):
        missing = [t for t in tasks if t not in goals]
        if missing:
            raise ValueError(f"distill: no goal for tasks {missing}")
        self.student = student.to(cfg.device)
        self.goals = dict(goals)
        self.sampler = sampler
        self.tasks = list(tasks)
        if list(getattr(sampler, "tasks", self.tasks)) != self.tasks:
            raise ValueError(f"distill: sampler tasks {sampler.tasks} differ from {self.tasks}")
        self.cfg = cfg
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.header_extra = dict(header_extra or {})
        # Under torchrun (distill.ddp): `model` is the DDP wrapper that all-reduces gradients, each rank draws
        # `batch` = batch_size / ranks rows with its own generator, and all ranks share the task stream `rng`.
        self.dist = ddp.current()
        self.batch = ddp.rank_batch(cfg.batch_size, self.dist)
        self.model = ddp.wrap(self.student, self.dist)
        self.opt = torch.optim.Adam(self.student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.goal_t = [goal_tensor(self.goals[t], student.spec.goal).to(cfg.device) for t in self.tasks]
        self.step = 0
        self.rng = np.random.default_rng(cfg.seed)
        self.gen = torch.Generator().manual_seed(cfg.seed + self.dist.rank)
        if self.dist.active:
            self.header_extra.update(world_size=self.dist.world, rank_batch=self.batch)
        self.history: list[dict[str, float]] = []
        self._fast: Any = None  # cfg.compile's step (learning/distill/fast_step.py), built at the first step
        if cfg.compile != "none" and cfg.pcgrad and len(self.tasks) > 1:
            raise ValueError("distill: compile applies to the plain Eq. 2 step; with pcgrad use compile 'none'")
        if cfg.compile != "none" and self.dist.active:
            raise ValueError("distill: compile applies to one process; with --nproc > 1 use compile 'none'")

    # --- resume ----------------------------------------------------------------------------------------
    @property
    def state_path(self) -> Path | None:
        return self.run_dir / STATE_FILE if self.run_dir is not None else None

    def save_state(self) -> None:
        if self.state_path is None:
            return
        gens = ddp.gather_generators(self.gen, self.dist)  # a collective: every rank calls, rank 0 writes
        if not self.dist.main:
            return
        opt_t, opt_meta = optimizer_tensors("opt", self.opt)
        rng_t, rng_meta = rng_tensors(self.rng)
        extra_t = {**opt_t, **rng_t, "rng/generator": self.gen.get_state(),
                   **{f"rng/generator_rank{r}": g for r, g in enumerate(gens) if r > 0}}
        save_student(self.state_path, self.student, self.goals, self.tasks, self.step,
                     extra={"optimizer": opt_meta, "rng": rng_meta, "config": asdict(self.cfg),
                            "history": self.history[-200:], **self.header_extra}, extra_tensors=extra_t)

    def try_resume(self) -> int:
        """Continue from `<run>/distill_state.safetensors` when present; returns the step resumed from (0 if none)."""
        path = self.state_path
        if path is None or not path.exists():
            return 0
        tensors, header = load_checkpoint(path, expect={"kind": "student", "student": self.student.spec.to_dict(),
                                                        "tasks": self.tasks})
        load_module(self.student, tensors, "student", str(path))
        load_optimizer(self.opt, tensors, header["optimizer"], "opt", str(path))
        for group in self.opt.param_groups:  # a CUDA-graph step's state: the fast step sets this again itself
            group["capturable"] = False
        for state in self.opt.state.values():
            if isinstance(state.get("step"), torch.Tensor):
                state["step"] = state["step"].detach().to("cpu", torch.float32)
        restore_rng(tensors, header.get("rng", {}), self.rng)
        own = "rng/generator" if self.dist.rank == 0 else f"rng/generator_rank{self.dist.rank}"
        if own in tensors:  # absent when the saved run had fewer processes: this rank's stream starts afresh
            self.gen.set_state(tensors[own])
        self.step = int(header["step"])
        self.history = list(header.get("history", []))
        log.info("resumed distillation from %s at step %d", path, self.step)
        return self.step

    # --- training --------------------------------------------------------------------------------------
    def _loss(self, k: int, model: torch.nn.Module | None = None) -> torch.Tensor:
        obs, target = self.sampler.sample(k, self.batch, self.gen)
        obs = obs.to(self.cfg.device)
        pred = (model or self.model)(obs, self.goal_t[k])
        return (pred - target.to(self.cfg.device)).pow(2).sum(-1).mean()

    def train_step(self, total: int) -> float | torch.Tensor:
        """One step; returns its loss (a device tensor on the fast paths, read when logged)."""
        if self.cfg.compile != "none":
            if self._fast is None:
                from polytask.learning.distill.fast_step import FastDistillStep

                self._fast = FastDistillStep(self, self.cfg.compile)
            loss = self._fast(int(self.rng.integers(len(self.tasks))), lr_at(self.cfg, self.step, total))
            self.step += 1
            return loss
        for group in self.opt.param_groups:
            group["lr"] = lr_at(self.cfg, self.step, total)
        self.opt.zero_grad(set_to_none=True)
        if self.cfg.pcgrad and len(self.tasks) > 1:
            ks = self.rng.choice(len(self.tasks), size=min(self.cfg.pcgrad_tasks, len(self.tasks)), replace=False)
            params = [p for p in self.student.parameters() if p.requires_grad]
            # not through DDP: each task's gradient is averaged over the processes here, before the surgery
            losses = [self._loss(int(k), self.student) for k in ks]
            set_pcgrad(losses, params, self.rng, reduce=lambda g: ddp.average_tensor(g, self.dist))
            value = float(np.mean([loss.item() for loss in losses]))
        else:
            k = int(self.rng.integers(len(self.tasks)))
            loss = self._loss(k)
            loss.backward()
            value = loss.item()
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.student.parameters(), self.cfg.grad_clip)
        self.opt.step()
        self.step += 1
        return value

    def train(self, total_steps: int, progress: bool = False,
              on_log: Callable[[dict[str, float]], None] | None = None) -> DistillResult:
        """Train until `self.step == total_steps` (continuing a resumed run), checkpointing on the way."""
        torch.set_num_threads(self.cfg.threads)
        resumed = self.step
        self.student.train()
        bar = None
        if progress and self.dist.main:
            bar = tqdm(total=total_steps, initial=self.step, desc="distill", unit="step", mininterval=2.0)
        start = time.perf_counter()
        window: list[float | torch.Tensor] = []
        last: float | torch.Tensor = float("nan")
        while self.step < total_steps:
            last = self.train_step(total_steps)
            window.append(last)
            if bar is not None:
                bar.update(1)
            if self.step % self.cfg.log_every == 0 or self.step == total_steps:
                elapsed = time.perf_counter() - start
                row = {"step": self.step, "loss": ddp.mean_over_ranks(_mean(window), self.dist),
                       "lr": lr_at(self.cfg, self.step - 1, total_steps),
                       "samples_per_s": (self.step - resumed) * self.cfg.batch_size / max(elapsed, 1e-9)}
                self.history.append(row)
                window = []
                if bar is not None:
                    bar.set_postfix(loss=f"{row['loss']:.4f}")
                if on_log is not None:
                    on_log(row)
            if self.step % self.cfg.checkpoint_every == 0 and self.step < total_steps:
                self.save_state()
        if bar is not None:
            bar.close()
        if self.dist.active:
            self.header_extra["replica_spread"] = ddp.replica_spread(self.student, self.dist)
        self.save_state()
        self.student.eval()
        elapsed = time.perf_counter() - start
        done = self.step - resumed
        return DistillResult(step=self.step, final_loss=float(last), seconds=elapsed,
                             samples_per_s=done * self.cfg.batch_size / max(elapsed, 1e-9), resumed_from=resumed)

    def save_student(self, path: str | Path | None = None, extra: Mapping[str, Any] | None = None) -> Path:
        """The policy checkpoint (no optimizer state): what `polytask eval` and the policy server load."""
        if path is None:
            if self.run_dir is None:
                raise ValueError("save_student: no path and no run folder")
            path = self.run_dir / STUDENT_FILE
        return save_student(path, self.student, self.goals, self.tasks, self.step,
                            extra={"config": asdict(self.cfg), **self.header_extra, **(extra or {})})


def _mean(values: Sequence[float | torch.Tensor]) -> float:
    """Mean of step losses, some of them device tensors (one read for the lot)."""
    return float(torch.stack([torch.as_tensor(v, dtype=torch.float64) for v in values]).mean())


@torch.no_grad()
def action_error(student: StudentNet, goals: Mapping[str, np.ndarray], datasets: Sequence[TaskData],
                 max_rows: int = 4096) -> dict[str, float]:
    """Mean squared action error (summed over action dims) of the student against the teacher, per task."""
    out = {}
    student.eval()
    for d in datasets:
        n = min(len(d), max_rows)
        obs = torch.from_numpy(d.states[:n])
        pred = student(obs, goal_tensor(goals[d.task], student.spec.goal))
        out[d.task] = float((pred - torch.from_numpy(d.actions[:n])).pow(2).sum(-1).mean())
    return out


def new_student(cfg: DistillConfig, datasets: Sequence[TaskData], goals: Mapping[str, np.ndarray]) -> StudentNet:
    """A randomly initialised student sized by the config, the data and the goals (not by any teacher)."""
    goal = np.asarray(next(iter(goals.values())))
    goal_dim, goal_image_size = (0, int(goal.shape[0])) if cfg.goal == "image" else (len(goal), 84)
    torch.manual_seed(cfg.seed)
    d0 = datasets[0]
    obs_dim = d0.states.shape[1] if cfg.obs == "state" else int(d0.frames.shape[1])
    student = StudentNet(student_spec(cfg, obs_dim, d0.actions.shape[1], goal_dim, goal_image_size))
    if cfg.obs == "state":
        student.set_normalizer(*normalizer(datasets))
    return student


def distill(datasets: Sequence[TaskData], goals: Mapping[str, np.ndarray], cfg: DistillConfig,
            run_dir: str | Path | None = None, student: StudentNet | None = None, steps: int | None = None,
            resume: bool = True, progress: bool = False, sampler: Any = None,
            header_extra: Mapping[str, Any] | None = None,
            on_log: Callable[[dict[str, float]], None] | None = None) -> tuple[Distiller, DistillResult]:
    """Distil the tasks of `datasets` into `student` (a new one when None) for `steps` (cfg.steps) steps.

    `on_log` receives every logged row (step, loss, lr, samples_per_s) as it is written: how a caller watches."""
    if not datasets:
        raise ValueError("distill: no task data")
    if student is None:
        student = new_student(cfg, datasets, goals)
        if ddp.current().active and cfg.obs == "state":  # each rank holds a share: the statistics of all shares
            student.set_normalizer(*ddp.global_normalizer(datasets, ddp.current()))
    if sampler is None:
        sampler = MemorySampler(datasets, device=cfg.device)
    distiller = Distiller(student, goals, sampler, [d.task for d in datasets], cfg, run_dir, header_extra)
    if resume:
        try:
            distiller.try_resume()
        except CheckpointError as err:
            raise CheckpointError(f"{err}. Use a new run folder (or --no-resume) for a different student or "
                                  "task set.") from err
    result = distiller.train(steps if steps is not None else cfg.steps, progress=progress, on_log=on_log)
    if run_dir is not None and ddp.current().main:
        write_rows(distiller.history, Path(run_dir) / "distill_history.csv")
    return distiller, result


__all__ = [
    "DistillResult",
    "Distiller",
    "action_error",
    "distill",
    "lr_at",
    "new_student",
    "student_tensors",
]
