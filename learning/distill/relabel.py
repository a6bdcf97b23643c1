"""Relabelling: every stored state of a task's episode store gets its teacher's action (Eq. 2's target).

Why a separate store: the relabelled episodes (states + `expert_action` at each of the T+1 states) are the
distillation data, written once and reused by every student, every goal modality and every lifelong step. Each
relabelled episode keeps its source file name, so an interrupted relabelling resumes by skipping the files that
already exist (writes are atomic: a file is either complete or absent). Unlike the authors' script, EVERY episode
is read (theirs took every other one); the per-task cap (Table V: 30000 transitions) keeps the most recent
episodes, as a replay buffer of that size would.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from polytask.learning.data.episodes import Episode, EpisodeStore, load_episode, save_episode
from polytask.learning.policies.base import Policy
from polytask.sim.task import Goal, Step, Task

log = logging.getLogger(__name__)


class Teacher(Protocol):
    def relabel(self, episode: Episode) -> np.ndarray:
        """The teacher's action (its mean) at each of the episode's T+1 states: float32 (T+1, action_dim)."""


def _step_at(episode: Episode, t: int, goal: Goal) -> Step:
    pixels = episode.pixels[t] if episode.pixels is not None else None
    return Step(state=episode.state[t], pixels=pixels, reward=0.0 if t == 0 else float(episode.reward[t - 1]),
                success=False if t == 0 else bool(episode.success[t - 1]), terminal=False, truncated=False, goal=goal)


class ScriptedTeacher:
    """A suite's scripted expert: its action depends on the state alone, so any stored state can be relabelled."""

    def __init__(self, task: Task) -> None:
        self.task = task

    def relabel(self, episode: Episode) -> np.ndarray:
        goal = self.task.goal
        out = np.empty((episode.state.shape[0], self.task.spec.action_dim), np.float32)
        for t in range(episode.state.shape[0]):
            out[t] = self.task.scripted_action(_step_at(episode, t, goal))
        return out


class PolicyTeacher:
    """Any `Policy` (e.g. a trained expert checkpoint): the episode's observations are replayed in order through
    reset/act, so a policy that stacks frames sees exactly the history it would have seen online. A policy with
    `act_batch(states, pixels, goal)` is called once per episode instead."""

    def __init__(self, policy: Policy, goal: Goal) -> None:
        self.policy = policy
        self.goal = goal

    def relabel(self, episode: Episode) -> np.ndarray:
        batch = getattr(self.policy, "act_batch", None)
        if callable(batch):
            return np.asarray(batch(episode.state, episode.pixels, self.goal), np.float32)
        steps = [_step_at(episode, t, self.goal) for t in range(episode.state.shape[0])]
        self.policy.reset(steps[0])
        return np.stack([np.asarray(self.policy.act(s), np.float32) for s in steps])


@dataclass
class RelabelReport:
    task: str
    episodes: int  # relabelled episodes now in the output store (for this task)
    transitions: int
    written: int  # written by this call (the rest existed from an earlier, interrupted call)
    source_episodes: int  # episodes of the task in the source store
    seconds: float


def select_recent(paths_lengths: list[tuple[Path, int]], cap: int) -> list[tuple[Path, int]]:
    """The most recent episodes whose transitions add up to at most `cap` (at least one), in store order."""
    chosen: list[tuple[Path, int]] = []
    total = 0
    for path, length in reversed(paths_lengths):
        if chosen and total + length > cap:
            break
        chosen.append((path, length))
        total += length
    return list(reversed(chosen))


def relabel_store(source: EpisodeStore, out_root: str | Path, task: str, teacher: Teacher, cap: int = 30000,
                  goal_pixels: np.ndarray | None = None,
                  progress: Callable[[int, int], None] | None = None) -> RelabelReport:
    """Relabel the most recent `cap` transitions of `task` in `source` into `out_root` (resumable).

    Every source episode within the cap is relabelled (none skipped); `goal_pixels` (the last frame of a
    successful demo) is written into each relabelled episode for image-goal students.
    """
    if cap < 1:
        raise ValueError(f"relabel {task}: cap must be >= 1 transitions, got {cap}")
    start = time.perf_counter()
    out = EpisodeStore(out_root)
    out.clean_temp_files()
    candidates = []
    for path, ep in source.iter_episodes(task):
        candidates.append((path, len(ep)))
    if not candidates:
        raise ValueError(f"store {source.root}: no episodes of task {task!r} to relabel")
    chosen = select_recent(candidates, cap)
    written = 0
    transitions = 0
    for i, (path, length) in enumerate(chosen):
        target = out.root / path.name
        transitions += length
        if target.exists():
            continue
        ep = load_episode(path)
        expert = teacher.relabel(ep)
        if expert.shape != (ep.state.shape[0], ep.action.shape[1]):
            raise ValueError(f"teacher for {task} returned shape {expert.shape} for {path.name}, expected "
                             f"{(ep.state.shape[0], ep.action.shape[1])}")
        if not np.all(np.isfinite(expert)):
            raise ValueError(f"teacher for {task} returned NaN/inf actions for {path.name}")
        relabelled = Episode(task=ep.task, state=ep.state, action=ep.action, reward=ep.reward, success=ep.success,
                             pixels=ep.pixels, goal_pixels=goal_pixels if goal_pixels is not None else ep.goal_pixels,
                             expert_action=np.clip(expert, -1.0, 1.0).astype(np.float32), task_id=ep.task_id,
                             episode_success=ep.episode_success, score=ep.score, source="relabelled",
                             extra={**ep.extra, "relabelled_from": str(path.name), "source_kind": ep.source})
        save_episode(relabelled, target)
        written += 1
        if progress is not None:
            progress(i + 1, len(chosen))
    return RelabelReport(task=task, episodes=len(chosen), transitions=transitions, written=written,
                         source_episodes=len(candidates), seconds=time.perf_counter() - start)
