"""A trained expert as a `Policy`: encoder + actor mean, with its own frame stack and its task's goal.

`load_policy(checkpoint)` is what `polytask record-demos --policy`, evaluation and relabelling call; it reads a
safetensors checkpoint (never a pickle), rebuilds the networks from the header's NetworkSpec and refuses a
checkpoint that is not an expert's.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import Tensor

from polytask.learning.data.checkpoint import CheckpointError, load_checkpoint, load_module
from polytask.learning.data.frames import FrameStacker
from polytask.learning.nets.drqv2 import Actor, Encoder, NetworkSpec, goal_features
from polytask.learning.policies.base import PolicyInputs
from polytask.sim.task import Step

KIND = "expert"


def network_inputs(spec: NetworkSpec, tasks: tuple[str, ...], unified: bool) -> PolicyInputs:
    """What a policy built from `spec` reads: one frame of obs_shape (stacked inside the policy), or the state."""
    pixels = spec.obs_modality == "pixels"
    return PolicyInputs(action_dim=spec.action_dim, state_dim=0 if pixels else spec.obs_shape[0],
                        image_size=spec.obs_shape[-1] if pixels else 0, goal=spec.goal_modality, tasks=tasks,
                        unified=unified)


class ExpertPolicy:
    """Acts with the actor's mean. Shares modules with a live agent (evaluation) or owns loaded ones."""

    def __init__(self, encoder: Encoder, actor: Actor, spec: NetworkSpec, goal: Tensor | None,
                 device: str | torch.device = "cpu", task: str = "") -> None:
        self.encoder, self.actor, self.spec = encoder, actor, spec
        self.device = torch.device(device)
        # A goal is one unbatched tensor: (3, H, W) uint8 image or (goal_dim,) vector; add the batch axis once.
        self.goal = None if goal is None else goal.to(self.device)
        if self.goal is not None and self.goal.dim() in (1, 3):
            self.goal = self.goal[None]
        self.task = task
        self.pixels = spec.obs_modality == "pixels"
        self.inputs = network_inputs(spec, (task,) if task else (), unified=False)
        self.stacker = FrameStacker(spec.frame_stack, self.pixels)
        self._fresh = False
        self._goal_f: Tensor | None = None

    def _obs(self, step: Step) -> np.ndarray:
        if self.pixels:
            if step.pixels is None:
                raise ValueError(f"expert for {self.task or 'this task'} observes pixels; the task was made with "
                                 "render=False")
            return step.pixels
        return step.state

    def reset(self, step: Step) -> None:
        """Start an episode. The goal's features are computed here once (an image goal costs a full encoder pass),
        so the weights must not change during the episode (true for evaluation and deployment)."""
        self.stacker.reset(self._obs(step))
        self._fresh = True
        obs = torch.as_tensor(self.stacker.current(), device=self.device)[None]
        with torch.no_grad():
            self._goal_f = goal_features(self.encoder, self.spec, self.goal, obs)

    @torch.no_grad()
    def act(self, step: Step) -> np.ndarray:
        if self._goal_f is None:
            raise RuntimeError("ExpertPolicy.act before reset")
        if self._fresh:
            self._fresh = False  # the reset step's observation is already in the stack
        else:
            self.stacker.push(self._obs(step))
        obs = torch.as_tensor(self.stacker.current(), device=self.device)[None]
        return self.net(obs, self._goal_f)[0].cpu().numpy().astype(np.float32)

    def net(self, obs: Tensor, goal_f: Tensor) -> Tensor:
        """The network call of `act` (learning/accel/graphed_policy.py swaps in a CUDA-graph replay of it)."""
        return self.actor(self.encoder(obs), goal_f)


def load_policy(path: str | os.PathLike, device: str | torch.device = "cpu", task: str | None = None) -> ExpertPolicy:
    """Rebuild an expert policy from a checkpoint; `task` (optional) must match the checkpoint's task."""
    expect = {"kind": KIND}
    if task is not None:
        expect["task"] = task
    tensors, header = load_checkpoint(path, expect=expect, device=device)
    try:
        spec = NetworkSpec.from_dict(header["network"], where=str(path))
    except KeyError as err:
        raise CheckpointError(f"{path}: header has no 'network' (architecture)") from err
    encoder, actor = Encoder(spec).to(device), Actor(spec).to(device)
    load_module(encoder, tensors, "encoder", str(path))
    load_module(actor, tensors, "actor", str(path))
    encoder.eval()
    actor.eval()
    goal = tensors.get("goal")
    if spec.goal_modality != "none" and goal is None:
        raise CheckpointError(f"{path}: goal modality {spec.goal_modality!r} but no 'goal' tensor stored")
    return ExpertPolicy(encoder, actor, spec, goal, device=device, task=str(header.get("task", "")))
