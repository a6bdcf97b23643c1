"""Configuration of per-task expert training, with Table IV of the paper (and the authors' code) as defaults.

Units: Table IV counts *frames* (simulator steps); the trainer counts *agent steps* (after action repeat), so
`seed_frames` is converted with the task's action repeat while `steps`, `eval_every` and `save_every` are agent
steps. Load with `polytask.learning.config.load_config(ExpertConfig, path, overrides)`: unknown keys and wrong
types are errors naming the file and key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from polytask.learning.config import check_choices

ObsKind = Literal["auto", "pixels", "state"]
GoalModality = Literal["auto", "none", "onehot", "sinusoid", "language", "image"]
RenderQuality = Literal["fast", "default"]


@dataclass
class AgentConfig:
    lr: float = 1e-4  # Adam, actor and critic(+encoder)
    gamma: float = 0.99
    n_step: int = 0  # 0 = the task's own (TaskSpec.n_step: 3 Meta-World/DMC, 1 Kitchen/robot)
    batch_size: int = 256
    critic_tau: float = 0.01  # soft target update of the critics
    update_every_steps: int = 2
    num_expl_steps: int = 2000  # uniform random actions for the first N agent steps
    # DrQ-v2 schedule strings: a constant (e.g. 0.1, what the authors' finetuning ran) or
    # "linear(init,final,duration_in_steps)".
    stddev_schedule: str | float = "linear(1.0,0.1,500000)"
    stddev_clip: float = 0.3
    augment: bool = True  # random shift (pad 4) of observation AND goal images
    aug_pad: int = 4
    bc_regularize: bool = True  # Eq. 1's BC term during online finetuning
    bc_alpha: float = 0.3  # α
    bc_lambda: float = 0.25  # λ
    bc_loss: Literal["logprob", "mse"] = "logprob"  # "logprob": -log N(a_e; μ, bc_std) (authors); "mse": ||a_e - μ||²
    bc_std: float = 0.1
    # The actor's first update happens at this agent step; before it only the critic (and the encoder) learn, so the
    # randomly initialised critic first learns the BC-pretrained policy's values instead of pulling the actor off
    # its demos. 0: the authors' (actor and critic from the first update).
    actor_start_step: int = 0
    # How the update runs (numerically the same update; see learning/rl/fast_update.py): "none" eager,
    # "graph" one CUDA graph per update (on a CPU the same static-buffer step runs uncaptured), "compile"
    # torch.compile of the loss stages.
    compile: Literal["none", "graph", "compile"] = "none"

    def __post_init__(self) -> None:
        check_choices(self, "agent")
        if not 0.0 <= self.bc_lambda <= 1.0:
            raise ValueError(f"agent.bc_lambda is {self.bc_lambda}, expected a value in [0, 1]")
        if self.actor_start_step < 0:
            raise ValueError(f"agent.actor_start_step is {self.actor_start_step}, expected a step >= 0")
        if self.batch_size < 1 or self.update_every_steps < 1 or self.n_step < 0:
            raise ValueError("agent.batch_size and agent.update_every_steps must be >= 1, agent.n_step >= 0")


@dataclass
class NetworkConfig:
    obs: ObsKind = "auto"  # auto: pixels for Meta-World/Kitchen/xArm, state for DMC
    goal_modality: GoalModality = "auto"  # auto: image (pixels) or none (states) for experts, onehot for multi-task RL
    goal_dim: int = 0  # vector goals: 0 = learning/goals.py's rule (onehot: the suite's size, sinusoid 64)
    hidden: int = 1024
    feature_dim: int = 512
    frame_stack: int = 3  # pixels only; states use 1
    actor_layers: int = 4
    critic_layers: int = 2
    critic_action_tile: int = 0  # 0 = the authors' rule: 200 for pixels, (obs+goal)//action_dim for states
    # states: "identity" (authors: raw state), "mlp" (Linear-LayerNorm-Tanh trunk), "standardise" (experts only:
    # the demos' mean/std, frozen; "encoder" OT features then compare standardised states too)
    state_encoder: Literal["identity", "mlp", "standardise"] = "identity"

    def __post_init__(self) -> None:
        check_choices(self, "network")


@dataclass
class ReplayConfig:
    capacity: int = 150000  # transitions in memory per task (newest episodes); all of them also go to <run>/replay
    demo_batch_size: int = 0  # 0 = agent.batch_size


@dataclass
class BCConfig:
    pretrain_steps: int = 10000  # BC gradient steps on the demos before online finetuning (0 = skip)
    lr: float = 1e-4
    batch_size: int = 256


@dataclass
class RewardConfig:
    kind: Literal["env", "ot"] = "env"  # ot: optimal-transport trajectory matching against the demos
    sinkhorn_reg: float = 0.01  # entropic regularisation of the Sinkhorn plan
    sinkhorn_iters: int = 100
    target_update_steps: int = 20000  # refresh the OT feature encoder from the online one every N agent steps
    auto_scale: bool = True  # set the scale so the first episode's return is -scale_factor
    scale_factor: float = 10.0
    scale: float = 1.0  # the scale itself when auto_scale is off
    # The OT cost between features (rl/ot_rewards.py COSTS): "cosine" (authors), "sqeuclidean" or "euclidean"
    # (lengths count), "saturating" (the Euclidean distance d as d / (d + 5 cm): bounded far from a match)
    cost: Literal["cosine", "sqeuclidean", "euclidean", "saturating"] = "cosine"
    # What the cost compares (FEATURE_MAPS): "encoder" (the target encoder's output, authors) or "xarm_relative"
    # ([ee - achieved, tool, achieved - goal] of the xArm's 10-D state: placement-free)
    features: Literal["encoder", "xarm_relative"] = "encoder"
    standardise: bool = False  # divide each feature by the demos' std (centred on their mean) before the cost

    def __post_init__(self) -> None:
        check_choices(self, "reward")


@dataclass
class RunConfig:
    """The `train` section every online-RL run shares (the loop's settings, rl/loop.py); experts and multi-task
    runs add their own fields and defaults."""

    demos: str = ""  # episode store holding the demos; "" = learn from scratch (env reward, no BC)
    max_demos: int = 0  # per task; 0 = all demos of the task in the store
    steps: int = 100000  # agent steps of online finetuning (Meta-World budget 5e4-1.5e5, Table VI)
    seed_frames: int = 12000  # no updates before this many frames (Table IV)
    eval_every: int = 10000  # agent steps; 0 = only at the start and the end
    eval_episodes: int = 10  # per task
    eval_video: bool = True  # an mp4 per task at every evaluation
    save_every: int = 10000  # agent steps (checkpoints land at the next episode end)
    seed: int = 1
    device: str = "cpu"  # torch device: cpu, or cuda on a GPU machine
    threads: int = 0  # torch CPU threads (0 = leave torch's default)
    runs_dir: str = "runs"
    name: str = ""  # run folder is <runs_dir>/<date>-<name>; default: the task and reward (expert), method (multi)
    render_quality: RenderQuality = "fast"
    # 0: the training tasks step in this process; N: in N worker processes (sim/env_workers.py), each task's step
    # running while the learner updates (same episodes for the same seeds)
    env_workers: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        check_choices(self, "train")
        if self.env_workers < 0:
            raise ValueError(f"train.env_workers is {self.env_workers}, expected 0 (in process) or a worker count")
        if self.steps < 1 or self.eval_episodes < 1:
            raise ValueError(f"train.steps ({self.steps}) and train.eval_episodes ({self.eval_episodes}) must be >= 1")


@dataclass
class TrainConfig(RunConfig):
    task: str = ""  # the registry task the expert learns
    init_from: str = ""  # warm start: a run folder or checkpoint whose networks (same architecture) seed this run


@dataclass
class ExpertConfig:
    agent: AgentConfig = field(default_factory=AgentConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    bc: BCConfig = field(default_factory=BCConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
