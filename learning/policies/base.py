"""What acts in a task: a `Policy` has `reset(step)`, `act(step) -> action`, and declares its `inputs`.

Experts, distilled students, multi-task RL policies, progressive nets and scripted controllers all share this
shape, so evaluation, demo recording, relabelling and the policy server never care which one they hold. A policy
owns whatever history it needs (e.g. its frame stack), which is why `reset` receives the episode's first step.
`inputs` says what it reads of a `Step` (the state, camera frames of a given size) and which tasks it knows, so a
caller checks a task or a frame against it (`PolicyInputs.check_task`, `check_frame`) instead of guessing from
the policy's class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from polytask.sim.task import Step, Task, TaskSpec

GOALS = ("none", "onehot", "sinusoid", "language", "image", "column")  # how a policy knows the task it acts in


@dataclass(frozen=True)
class PolicyInputs:
    """What a policy reads of a `Step`, what it answers, and the tasks it was made for."""

    action_dim: int
    state_dim: int = 0  # length of `Step.state` it reads; 0: it does not read the state
    image_size: int = 0  # side of the square uint8 frames (`Step.pixels`) it reads; 0: it reads no frames
    goal: str = "none"  # one of GOALS: a goal vector or image per task, or a progressive net's column per task
    tasks: tuple[str, ...] = ()  # the tasks it was trained on (or made for)
    unified: bool = False  # one policy for all of `tasks`, told apart by the task's goal: it knows no other task

    def __post_init__(self) -> None:
        if self.goal not in GOALS:
            raise ValueError(f"policy inputs: goal {self.goal!r} unknown; expected one of {GOALS}")

    @property
    def pixels(self) -> bool:
        return self.image_size > 0

    def check_task(self, spec: TaskSpec, where: str = "policy") -> None:
        """Refuse a task the policy cannot act in, naming why: one it was not taught, or other sizes."""
        if self.unified and spec.name not in self.tasks:
            raise ValueError(f"{where} is a unified policy of {sorted(self.tasks)}; it was not taught task "
                             f"{spec.name!r}")
        if self.action_dim != spec.action_dim:
            raise ValueError(f"{where} acts in {self.action_dim} dimensions; task {spec.name!r} needs "
                             f"{spec.action_dim}")
        if self.state_dim and self.state_dim != spec.state_dim:
            raise ValueError(f"{where} reads a {self.state_dim}-D state; task {spec.name!r} has {spec.state_dim}")

    def check_frame(self, frame: np.ndarray | None, where: str = "policy") -> None:
        """Refuse a frame the policy cannot take (missing, or not its size)."""
        if not self.pixels:
            return
        if frame is None:
            raise ValueError(f"{where} reads {self.image_size}x{self.image_size} camera frames; the step has none "
                             "(render the task)")
        if frame.shape[:2] != (self.image_size, self.image_size):
            raise ValueError(f"{frame.shape[1]}x{frame.shape[0]} frame, but {where} expects "
                             f"{self.image_size}x{self.image_size}")


@runtime_checkable
class Policy(Protocol):
    inputs: PolicyInputs

    def reset(self, step: Step) -> None:
        """Start of an episode: `step` is what Task.reset returned."""

    def act(self, step: Step) -> np.ndarray:
        """Action in [-1, 1]^action_dim for the current step (the mean, for stochastic policies)."""


class ScriptedPolicy:
    """The task's own scripted expert (Meta-World policies, Kitchen IK controllers, xArm reach/push)."""

    def __init__(self, task: Task, noise_std: float = 0.0, rng: np.random.Generator | None = None) -> None:
        self.task = task
        self.noise_std = noise_std
        self.rng = rng or np.random.default_rng()
        spec = task.spec
        self.inputs = PolicyInputs(action_dim=spec.action_dim, state_dim=spec.state_dim, tasks=(spec.name,))

    def reset(self, step: Step) -> None:
        pass

    def act(self, step: Step) -> np.ndarray:
        action = np.asarray(self.task.scripted_action(step), dtype=np.float32)
        if self.noise_std > 0:
            action = action + self.rng.normal(0.0, self.noise_std, size=action.shape).astype(np.float32)
        return np.clip(action, -1.0, 1.0)
