"""Where a finished episode's training rewards come from: the environment's, or optimal transport against the
demos (rl/ot_rewards.py). The online-RL loop asks its `RewardHook` once per step (before acting) and once per
finished episode; what the OT reward keeps (its target encoder and scale) is saved with the run's checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from polytask.learning.data.checkpoint import load_module, module_tensors
from polytask.learning.data.episodes import Episode
from polytask.learning.data.frames import frames_chw
from polytask.learning.data.recorder import EpisodeRecorder
from polytask.learning.data.replay import episode_obs
from polytask.learning.nets.drqv2 import Encoder
from polytask.learning.rl.expert_config import RewardConfig
from polytask.learning.rl.ot_rewards import OTRewarder


class RewardHook(Protocol):
    def before_step(self, step: int) -> None:
        """Called before each action (the OT reward refreshes its target encoder on a step schedule)."""
        ...

    def episode_rewards(self, task: str, rec: EpisodeRecorder) -> tuple[np.ndarray, dict[str, Any]]:
        """The T rewards of the recorded episode and what to note in its `extra`."""
        ...

    def state_tensors(self) -> tuple[dict[str, Tensor], dict[str, Any]]: ...

    def load_state_tensors(self, tensors: Mapping[str, Tensor], meta: Mapping[str, Any], where: str) -> None: ...


class EnvReward:
    """The task's own reward."""

    def before_step(self, step: int) -> None:
        pass

    def episode_rewards(self, task: str, rec: EpisodeRecorder) -> tuple[np.ndarray, dict[str, Any]]:
        return rec.env_reward, {}

    def state_tensors(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        return {}, {}

    def load_state_tensors(self, tensors: Mapping[str, Tensor], meta: Mapping[str, Any], where: str) -> None:
        pass


class OTReward:
    """ROT/PolyTask's reward: an episode's per-step OT cost against the closest demo, computed with a target copy of
    the agent's encoder that is refreshed every `reward.target_update_steps` steps (Table IV: 20000)."""

    def __init__(self, cfg: RewardConfig, encoder: Encoder, demos: Sequence[Episode], frame_stack: int, pixels: bool,
                 device: str | torch.device = "cpu") -> None:
        self.cfg, self.encoder, self.pixels = cfg, encoder, pixels
        self.rewarder = OTRewarder(encoder, [episode_obs(d, pixels) for d in demos], frame_stack, pixels,
                                   cfg.sinkhorn_reg, cfg.sinkhorn_iters, scale=None if cfg.auto_scale else cfg.scale,
                                   scale_factor=cfg.scale_factor, device=device, cost=cfg.cost,
                                   features=cfg.features, standardise=cfg.standardise)

    def before_step(self, step: int) -> None:
        if step % self.cfg.target_update_steps == 0:
            self.rewarder.refresh(self.encoder)

    def episode_rewards(self, task: str, rec: EpisodeRecorder) -> tuple[np.ndarray, dict[str, Any]]:
        obs = frames_chw(rec.pixels()) if self.pixels else np.stack(rec.states).astype(np.float32)
        reward = self.rewarder.episode_rewards(obs)
        return reward, {"ot_demo": self.rewarder.last_best, "ot_scale": self.rewarder.scale}

    def state_tensors(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        return module_tensors("ot_target", self.rewarder.target), {"scale": self.rewarder.scale}

    def load_state_tensors(self, tensors: Mapping[str, Tensor], meta: Mapping[str, Any], where: str) -> None:
        load_module(self.rewarder.target, dict(tensors), "ot_target", where)
        self.rewarder.scale = meta.get("scale")
