"""Replay of whole episodes with n-step transitions, bounded in memory, persisted in the episode store format.

Why not DrQ-v2's loader: its DataLoader workers each keep their own copy of every episode they have read and
never free it, so RAM grows with the number of workers and the run length. Here one process holds the most
recent episodes up to `capacity` transitions (the oldest are evicted, as the paper's 150000-transition buffer
does); episodes also go to an `EpisodeStore` on disk (same format as demos), which is what a resumed run reloads
and what distillation relabels later. Sampling happens in the calling thread: no workers, no copies.

A transition starting at step t of an episode of T steps (0 <= t < T) uses n_eff = min(n, T - t) rewards:
    obs = stack(t), action = a_t, reward = Σ_{i<n_eff} γ^i r_{t+i}, next_obs = stack(t + n_eff),
    discount = γ^n_eff, or 0 if the episode terminated (not truncated) at t + n_eff = T.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from polytask.learning.data.checkpoint import CheckpointError
from polytask.learning.data.episodes import Episode, EpisodeStore, load_episode
from polytask.learning.data.frames import frames_chw, stack_window, stack_window_into


@dataclass
class _Stored:
    obs: np.ndarray  # (T+1, 3, H, W) uint8 (channels-first, see frames_chw) or (T+1, D) float32
    action: np.ndarray  # (T, A)
    reward: np.ndarray  # (T,)
    terminal: bool

    @property
    def length(self) -> int:
        return int(self.action.shape[0])


def episode_obs(episode: Episode, pixels: bool, where: str = "episode") -> np.ndarray:
    """What the agent observes of an episode, in the layout `stack_window` reads: (T+1, 3, H, W) or (T+1, D)."""
    if pixels:
        if episode.pixels is None:
            raise ValueError(f"{where}: task {episode.task} episode has no pixels, but the agent observes pixels")
        return frames_chw(episode.pixels)
    return episode.state


class ReplayBuffer:
    """In-memory episodes (newest kept up to `capacity` transitions) with uniform n-step transition sampling."""

    def __init__(self, capacity: int, pixels: bool, frame_stack: int = 1, n_step: int = 1, gamma: float = 0.99,
                 seed: int = 0, store: EpisodeStore | None = None) -> None:
        if capacity < 1 or n_step < 1 or frame_stack < 1:
            raise ValueError(f"replay: capacity {capacity}, n_step {n_step}, frame_stack {frame_stack} must be >= 1")
        self.capacity = capacity
        self.pixels = pixels
        self.frame_stack = frame_stack
        self.n_step = n_step
        self.gamma = gamma
        self.store = store
        self.rng = np.random.default_rng(seed)
        self._episodes: list[_Stored] = []
        self._transitions = 0
        self.episodes_added = 0

    # --- filling ---------------------------------------------------------------------------------------
    def add(self, episode: Episode, persist: bool = True) -> None:
        """Keep `episode` in memory (evicting the oldest beyond capacity) and append it to the store if any."""
        episode.validate("replay.add")
        if persist and self.store is not None:
            self.store.append(episode)
        self._keep(episode)
        self.episodes_added += 1

    def _keep(self, episode: Episode) -> None:
        obs = episode_obs(episode, self.pixels, f"replay episode of {episode.task}")
        self._episodes.append(_Stored(obs=obs, action=episode.action, reward=episode.reward,
                                      terminal=bool(episode.extra.get("terminal", False))))
        self._transitions += len(episode)
        while self._transitions > self.capacity and len(self._episodes) > 1:
            old = self._episodes.pop(0)
            self._transitions -= old.length

    def reload(self, max_episodes: int | None = None) -> int:
        """Refill memory from the store: the newest episodes that fit the capacity, oldest first (as before a
        restart, because eviction is FIFO). `max_episodes` limits to the first N episodes of the store (a resumed
        run ignores episodes written after its checkpoint)."""
        if self.store is None:
            raise ValueError("replay.reload: this buffer has no episode store")
        paths = self.store.paths()
        if max_episodes is not None:
            paths = paths[:max_episodes]
        self._episodes, self._transitions = [], 0
        chosen: list[Episode] = []
        total = 0
        for _path, ep in reversed(list(self._iter(paths))):
            chosen.append(ep)
            total += len(ep)
            if total >= self.capacity:
                break
        for ep in reversed(chosen):
            self._keep(ep)
        self.episodes_added = len(paths)
        return len(self._episodes)

    def _iter(self, paths):
        for p in paths:
            yield p, load_episode(p)

    # --- reading ---------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._transitions

    @property
    def num_episodes(self) -> int:
        return len(self._episodes)

    def nbytes(self) -> int:
        return sum(e.obs.nbytes + e.action.nbytes + e.reward.nbytes for e in self._episodes)

    def _pick(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """Uniform over stored transitions, returned grouped by episode (batch order carries no meaning for an
        update) so each episode's rows are one contiguous slice that frames are gathered into without a copy."""
        if not self._episodes:
            raise ValueError("replay is empty: nothing to sample")
        lengths = np.array([e.length for e in self._episodes])
        ends = np.cumsum(lengths)
        flat = np.sort(self.rng.integers(0, ends[-1], size=batch))
        ep = np.searchsorted(ends, flat, side="right")
        t = flat - (ends[ep] - lengths[ep])
        return ep, t

    def _groups(self, ep_idx: np.ndarray):
        bounds = np.flatnonzero(np.diff(ep_idx)) + 1
        starts = np.concatenate([[0], bounds])
        stops = np.concatenate([bounds, [len(ep_idx)]])
        for a, b in zip(starts, stops, strict=True):
            yield int(ep_idx[a]), slice(int(a), int(b))

    def sample(self, batch: int) -> dict[str, np.ndarray]:
        """n-step transitions: obs, action, reward (B,1), discount (B,1), next_obs."""
        ep_idx, t_idx = self._pick(batch)
        first = self._episodes[0]
        obs_shape = stack_window(first.obs, 0, self.frame_stack, self.pixels).shape
        obs = np.empty((batch, *obs_shape), dtype=np.uint8 if self.pixels else np.float32)
        next_obs = np.empty_like(obs)
        action = np.empty((batch, first.action.shape[1]), dtype=np.float32)
        reward = np.empty((batch, 1), dtype=np.float32)
        discount = np.empty((batch, 1), dtype=np.float32)
        n = self.n_step
        powers = self.gamma ** np.arange(n)
        for e, rows in self._groups(ep_idx):
            st = self._episodes[e]
            t = t_idx[rows]
            n_eff = np.minimum(n, st.length - t)
            steps = t[:, None] + np.arange(n)
            mask = np.arange(n)[None, :] < n_eff[:, None]
            r = st.reward[np.minimum(steps, st.length - 1)] * mask
            reward[rows, 0] = (r * powers).sum(1)
            disc = self.gamma ** n_eff
            if st.terminal:
                disc = np.where(t + n_eff >= st.length, 0.0, disc)
            discount[rows, 0] = disc
            stack_window_into(obs[rows], st.obs, t, self.frame_stack)
            stack_window_into(next_obs[rows], st.obs, t + n_eff, self.frame_stack)
            action[rows] = st.action[t]
        return {"obs": obs, "action": action, "reward": reward, "discount": discount, "next_obs": next_obs}

    def sample_bc(self, batch: int) -> dict[str, np.ndarray]:
        """(obs, action) pairs for behaviour cloning."""
        ep_idx, t_idx = self._pick(batch)
        first = self._episodes[0]
        obs_shape = stack_window(first.obs, 0, self.frame_stack, self.pixels).shape
        obs = np.empty((batch, *obs_shape), dtype=np.uint8 if self.pixels else np.float32)
        action = np.empty((batch, first.action.shape[1]), dtype=np.float32)
        for e, rows in self._groups(ep_idx):
            st = self._episodes[e]
            stack_window_into(obs[rows], st.obs, t_idx[rows], self.frame_stack)
            action[rows] = st.action[t_idx[rows]]
        return {"obs": obs, "action": action}

    # --- resume ----------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "episodes_added": self.episodes_added}

    def load_state(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]


