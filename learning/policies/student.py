"""A distilled student as a `Policy`, and its checkpoint: weights, normaliser and one goal per task in one
safetensors file (header: the `StudentSpec`, the tasks, the step), so a student checkpoint alone can act on every
task it was taught. Loading never unpickles anything.
"""

from __future__ import annotations

from collections import deque
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
from polytask.learning.nets.student import StudentNet, StudentSpec, goal_tensor
from polytask.learning.policies.base import PolicyInputs
from polytask.sim.task import Step


def student_tensors(student: StudentNet, goals: Mapping[str, np.ndarray]) -> dict[str, Tensor]:
    tensors = module_tensors("student", student)
    for name, g in goals.items():
        tensors[f"goal/{name}"] = torch.from_numpy(np.ascontiguousarray(g))
    return tensors


def save_student(path: str | Path, student: StudentNet, goals: Mapping[str, np.ndarray], tasks: list[str],
                 step: int, extra: Mapping[str, Any] | None = None,
                 extra_tensors: Mapping[str, Tensor] | None = None) -> Path:
    """Weights, goals and normaliser in one safetensors file; header: spec, tasks, step and `extra` (JSON)."""
    missing = [t for t in tasks if t not in goals]
    if missing:
        raise ValueError(f"save_student: no goal for tasks {missing}")
    header = {"kind": "student", "student": student.spec.to_dict(), "goal_modality": student.spec.goal,
              "tasks": list(tasks), "step": int(step), "parameters": student.num_parameters(), **(extra or {})}
    tensors = student_tensors(student, {t: goals[t] for t in tasks})
    tensors.update(extra_tensors or {})
    return save_checkpoint(path, tensors, header)


def load_student(path: str | Path, device: str = "cpu") -> tuple[StudentNet, dict[str, np.ndarray], dict[str, Any],
                                                                  dict[str, Tensor]]:
    """(student, goals by task, header, all tensors) from a student checkpoint; never unpickles anything."""
    tensors, header = load_checkpoint(path, expect={"kind": "student"})
    where = str(path)
    try:
        spec = StudentSpec.from_dict(header["student"], where)
        tasks = header["tasks"]
    except KeyError as err:
        raise CheckpointError(f"{where}: student header lacks key {err}") from err
    if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
        raise CheckpointError(f"{where}: header key 'tasks' must be a list of task names, got {tasks!r}")
    student = StudentNet(spec)
    load_module(student, tensors, "student", where)
    goals = {}
    for t in tasks:
        key = f"goal/{t}"
        if key not in tensors:
            raise CheckpointError(f"{where}: no goal tensor {key!r} for task {t!r}")
        goals[t] = tensors[key].numpy()
        if spec.goal != "image" and goals[t].shape != (spec.goal_dim,):
            raise CheckpointError(f"{where}: goal {key!r} has shape {goals[t].shape}, expected ({spec.goal_dim},)")
    student.to(device).eval()
    return student, goals, header, tensors


class StudentPolicy:
    """The unified policy: looks up the goal of the task it is acting in (by name) and runs the student."""

    def __init__(self, student: StudentNet, goals: Mapping[str, np.ndarray], device: str = "cpu") -> None:
        self.student = student.to(device).eval()
        self.spec = student.spec
        self.device = device
        self._goal_cache = {name: goal_tensor(g, self.spec.goal).to(device) for name, g in goals.items()}
        pixels = self.spec.obs == "pixels"
        self.inputs = PolicyInputs(action_dim=self.spec.action_dim, state_dim=0 if pixels else self.spec.obs_dim,
                                   image_size=self.spec.obs_dim if pixels else 0, goal=self.spec.goal,
                                   tasks=tuple(goals), unified=True)
        self._frames: deque[np.ndarray] = deque(maxlen=self.spec.frame_stack)

    @property
    def tasks(self) -> list[str]:
        return list(self._goal_cache)

    def _goal(self, step: Step) -> Tensor:
        name = step.goal.name
        if name in self._goal_cache:
            return self._goal_cache[name]
        if self.spec.goal == "image" and step.goal.image is not None:
            return goal_tensor(step.goal.image, "image").to(self.device)
        raise KeyError(f"student was not taught task {name!r}; it knows {sorted(self._goal_cache)}")

    def reset(self, step: Step) -> None:
        if self.spec.obs == "pixels":
            if step.pixels is None:
                raise ValueError("pixel student needs rendered steps (evaluate with render=True)")
            self._frames.clear()
            for _ in range(self.spec.frame_stack):
                self._frames.append(step.pixels.transpose(2, 0, 1))

    def net(self, obs: Tensor, goal: Tensor) -> Tensor:
        """The network call of `act` (learning/accel/graphed_policy.py swaps in a CUDA-graph replay of it)."""
        return self.student(obs, goal)

    @torch.no_grad()
    def act(self, step: Step) -> np.ndarray:
        if self.spec.obs == "pixels":
            if step.pixels is None:
                raise ValueError("pixel student needs rendered steps (evaluate with render=True)")
            self._frames.append(step.pixels.transpose(2, 0, 1))
            obs = torch.from_numpy(np.concatenate(list(self._frames), 0)).unsqueeze(0).to(self.device)
        else:
            obs = torch.from_numpy(np.asarray(step.state, np.float32)).reshape(1, -1).to(self.device)
        action = self.net(obs, self._goal(step))[0].cpu().numpy()
        return np.clip(action, -1.0, 1.0).astype(np.float32)


def load_student_policy(path: str | Path, device: str = "cpu") -> StudentPolicy:
    student, goals, _header, _ = load_student(path, device)
    return StudentPolicy(student, goals, device)
