"""Run a policy in a task for one episode and keep everything as an `Episode` (the store's unit).

Used by demo recording, exploratory data collection for distillation and evaluation videos, so the
bookkeeping (observation/action alignment, success verdict, score) is written once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from polytask.learning.data.episodes import Episode
from polytask.learning.policies.base import Policy
from polytask.sim.task import Step, Task


class EpisodeRecorder:
    """One episode as it is played: the reset step, then each (action, step). Every loop that plays episodes
    (rollout, the expert trainer, the multi-task RL trainer) records through it, so observation/action alignment
    and the stacking into an `Episode` are written once."""

    def __init__(self, first: Step) -> None:
        self.states, self.frames = [first.state], [first.pixels]
        self.actions: list[np.ndarray] = []
        self.rewards: list[float] = []
        self.successes: list[bool] = []
        self.last = first

    def __len__(self) -> int:
        return len(self.actions)

    def add(self, action: np.ndarray, step: Step) -> None:
        self.states.append(step.state)
        self.frames.append(step.pixels)
        self.actions.append(action)
        self.rewards.append(step.reward)
        self.successes.append(step.success)
        self.last = step

    @property
    def env_reward(self) -> np.ndarray:
        return np.asarray(self.rewards, dtype=np.float32)

    def pixels(self) -> np.ndarray | None:
        return None if self.frames[0] is None else np.stack(self.frames).astype(np.uint8)

    def episode(self, task: Task, *, source: str, keep_pixels: bool = True, reward: np.ndarray | None = None,
                extra: dict[str, Any] | None = None, goal_pixels: np.ndarray | None = None) -> Episode:
        """The finished episode; `reward` replaces the environment's (e.g. OT rewards), the verdict is the task's."""
        return Episode(
            task=task.spec.name,
            task_id=task.spec.task_id,
            state=np.stack(self.states).astype(np.float32),
            pixels=self.pixels() if keep_pixels else None,
            action=np.stack(self.actions).astype(np.float32),
            reward=self.env_reward if reward is None else np.asarray(reward, dtype=np.float32),
            success=np.asarray(self.successes, dtype=bool),
            episode_success=task.episode_success(),
            score=float(task.score()),
            source=source,
            extra=dict(extra or {}),
            goal_pixels=goal_pixels,
        )


def rollout(task: Task, policy: Policy, seed: int | None = None, source: str = "scripted",
            keep_pixels: bool = True, max_steps: int | None = None) -> Episode:
    """One episode of `policy` in `task`; pixels are kept when the task renders them and `keep_pixels`."""
    step = task.reset(seed=seed)
    policy.reset(step)
    rec = EpisodeRecorder(step)
    limit = max_steps or task.spec.horizon
    while not step.done and len(rec) < limit:
        action = np.asarray(policy.act(step), dtype=np.float32)
        step = task.step(action)
        rec.add(np.clip(action, -1.0, 1.0), step)
    return rec.episode(task, source=source, keep_pixels=keep_pixels, extra={"seed": seed})
