"""The distilled student: one randomly initialised network for all tasks, and the Policy that wraps it.

Why its own spec: the student's architecture, size and goal modality are independent of the teachers', so it is
described by `StudentSpec` (JSON in the checkpoint header) and built from the shared pieces of
`learning/nets/drqv2.py` (DrQ-v2 pixel encoder, actor MLP): pixel students are encoder + actor exactly as an
expert's; state students standardise their input (mean/std of the distillation data, stored as buffers) and, for
image goals, encode the goal frame with their own copy of the pixel encoder. Goals (vectors or images) live in the
checkpoint next to the weights, so a student checkpoint alone can act on every task it was taught.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from polytask.learning.goals import GOAL_KINDS
from polytask.learning.nets.drqv2 import Actor, Encoder, NetworkSpec, count_parameters, spec_from_dict

OBS_KINDS = ("state", "pixels")
STD_FLOOR = 1e-2
NORM_CLIP = 10.0


@dataclass(frozen=True)
class StudentSpec:
    obs: str  # "state" | "pixels"
    obs_dim: int  # state_dim, or the image side (square frames) for pixels
    action_dim: int
    goal: str  # onehot | sinusoid | language | image
    goal_dim: int = 0  # vector goals; 0 for image goals
    hidden: int = 1024
    layers: int = 4
    feature_dim: int = 512
    frame_stack: int = 3
    normalize_obs: bool = True
    goal_image_size: int = 84  # state students with image goals: the side of the goal frames their encoder takes

    def __post_init__(self) -> None:
        if self.obs not in OBS_KINDS:
            raise ValueError(f"StudentSpec: key 'obs' is {self.obs!r}, expected one of {OBS_KINDS}")
        if self.goal not in GOAL_KINDS:
            raise ValueError(f"StudentSpec: key 'goal' is {self.goal!r}, expected one of {GOAL_KINDS}")
        if self.goal != "image" and self.goal_dim < 1:
            raise ValueError(f"StudentSpec: key 'goal_dim' is {self.goal_dim}, expected >= 1 for {self.goal} goals")
        for key in ("obs_dim", "action_dim", "hidden", "layers", "feature_dim", "frame_stack"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"StudentSpec: key {key!r} is {getattr(self, key)!r}, expected an integer >= 1")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = "StudentSpec") -> StudentSpec:
        return spec_from_dict(cls, data, where, "student spec")

    def network_spec(self) -> NetworkSpec:
        """The shared-network spec that sizes encoder and actor. For a state student with image goals the actor
        input is [goal features (feature_dim), state], which is what a vector goal of width feature_dim gives."""
        if self.obs == "pixels":
            return NetworkSpec(obs_modality="pixels", obs_shape=(3, self.obs_dim, self.obs_dim),
                               action_dim=self.action_dim, goal_modality=self.goal, goal_dim=self.goal_dim,
                               hidden=self.hidden, feature_dim=self.feature_dim, frame_stack=self.frame_stack,
                               actor_layers=self.layers)
        goal_dim = self.feature_dim if self.goal == "image" else self.goal_dim
        return NetworkSpec(obs_modality="state", obs_shape=(self.obs_dim,), action_dim=self.action_dim,
                           goal_modality="onehot", goal_dim=goal_dim, hidden=self.hidden,
                           feature_dim=self.feature_dim, actor_layers=self.layers)


class StudentNet(nn.Module):
    """obs (+ goal) -> action mean in (-1, 1)."""

    def __init__(self, spec: StudentSpec) -> None:
        super().__init__()
        self.spec = spec
        self.net_spec = spec.network_spec()
        self.encoder = Encoder(self.net_spec)
        self.goal_encoder: Encoder | None = None
        if spec.obs == "state" and spec.goal == "image":
            side = spec.goal_image_size
            self.goal_encoder = Encoder(NetworkSpec(obs_modality="pixels", obs_shape=(3, side, side),
                                                    action_dim=spec.action_dim, feature_dim=spec.feature_dim))
        self.actor = Actor(self.net_spec)
        in_dim = spec.obs_dim if spec.obs == "state" else 1
        self.register_buffer("obs_mean", torch.zeros(in_dim))
        self.register_buffer("obs_std", torch.ones(in_dim))

    def set_normalizer(self, mean: np.ndarray | Tensor, std: np.ndarray | Tensor) -> None:
        """Standardise state inputs with the distillation data's statistics (std floored at 0.01)."""
        if self.spec.obs != "state" or not self.spec.normalize_obs:
            return
        mean = torch.as_tensor(np.asarray(mean, np.float32)).reshape(-1)
        std = torch.as_tensor(np.asarray(std, np.float32)).reshape(-1)
        if mean.shape != self.obs_mean.shape or std.shape != self.obs_std.shape:
            raise ValueError(f"normaliser shape {tuple(mean.shape)}, expected {tuple(self.obs_mean.shape)}")
        self.obs_mean.copy_(mean)
        self.obs_std.copy_(torch.clamp(std, min=STD_FLOOR))

    def goal_features(self, goal: Tensor, batch: int) -> Tensor:
        """Goal tensor -> features, broadcasting a single goal (batch 1) over the batch (one task per step)."""
        if self.spec.goal == "image":
            if goal.dim() == 3:
                goal = goal.unsqueeze(0)
            if goal.shape[-1] == 3:  # HWC -> CHW
                goal = goal.permute(0, 3, 1, 2)
            if self.goal_encoder is not None:
                feat = self.goal_encoder(goal)
            else:
                if goal.shape[1] == 3 and self.spec.frame_stack > 1:
                    goal = goal.repeat(1, self.spec.frame_stack, 1, 1)
                feat = self.encoder(goal)
        else:
            feat = goal.float().reshape(-1, self.spec.goal_dim)
        if feat.shape[0] == 1 and batch > 1:
            feat = feat.expand(batch, -1)
        return feat

    def forward(self, obs: Tensor, goal: Tensor) -> Tensor:
        if self.spec.obs == "state":
            x = obs.float()
            if self.spec.normalize_obs:
                x = torch.clamp((x - self.obs_mean) / self.obs_std, -NORM_CLIP, NORM_CLIP)
            feat = self.encoder(x)
        else:
            feat = self.encoder(obs)
        return self.actor(feat, self.goal_features(goal, obs.shape[0]))

    def num_parameters(self) -> int:
        return count_parameters(self)


def goal_tensor(goal: np.ndarray, kind: str) -> Tensor:
    """A stored goal (vector, or uint8 HxWx3 image) as the tensor `StudentNet` takes for one task."""
    if kind == "image":
        arr = np.asarray(goal)
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[-1] != 3:
            raise ValueError(f"image goal must be uint8 HxWx3, got {arr.dtype} {arr.shape}")
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).unsqueeze(0)
    return torch.from_numpy(np.asarray(goal, np.float32)).reshape(1, -1)
