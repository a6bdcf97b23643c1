"""What a trainer hands the online-RL loop (`RunParts`), and the steps every trainer takes to build them: the
observation kind, the tasks, the network spec and the demos, written once for experts and multi-task runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polytask.learning.config import ConfigError
from polytask.learning.data.episodes import Episode, EpisodeStore
from polytask.learning.nets.drqv2 import NetworkSpec
from polytask.learning.rl.expert_config import NetworkConfig
from polytask.learning.rl.learners import Learner
from polytask.learning.rl.rewards import RewardHook
from polytask.sim import registry
from polytask.sim.env_workers import start_workers
from polytask.sim.task import Task, TaskSpec

PolicyWriter = Callable[[Any, Path], Path]  # (the run, the policy file) -> the file written


@dataclass
class RunParts:
    """What a trainer hands the loop: the tasks (already made), the network, each task's goal, the learner, the
    reward hook, the demos and the writer of the policy checkpoint."""

    method: str  # the learner's registered name ("expert", "mtrl", ...), checked on resume
    tasks: dict[str, Task]
    spec: NetworkSpec
    goals: dict[str, np.ndarray | None]  # per task: a vector, a (3, H, W) image, or None (goal modality none)
    learner: Learner
    reward: RewardHook
    demos: dict[str, list[Episode]]  # per task (empty for methods without demos)
    replay_dirs: dict[str, str]  # per task: its replay store's folder under <run>/replay/ ("" = replay/ itself)
    policy_file: str  # the policy checkpoint, relative to <run>/checkpoints/
    write_policy: PolicyWriter
    run_name: str  # the default run folder name
    goal_pixels: dict[str, np.ndarray | None] = field(default_factory=dict)  # HxWx3 goal frame stored with episodes
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


def observes_pixels(nc: NetworkConfig, task: str) -> bool:
    """`network.obs`, with `auto` meaning states for DMC (the paper's DMC runs) and pixels for every other suite."""
    if nc.obs != "auto":
        return nc.obs == "pixels"
    return registry.entry(task).suite != "dmc"


def make_tasks(names: Sequence[str], pixels: bool, quality: str,
               make: Callable[[str, bool], Task] | None = None, workers: int = 0) -> dict[str, Task]:
    """The training tasks (rendered when the agent observes pixels); `make(name, render)` replaces the registry's
    factory (the online trainer node drives a task through ROS topics); `workers` > 0 steps the tasks in that many
    environment worker processes (train.env_workers). A failure closes what was made."""
    if workers > 0:
        if make is not None:
            raise ConfigError("train.env_workers > 0 runs registry tasks in worker processes; this trainer makes its "
                              "own task (e.g. through ROS topics): set train.env_workers=0")
        return dict(start_workers(names, workers, pixels, quality))
    tasks: dict[str, Task] = {}
    try:
        for name in names:
            tasks[name] = make(name, pixels) if make else registry.make(name, render=pixels, quality=quality)
    except Exception:
        for task in tasks.values():
            task.close()
        raise
    return tasks


def check_compatible(specs: Sequence[TaskSpec], pixels: bool) -> None:
    """One network acts in every task, so all tasks must share observation and action sizes; name the odd one."""
    first = specs[0]
    for s in specs[1:]:
        if s.action_dim != first.action_dim:
            raise ValueError(f"task {s.name!r} has action dim {s.action_dim}, but {first.name!r} has "
                             f"{first.action_dim}: one multi-task policy needs one action size")
        if pixels and s.image_size != first.image_size:
            raise ValueError(f"task {s.name!r} renders {s.image_size}x{s.image_size} frames, but {first.name!r} "
                             f"renders {first.image_size}x{first.image_size}")
        if not pixels and s.state_dim != first.state_dim:
            raise ValueError(f"task {s.name!r} has state dim {s.state_dim}, but {first.name!r} has "
                             f"{first.state_dim}: one multi-task policy needs one observation size")


def network_spec(nc: NetworkConfig, task: TaskSpec, pixels: bool, goal_modality: str, goal_dim: int) -> NetworkSpec:
    """The networks of an agent observing `task` (pixels: one 3xHxW frame, stacked `network.frame_stack` times;
    states: the state vector, unstacked)."""
    obs_shape = (3, task.image_size, task.image_size) if pixels else (task.state_dim,)
    return NetworkSpec(obs_modality="pixels" if pixels else "state", obs_shape=obs_shape, action_dim=task.action_dim,
                       goal_modality=goal_modality, goal_dim=goal_dim, hidden=nc.hidden, feature_dim=nc.feature_dim,
                       frame_stack=nc.frame_stack if pixels else 1, actor_layers=nc.actor_layers,
                       critic_layers=nc.critic_layers, critic_action_tile=nc.critic_action_tile,
                       state_encoder=nc.state_encoder)


def load_demos(store_root: str, tasks: Sequence[str], max_demos: int) -> dict[str, list[Episode]]:
    """Each task's demos from an episode store (the first `max_demos`; 0 = all); a task without any is an error."""
    store = EpisodeStore(store_root, create=False)
    out = {}
    for t in tasks:
        demos = store.episodes(t)
        if max_demos > 0:
            demos = demos[:max_demos]
        if not demos:
            raise ValueError(f"demo store {store_root} holds no episodes of task {t!r} "
                             f"(it has: {', '.join(store.tasks()) or 'nothing'})")
        out[t] = demos
    return out


def goal_modality(nc: NetworkConfig, default: str, allowed: Sequence[str], who: str) -> str:
    """`network.goal_modality`, `auto` meaning `default`; a modality the learner cannot use is a config error."""
    kind = nc.goal_modality if nc.goal_modality != "auto" else default
    if kind not in allowed:
        raise ConfigError(f"network.goal_modality is {kind!r}; {who} take one of {tuple(allowed)} (or auto)")
    return kind
