"""Evaluation: run a policy for N episodes of a task and score them by the suite's own rule.

Why one function: experts, students and baselines are all `Policy`s, so the effective number of tasks (the
paper's headline figure: sum over tasks of the success rate, DMC return/1000) is computed the same way for all
of them. Episode i is reset with seed `seed + i`, so two policies evaluated with the same seed face the same
placements.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from polytask.learning.data.atomic import atomic_open
from polytask.learning.policies.base import Policy
from polytask.learning.reporting.media import write_video
from polytask.sim import registry
from polytask.sim.task import Task


@dataclass
class EvalResult:
    """Per-episode outcomes of one policy on one task."""

    task: str
    scores: list[float] = field(default_factory=list)  # Task.score() at the end of each episode
    returns: list[float] = field(default_factory=list)
    successes: list[bool] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    seed: int = 0

    @property
    def episodes(self) -> int:
        return len(self.scores)

    @property
    def mean_score(self) -> float:
        """The task's contribution to the effective number of tasks (success rate; DMC return/1000)."""
        return float(np.mean(self.scores)) if self.scores else 0.0

    @property
    def success_rate(self) -> float:
        return float(np.mean(self.successes)) if self.successes else 0.0

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns)) if self.returns else 0.0

    def row(self) -> dict[str, float | int | str]:
        return {"task": self.task, "episodes": self.episodes, "score": round(self.mean_score, 4),
                "success_rate": round(self.success_rate, 4), "return": round(self.mean_return, 3)}


def run_episode(policy: Policy, task: Task, seed: int | None, frames: list[np.ndarray] | None = None,
                max_steps: int | None = None) -> tuple[float, float, bool, int]:
    """One episode; returns (score, return, success, length). Appends rendered frames when `frames` is a list."""
    step = task.reset(seed=seed)
    policy.reset(step)
    if frames is not None and step.pixels is not None:
        frames.append(step.pixels)
    limit = max_steps if max_steps is not None else task.spec.horizon
    n = 0
    while not step.done and n < limit:
        step = task.step(policy.act(step))
        n += 1
        if frames is not None and step.pixels is not None:
            frames.append(step.pixels)
    return float(task.score()), float(task.episode_return), bool(task.episode_success()), n


def evaluate(policy: Policy, task_name: str, episodes: int = 10, seed: int = 0, render: bool = False,
             video_path: str | os.PathLike | None = None, task: Task | None = None,
             goal_image: np.ndarray | None = None) -> EvalResult:
    """Evaluate `policy` on `task_name` for `episodes` episodes (seeds seed..seed+episodes-1).

    `render` gives the policy pixels (pixel students need it); `video_path` writes an mp4 of all episodes and
    implies rendering. `task` reuses an already created task (it must be `task_name`); `goal_image` is set as the
    task's goal image so image-goal policies see the same goal as in training.
    """
    if episodes < 1:
        raise ValueError(f"evaluate: episodes must be >= 1, got {episodes}")
    render = render or video_path is not None
    own = task is None
    if task is None:
        task = registry.make(task_name, render=render)
    elif task.spec.name != task_name:
        raise ValueError(f"evaluate: task object is {task.spec.name!r}, expected {task_name!r}")
    if goal_image is not None:
        task.set_goal_image(goal_image)
    result = EvalResult(task=task_name, seed=seed)
    frames: list[np.ndarray] | None = [] if video_path is not None else None
    try:
        for i in range(episodes):
            score, ret, success, length = run_episode(policy, task, seed + i, frames)
            result.scores.append(score)
            result.returns.append(ret)
            result.successes.append(success)
            result.lengths.append(length)
    finally:
        if own:
            task.close()
    if video_path is not None and frames:
        write_video(frames, video_path)
    return result


def evaluate_many(policy_for: Callable[[str], Policy], tasks: Iterable[str], episodes: int = 10, seed: int = 0,
                  render: bool = False, progress: bool = False,
                  goal_images: Mapping[str, np.ndarray] | None = None) -> dict[str, EvalResult]:
    """Evaluate one policy per task name (`policy_for(name)`: a unified student returns itself for every task)."""
    tasks = list(tasks)
    iterator: Iterable[str] = tasks
    if progress:
        iterator = tqdm(tasks, desc="eval", unit="task")
    out = {}
    for name in iterator:
        gi = goal_images.get(name) if goal_images else None
        out[name] = evaluate(policy_for(name), name, episodes=episodes, seed=seed, render=render, goal_image=gi)
    return out


def effective_tasks(results: Mapping[str, EvalResult] | Iterable[EvalResult]) -> float:
    """Sum over tasks of the mean score: the paper's effective number of tasks."""
    values = results.values() if isinstance(results, Mapping) else results
    return float(sum(r.mean_score for r in values))


def write_csv(results: Mapping[str, EvalResult] | Iterable[EvalResult], path: str | os.PathLike,
              extra: Mapping[str, str | float | int] | None = None) -> Path:
    """Per-task table (task, episodes, score, success_rate, return [, extra columns]) written atomically."""
    values = list(results.values() if isinstance(results, Mapping) else results)
    rows = [{**r.row(), **(extra or {})} for r in values]
    path = Path(path)
    fields = list(rows[0]) if rows else ["task", "episodes", "score", "success_rate", "return"]
    with atomic_open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path
