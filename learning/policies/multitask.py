"""The unified policy of a multi-task RL run: one encoder + actor for every task, each task's goal looked up by the
name of the task it acts in; and its checkpoint (weights and one goal tensor per task, nothing unpickled).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from polytask.learning.data.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_module,
    module_tensors,
    save_checkpoint,
)
from polytask.learning.nets.drqv2 import Actor, Encoder, NetworkSpec
from polytask.learning.policies.expert import ExpertPolicy, network_inputs
from polytask.sim.task import Step

KIND = "multitask-rl"


def goal_tensor(goal: np.ndarray | Tensor | None) -> Tensor | None:
    """A task's goal as the policy holds it: a (3, H, W) uint8 image as is, a vector as float32, or no goal."""
    if goal is None:
        return None
    goal = torch.as_tensor(np.asarray(goal))
    return goal if goal.dtype == torch.uint8 else goal.float()


class MultiTaskPolicy:
    """One encoder + actor for every task; the goal is looked up by the name of the task it acts in. With one task
    it is that task's expert (the online-RL loop evaluates every learner through it)."""

    def __init__(self, encoder: Encoder, actor: Actor, spec: NetworkSpec,
                 goals: Mapping[str, np.ndarray | Tensor | None], device: str | torch.device = "cpu") -> None:
        self.spec = spec
        self.per_task = {t: ExpertPolicy(encoder, actor, spec, goal_tensor(g), device, task=t)
                         for t, g in goals.items()}
        self.inputs = network_inputs(spec, tuple(goals), unified=True)
        self._current: ExpertPolicy | None = None

    @property
    def tasks(self) -> list[str]:
        return list(self.per_task)

    def reset(self, step: Step) -> None:
        name = step.goal.name
        if name not in self.per_task:
            raise KeyError(f"multi-task policy was not trained on task {name!r}; it knows {self.tasks}")
        self._current = self.per_task[name]
        self._current.reset(step)

    def act(self, step: Step) -> np.ndarray:
        if self._current is None:
            raise RuntimeError("MultiTaskPolicy.act before reset")
        return self._current.act(step)


def save_multitask_policy(path: str | Path, encoder: Encoder, actor: Actor, spec: NetworkSpec,
                          goals: Mapping[str, np.ndarray], header: Mapping[str, Any]) -> Path:
    tensors = {**module_tensors("encoder", encoder), **module_tensors("actor", actor),
               **{f"goal/{t}": torch.as_tensor(np.asarray(g, np.float32)) for t, g in goals.items()}}
    return save_checkpoint(path, tensors, {"kind": KIND, "network": spec.to_dict(),
                                           "goal_modality": spec.goal_modality, "tasks": list(goals), **header})


def load_multitask_policy(path: str | Path, device: str | torch.device = "cpu") -> MultiTaskPolicy:
    """The unified policy of a multi-task RL run (safetensors + JSON header; nothing is unpickled)."""
    tensors, header = load_checkpoint(path, expect={"kind": KIND}, device="cpu")
    where = str(path)
    try:
        spec = NetworkSpec.from_dict(header["network"], where)
        tasks = list(header["tasks"])
    except KeyError as err:
        raise CheckpointError(f"{where}: multi-task header lacks key {err}") from err
    encoder, actor = Encoder(spec), Actor(spec)
    load_module(encoder, tensors, "encoder", where)
    load_module(actor, tensors, "actor", where)
    missing = [t for t in tasks if f"goal/{t}" not in tensors]
    if missing:
        raise CheckpointError(f"{where}: no goal tensor for tasks {missing}")
    encoder.to(device).eval()
    actor.to(device).eval()
    return MultiTaskPolicy(encoder, actor, spec, {t: tensors[f"goal/{t}"].numpy() for t in tasks}, device)
