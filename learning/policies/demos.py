"""Record demonstrations into an episode store: scripted experts (or any Policy), successful episodes kept.

The goal image of a task is the last frame of a successful demo (not of a random replay episode, as in the
authors' code), so every kept demo carries it as `goal_pixels`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from polytask.learning.data.episodes import EpisodeStore
from polytask.learning.policies.base import Policy, ScriptedPolicy
from polytask.learning.policies.rollout import rollout
from polytask.sim import registry

log = logging.getLogger(__name__)


@dataclass
class DemoReport:
    task: str
    attempted: int = 0
    kept: int = 0
    successes: int = 0
    has_success: bool = True  # False: the suite scores by return (DMC), so every episode is a demo
    scores: list[float] = field(default_factory=list)  # each attempted episode's suite score
    paths: list[Path] = field(default_factory=list)

    @property
    def mean_score(self) -> float:
        return sum(self.scores) / len(self.scores) if self.scores else 0.0

    @property
    def success_rate(self) -> float:
        return self.successes / self.attempted if self.attempted else 0.0


def record_demos(task_name: str, episodes: int, out: str | Path, *, seed: int = 0, render: bool = True,
                 quality: str = "fast", policy: Policy | None = None, source: str = "scripted",
                 keep_failed: bool = False, max_attempts: int | None = None, progress: bool = True,
                 task_options: dict | None = None) -> DemoReport:
    """Roll out until `episodes` successful demos are stored (or `max_attempts`, default 2N+5, is reached).

    Seeds run from `seed` upwards so a store can be regenerated exactly. Failed episodes are counted in the
    success rate and dropped unless `keep_failed`. Suites without a success rule (DMC, scored by return) keep
    every episode: their demos are simply the expert's rollouts, as in the paper.
    """
    if episodes < 1:
        raise ValueError(f"record-demos: --episodes must be >= 1, got {episodes}")
    store = EpisodeStore(out)
    store.clean_temp_files()
    task = registry.make(task_name, render=render, quality=quality, **(task_options or {}))
    policy = policy or ScriptedPolicy(task)
    report = DemoReport(task=task_name, has_success=task.spec.has_success)
    max_attempts = max_attempts or 2 * episodes + 5
    bar = tqdm(total=episodes, desc=f"demos {task_name}", unit="ep", disable=not progress, leave=False)
    try:
        while report.kept < episodes and report.attempted < max_attempts:
            episode = rollout(task, policy, seed=seed + report.attempted, source=source, keep_pixels=render)
            report.attempted += 1
            report.successes += int(episode.episode_success)
            report.scores.append(float(episode.score))
            if episode.episode_success or keep_failed or not report.has_success:
                if episode.pixels is not None and episode.episode_success:
                    episode.goal_pixels = episode.pixels[-1].copy()
                report.paths.append(store.append(episode))
                report.kept += 1
                bar.update(1)
            bar.set_postfix(success=f"{report.successes}/{report.attempted}")
    finally:
        bar.close()
        task.close()
    if report.kept < episodes:
        log.warning("%s: only %d of %d demos kept after %d attempts (success rate %.0f%%)", task_name,
                    report.kept, episodes, report.attempted, 100 * report.success_rate)
    return report
