"""Run a policy in a task for one episode and keep everything as an `Episode` (the store's unit).

Used by demo recording and exploratory data collection for distillation; the bookkeeping is `EpisodeRecorder`'s.
"""

from __future__ import annotations

import numpy as np

from polytask.learning.data.episodes import Episode
from polytask.learning.data.recorder import EpisodeRecorder
from polytask.learning.policies.base import Policy
from polytask.sim.task import Task


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
