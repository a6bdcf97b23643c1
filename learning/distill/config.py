"""Distillation hyper-parameters (Table V of the paper as defaults) as one documented dataclass."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from polytask.learning.config import check_choices


@dataclass
class StudentConfig:
    """The student's architecture: independent of the teachers' (0.1M-20M parameters all work in the paper)."""

    hidden: int = 1024  # Table V
    layers: int = 4  # hidden layers of the actor MLP (authors' actor: 4)
    feature_dim: int = 512  # pixel / goal-image trunk width
    frame_stack: int = 3  # pixel students only
    normalize_obs: bool = True  # state students: standardise inputs with the data's mean/std (kept in the checkpoint)
    sinusoid_dim: int = 64  # width of sinusoidal goals
    goal_capacity: int = 0  # one-hot width; 0 = the number of tasks in the suite (fixed, so lifelong never grows)


@dataclass
class DistillConfig:
    """Eq. 2 / Algorithm 2. Defaults: Table V (buffer 30000 per task, lr 5e-5, batch 256, hidden 1024, Adam)."""

    goal: Literal["onehot", "sinusoid", "language", "image"] = "onehot"  # the student's goal modality
    obs: Literal["state", "pixels"] = "state"  # pixel students need stores with pixels
    buffer_per_task: int = 30000  # Table V: transitions per task kept for distillation (most recent episodes)
    lr: float = 5e-5  # Table V
    lr_schedule: Literal["constant", "cosine"] = "constant"  # cosine: warm-up, then cosine down to min_lr_ratio * lr
    warmup_steps: int = 0
    min_lr_ratio: float = 0.05  # cosine floor, as a fraction of lr
    batch_size: int = 256  # Table V
    steps: int = 100000  # gradient steps of one distillation (per added task in lifelong mode)
    weight_decay: float = 0.0
    grad_clip: float = 0.0  # 0 = off
    pcgrad: bool = False  # PolyTask-PCGrad: project conflicting per-task gradients
    pcgrad_tasks: int = 4  # tasks per step when pcgrad is on (each with its own batch)
    seed: int = 0
    threads: int = 1  # torch CPU threads
    device: str = "cpu"
    # How each step runs (numerically the same; learning/distill/fast_step.py): "none" eager, "graph" one CUDA
    # graph per step (off CUDA the same static-buffer step runs uncaptured), "compile" torch.compile of the loss.
    compile: Literal["none", "graph", "compile"] = "none"
    checkpoint_every: int = 2000  # steps between resumable checkpoints
    log_every: int = 500
    eval_episodes: int = 10
    student: StudentConfig = field(default_factory=StudentConfig)

    def __post_init__(self) -> None:
        check_choices(self)
        for key in ("buffer_per_task", "batch_size", "steps", "checkpoint_every", "log_every", "eval_episodes",
                    "threads", "pcgrad_tasks"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"distill config: key {key!r} is {getattr(self, key)!r}, expected an integer >= 1")
        if self.compile not in ("none", "graph", "compile"):
            raise ValueError(f"distill config: key 'compile' is {self.compile!r}, expected 'none', 'graph' or "
                             "'compile'")
        if not self.lr > 0:
            raise ValueError(f"distill config: key 'lr' is {self.lr!r}, expected > 0")
