"""Configuration of the multi-task RL baselines (MTRL, MTRL-Demo, MTRL-PCGrad, Distral), Table IV as defaults.

The agent, network, replay and BC sections are the expert's own dataclasses (learning/rl/expert_config.py), so a
multi-task run and a per-task expert share every hyper-parameter name and default; only what is new lives here.
`network.goal_modality: auto` means a one-hot task goal (the paper's MTRL) over the task's suite
(learning/goals.py). Load with `polytask.learning.config.load_config(MultiTaskConfig, path, overrides)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

from polytask.learning.rl.expert_config import AgentConfig, BCConfig, NetworkConfig, ReplayConfig, RunConfig

Method = Literal["mtrl", "mtrl-demo", "mtrl-pcgrad", "distral"]
METHODS: tuple[str, ...] = get_args(Method)


@dataclass
class DistralConfig:
    """Distral (Teh et al. 2017) with the expert's fixed-std Gaussian heads: KL(π_i || π0) = ||μ_i − μ0||² / (2σ²)."""

    kl_coef: float = 0.075  # weight of the KL in each task actor's loss (α·λ of Eq. 1: the BC term's weight)
    std: float = 0.1  # σ of both Gaussians (the expert's bc_std), so the KL is 50·||μ_i − μ0||² at 0.1
    lr: float = 1e-4  # Adam, the distilled policy π0 (encoder + actor)

    def __post_init__(self) -> None:
        if self.kl_coef < 0 or self.std <= 0 or self.lr <= 0:
            raise ValueError(f"distral: kl_coef {self.kl_coef} must be >= 0, std {self.std} and lr {self.lr} > 0")


@dataclass
class MultiTaskTrainConfig(RunConfig):
    method: Method = "mtrl"
    tasks: list[str] = field(default_factory=list)  # registry names; all must share obs and action dims
    steps: int = 1_600_000  # agent steps over all tasks (16 Meta-World tasks x the expert's 100000)
    eval_every: int = 100000  # agent steps; 0 = only at the start and the end
    eval_video: bool = False  # an mp4 per task at every evaluation (renders even state runs)
    save_every: int = 100000  # agent steps (the full checkpoint lands at the next episode end)

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"train.tasks names a task twice: {self.tasks}")


@dataclass
class MultiTaskConfig:
    agent: AgentConfig = field(default_factory=AgentConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)  # capacity is per task
    bc: BCConfig = field(default_factory=BCConfig)  # mtrl-demo only: multi-task BC pretraining on all demos
    distral: DistralConfig = field(default_factory=DistralConfig)
    train: MultiTaskTrainConfig = field(default_factory=MultiTaskTrainConfig)
