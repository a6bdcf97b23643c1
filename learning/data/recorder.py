"""One episode as it is played or demonstrated, stacked into an `Episode` (the store's unit) when it ends.

Every loop that produces episodes records through `EpisodeRecorder` — rollouts of a policy, the online-RL loop,
the teleop recorder — so the alignment of observations and actions (T actions between T+1 observations, the reset
observation first) and the stacking into the stored arrays are written once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from polytask.learning.data.episodes import Episode
from polytask.sim.task import Step, Task


class EpisodeRecorder:
    """The first step (what `Task.reset` returned), then each (action, step that followed it)."""

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

    def to_episode(self, task: str, task_id: int, *, source: str, episode_success: bool, score: float,
                   keep_pixels: bool = True, reward: np.ndarray | None = None, extra: dict[str, Any] | None = None,
                   goal_pixels: np.ndarray | None = None) -> Episode:
        """The recorded episode under a given verdict; `reward` replaces the recorded one (e.g. OT rewards)."""
        return Episode(
            task=task,
            task_id=task_id,
            state=np.stack(self.states).astype(np.float32),
            pixels=self.pixels() if keep_pixels else None,
            action=np.stack(self.actions).astype(np.float32),
            reward=self.env_reward if reward is None else np.asarray(reward, dtype=np.float32),
            success=np.asarray(self.successes, dtype=bool),
            episode_success=episode_success,
            score=float(score),
            source=source,
            extra=dict(extra or {}),
            goal_pixels=goal_pixels,
        )

    def episode(self, task: Task, *, source: str, keep_pixels: bool = True, reward: np.ndarray | None = None,
                extra: dict[str, Any] | None = None, goal_pixels: np.ndarray | None = None) -> Episode:
        """The finished episode of a task that was played: its verdict and score are the task's own."""
        return self.to_episode(task.spec.name, task.spec.task_id, source=source,
                               episode_success=task.episode_success(), score=task.score(), keep_pixels=keep_pixels,
                               reward=reward, extra=extra, goal_pixels=goal_pixels)