class TaskReplay:
    """One replay buffer and one demo buffer per task of a run, and batches spread evenly over the tasks.

    A learner alone on its task (an expert) samples `replay[task]` and `demos[task]` directly; one shared by several
    tasks samples `sample` / `sample_bc`, whose rows come from every task with data (the batch split evenly, the
    remainder to random tasks) and carry their task's goal vector under key `goal`. The paper samples a task per
    rollout and a batch uniformly over all tasks; stratifying gives the same expectation with less variance.
    """

    def __init__(self, tasks: Sequence[str], goals: Mapping[str, np.ndarray | None],
                 make_buffer: Callable[[str, int], ReplayBuffer], make_demo_buffer: Callable[[str, int], ReplayBuffer],
                 seed: int) -> None:
        self.tasks = list(tasks)
        self.goals = {t: None if goals.get(t) is None else np.asarray(goals[t]) for t in self.tasks}
        self.replay = {t: make_buffer(t, i) for i, t in enumerate(self.tasks)}
        self.demos = {t: make_demo_buffer(t, i) for i, t in enumerate(self.tasks)}
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return sum(len(b) for b in self.replay.values())

    def _split(self, batch: int, tasks: list[str]) -> list[int]:
        counts = np.full(len(tasks), batch // len(tasks))
        counts[self.rng.permutation(len(tasks))[: batch % len(tasks)]] += 1  # the remainder to random tasks
        return [int(c) for c in counts]

    def _mix(self, buffers: Mapping[str, ReplayBuffer], batch: int, method: str) -> dict[str, np.ndarray]:
        tasks = [t for t in self.tasks if len(buffers[t]) > 0]
        if not tasks:
            raise ValueError("multi-task replay: every task's buffer is empty")
        parts, goals = [], []
        for t, k in zip(tasks, self._split(batch, tasks), strict=True):
            if k > 0:
                goal = self.goals[t]
                if goal is None:
                    raise ValueError(f"multi-task replay: task {t!r} has no goal to tell its rows apart")
                parts.append(getattr(buffers[t], method)(k))
                goals.append(np.repeat(goal[None], k, axis=0))
        out = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
        out["goal"] = np.concatenate(goals)
        return out

    def sample(self, batch: int) -> dict[str, np.ndarray]:
        """n-step transitions from every task with data, `goal` per row."""
        return self._mix(self.replay, batch, "sample")

    def sample_bc(self, batch: int) -> dict[str, np.ndarray]:
        """Demo (obs, action) rows from every task, `goal` per row (what Eq. 1's BC term and BC pretraining read)."""
        return self._mix(self.demos, batch, "sample_bc")

    def state(self) -> dict[str, Any]:
        """The samplers' state: the batch split's RNG and every task's replay and demo buffer (JSON)."""
        return {"rng": self.rng.bit_generator.state,
                "replay": {t: b.state() for t, b in self.replay.items()},
                "demos": {t: b.state() for t, b in self.demos.items()}}

    def load_state(self, state: Mapping[str, Any], where: str = "checkpoint") -> None:
        """Restore `state()` (the replay episodes themselves are reloaded from the stores beforehand)."""
        missing = [t for t in self.tasks if t not in state["replay"] or t not in state["demos"]]
        if missing:
            raise CheckpointError(f"{where}: no replay state for tasks {missing}")
        self.rng.bit_generator.state = state["rng"]
        for t in self.tasks:
            self.replay[t].load_state(state["replay"][t])
            self.demos[t].load_state(state["demos"][t])
