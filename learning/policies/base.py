"""What acts in a task: anything with `reset(step)` and `act(step) -> action`.

Experts, distilled students, scripted controllers and baselines all share this shape, so evaluation, demo
recording, relabelling and the policy server never care which one they hold. A policy owns whatever history it
needs (e.g. its frame stack), which is why `reset` receives the episode's first step.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from polytask.sim.task import Step, Task


@runtime_checkable
class Policy(Protocol):
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

    def reset(self, step: Step) -> None:
        pass

    def act(self, step: Step) -> np.ndarray:
        action = np.asarray(self.task.scripted_action(step), dtype=np.float32)
        if self.noise_std > 0:
            action = action + self.rng.normal(0.0, self.noise_std, size=action.shape).astype(np.float32)
        return np.clip(action, -1.0, 1.0)
