"""Exploratory stores for distillation: episodes of a noisy teacher, as an RL replay buffer would hold them.

Why noise: a replay buffer of an expert's training holds its exploration (noisy actions, failures, recoveries),
and relabelling those states with the clean teacher action is what teaches the student to recover from its own
mistakes. Each episode draws its noise scale from `noise_levels` (from nearly clean to very noisy), the store
holds the NOISY actions actually taken, and placements are drawn at every reset. Collection resumes: the store's
existing transitions count toward the target, and episode seeds continue after the last one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from polytask.learning.data.episodes import EpisodeStore
from polytask.learning.policies.base import ScriptedPolicy
from polytask.learning.policies.rollout import rollout
from polytask.sim import registry

DEFAULT_NOISE = (0.0, 0.1, 0.2, 0.3, 0.5, 0.8)


@dataclass
class CollectReport:
    task: str
    episodes: int
    transitions: int
    success_rate: float  # of the episodes written by this call (noisy teacher)
    seconds: float


def collect_noisy_store(task_name: str, out_root: str | Path, transitions: int, seed: int = 0,
                        noise_levels: Sequence[float] = DEFAULT_NOISE, render: bool = False, quality: str = "fast",
                        progress: Callable[[int, int], None] | None = None) -> CollectReport:
    """Fill `out_root` with episodes of the task's scripted expert under per-episode Gaussian action noise.

    `render` keeps the camera frames too (the stores of pixel students); the teacher still acts on the state."""
    if transitions < 1:
        raise ValueError(f"collect {task_name}: transitions must be >= 1, got {transitions}")
    if not noise_levels or any(n < 0 for n in noise_levels):
        raise ValueError(f"collect {task_name}: noise levels must be >= 0, got {list(noise_levels)}")
    start = time.perf_counter()
    store = EpisodeStore(out_root)
    store.clean_temp_files()
    have = sum(int(p.stem.rsplit("_", 1)[-1]) for p in store.paths())
    index = len(store.paths())
    task = registry.make(task_name, render=render, quality=quality)
    rng = np.random.default_rng([seed, task.spec.task_id, index])
    policy = ScriptedPolicy(task, rng=rng)
    successes = []
    try:
        while have < transitions:
            policy.noise_std = float(noise_levels[index % len(noise_levels)])
            ep = rollout(task, policy, seed=seed * 100_000 + index, source="replay", keep_pixels=render)
            ep.extra["noise_std"] = policy.noise_std
            store.append(ep)
            have += len(ep)
            index += 1
            successes.append(ep.episode_success)
            if progress is not None:
                progress(min(have, transitions), transitions)
    finally:
        task.close()
    return CollectReport(task=task_name, episodes=index, transitions=have,
                         success_rate=float(np.mean(successes)) if successes else float("nan"),
                         seconds=time.perf_counter() - start)


def collect_noisy_stores(tasks: Sequence[str], root: str | Path, transitions: int, seed: int = 0) -> list[Path]:
    """One noisy-expert store per task under `root` (`<root>/<suite>_<task>`), the set of stores a small
    distillation runs on; returns their paths in the order of `tasks`."""
    paths = []
    for task_name in tasks:
        path = Path(root) / task_name.replace("/", "_")
        collect_noisy_store(task_name, path, transitions, seed=seed)
        paths.append(path)
    return paths


def record_demo(task_name: str, out_root: str | Path, seed: int, render: bool = True,
                max_tries: int = 20) -> Path:
    """One clean, SUCCESSFUL scripted demo (its last frame is the goal image); tries further seeds on failure."""
    store = EpisodeStore(out_root)
    task = registry.make(task_name, render=render)
    try:
        for i in range(max_tries):
            ep = rollout(task, ScriptedPolicy(task), seed=seed + 1000 * i, source="scripted", keep_pixels=render)
            if ep.episode_success:
                if ep.pixels is not None:
                    ep.goal_pixels = ep.pixels[-1].copy()
                return store.append(ep)
    finally:
        task.close()
    raise RuntimeError(f"{task_name}: no successful scripted demo in {max_tries} tries from seed {seed}")
