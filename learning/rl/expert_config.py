"""Configuration of per-task expert training, with Table IV of the paper (and the authors' code) as defaults.

Units: Table IV counts *frames* (simulator steps); the trainer counts *agent steps* (after action repeat), so
`seed_frames` is converted with the task's action repeat while `steps`, `eval_every` and `save_every` are agent
steps. Load with `polytask.learning.config.load_config(ExpertConfig, path, overrides)`: unknown keys and wrong
types are errors naming the file and key.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class AgentConfig:
    lr: float = 1e-4  # Adam, actor and critic(+encoder)
    gamma: float = 0.99
    n_step: int = 0  # 0 = the task's own (TaskSpec.n_step: 3 Meta-World/DMC, 1 Kitchen/robot)
    batch_size: int = 256
    critic_tau: float = 0.01  # soft target update of the critics
    update_every_steps: int = 2
    num_expl_steps: int = 2000  # uniform random actions for the first N agent steps
    # DrQ-v2 schedule strings: "0.1" (constant) or "linear(init,final,duration_in_steps)".
    stddev_schedule: str | float = "linear(1.0,0.1,500000)"
    stddev_clip: float = 0.3
    augment: bool = True  # random shift (pad 4) of observation AND goal images
    aug_pad: int = 4
    bc_regularize: bool = True  # Eq. 1's BC term during online finetuning
    bc_alpha: float = 0.3  # α
    bc_lambda: float = 0.25  # λ
    bc_loss: str = "logprob"  # "logprob": -log N(a_e; μ, bc_std) (authors); "mse": ||a_e - μ||² (Eq. 1 literally)
    bc_std: float = 0.1

    def __post_init__(self) -> None:
        if self.bc_loss not in ("logprob", "mse"):
            raise ValueError(f"agent.bc_loss is {self.bc_loss!r}, expected 'logprob' or 'mse'")
        if not 0.0 <= self.bc_lambda <= 1.0:
            raise ValueError(f"agent.bc_lambda is {self.bc_lambda}, expected a value in [0, 1]")
        if self.batch_size < 1 or self.update_every_steps < 1 or self.n_step < 0:
            raise ValueError("agent.batch_size and agent.update_every_steps must be >= 1, agent.n_step >= 0")


@dataclass
class NetworkConfig:
    obs: str = "auto"  # "pixels", "state", or "auto": pixels for Meta-World/Kitchen/xArm, state for DMC
    goal_modality: str = "auto"  # "image", "onehot", "sinusoid", "language", "none", or "auto": image for pixels,
    # none for states (experts); onehot (multi-task and lifelong RL)
    goal_dim: int = 0  # vector goals: 0 = learning/goals.py's rule (onehot: the suite's size, sinusoid 64)
    hidden: int = 1024
    feature_dim: int = 512
    frame_stack: int = 3  # pixels only; states use 1
    actor_layers: int = 4
    critic_layers: int = 2
    critic_action_tile: int = 0
    state_encoder: str = "identity"


@dataclass
class ReplayConfig:
    capacity: int = 150000  # transitions kept in memory; the oldest episodes are evicted beyond it
    demo_batch_size: int = 0  # 0 = agent.batch_size


@dataclass
class BCConfig:
    pretrain_steps: int = 10000  # BC gradient steps on the demos before online finetuning (0 = skip)
    lr: float = 1e-4
    batch_size: int = 256


@dataclass
class RewardConfig:
    kind: str = "env"  # "env" or "ot" (optimal-transport trajectory matching against the demos)
    sinkhorn_reg: float = 0.01
    sinkhorn_iters: int = 100
    target_update_steps: int = 20000  # refresh the OT feature encoder from the online one every N agent steps
    auto_scale: bool = True  # set the scale so the first episode's return is -scale_factor
    scale_factor: float = 10.0
    scale: float = 1.0  # the scale itself when auto_scale is off

    def __post_init__(self) -> None:
        if self.kind not in ("env", "ot"):
            raise ValueError(f"reward.kind is {self.kind!r}, expected 'env' or 'ot'")


@dataclass
class TrainConfig:
    task: str = ""
    demos: str = ""  # episode store holding the task's demos; "" = learn from scratch (env reward, no BC)
    init_from: str = ""  # warm start: a run folder or checkpoint whose networks (same architecture) seed this run
    max_demos: int = 0  # 0 = all demos of the task in the store
    steps: int = 100000  # agent steps of online finetuning (env frames = steps * action repeat)
    seed_frames: int = 12000  # no updates before this many frames (Table IV)
    eval_every: int = 10000  # agent steps
    eval_episodes: int = 10
    eval_video: bool = True
    save_every: int = 10000  # agent steps (checkpoints land at the next episode end)
    seed: int = 1
    device: str = "cpu"
    threads: int = 0  # torch CPU threads (0 = leave torch's default)
    runs_dir: str = "runs"
    name: str = ""  # run folder is <runs_dir>/<date>-<name>; default name: task slug + reward kind
    render_quality: str = "fast"
    progress: bool = True


@dataclass
class ExpertConfig:
    agent: AgentConfig = field(default_factory=AgentConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    bc: BCConfig = field(default_factory=BCConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
