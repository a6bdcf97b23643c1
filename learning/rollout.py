"""Run a policy in a task for one episode and keep everything as an `Episode` (the store's unit).

Used by demo recording, exploratory data collection for distillation and evaluation videos, so the
bookkeeping (observation/action alignment, success verdict, score) is written once.
"""

from __future__ import annotations

import numpy as np

from polytask.learning.episodes import Episode
from polytask.learning.policy import Policy
from polytask.sim.task import Task


def rollout(task: Task, policy: Policy, seed: int | None = None, source: str = "scripted",
            keep_pixels: bool = True, max_steps: int | None = None) -> Episode:
    """One episode of `policy` in `task`; pixels are kept when the task renders them and `keep_pixels`."""
    step = task.reset(seed=seed)
    policy.reset(step)
    states, frames, actions, rewards, successes = [step.state], [step.pixels], [], [], []
    limit = max_steps or task.spec.horizon
    while not step.done and len(actions) < limit:
        action = np.asarray(policy.act(step), dtype=np.float32)
        step = task.step(action)
        states.append(step.state)
        frames.append(step.pixels)
        actions.append(np.clip(action, -1.0, 1.0))
        rewards.append(step.reward)
        successes.append(step.success)
    pixels = None
    if keep_pixels and frames[0] is not None:
        pixels = np.stack(frames).astype(np.uint8)
    return Episode(
        task=task.spec.name,
        task_id=task.spec.task_id,
        state=np.stack(states).astype(np.float32),
        pixels=pixels,
        action=np.stack(actions).astype(np.float32),
        reward=np.asarray(rewards, dtype=np.float32),
        success=np.asarray(successes, dtype=bool),
        episode_success=task.episode_success(),
        score=float(task.score()),
        source=source,
        extra={"seed": seed},
    )
