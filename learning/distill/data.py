"""Relabelled stores -> training batches, two ways that give the same samples' distribution.

- `MemorySampler`: every task's (state, expert action) rows as tensors in memory; a batch is one `randint`
  index. The fast path for state students (16 tasks x 30000 transitions x 39 floats is ~75 MB).
- `StoreSampler`: batches read from the episode files while training (a background thread loads random episodes
  of the task and cuts a batch from them), for stores larger than memory. bench/bench_distill.py compares the two.

Both sample the task first (uniformly, Algorithm 2) and then a batch of that task's rows.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from polytask.learning.data.episodes import Episode, EpisodeError, EpisodeStore, load_episode
from polytask.learning.distill.relabel import select_recent


@dataclass
class TaskData:
    """All relabelled rows of one task. Pixel rows index frames through `stack_idx` (frame stack in an episode)."""

    task: str
    task_id: int
    states: np.ndarray  # float32 (N, state_dim)
    actions: np.ndarray  # float32 (N, action_dim), the teacher's
    episodes: int
    frames: np.ndarray | None = None  # uint8 (N, H, W, 3) when pixels are kept
    stack_idx: np.ndarray | None = None  # int64 (N, frame_stack): rows of `frames` forming each observation
    goal_pixels: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.states.shape[0])


def stack_indices(length: int, offset: int, frame_stack: int) -> np.ndarray:
    """Rows of a frame array forming each of an episode's `length` observations: the last `frame_stack` frames,
    the first frame repeated at the start (an episode never sees its predecessor's frames)."""
    t = np.arange(length)[:, None] + np.arange(-frame_stack + 1, 1)[None, :]
    return offset + np.clip(t, 0, None)


def episode_rows(ep: Episode, where: str) -> tuple[np.ndarray, np.ndarray]:
    if ep.expert_action is None:
        raise EpisodeError(f"{where}: episode has no 'expert_action'; relabel the store first")
    return ep.state, ep.expert_action


def load_task(store_root: str | Path, task: str, cap: int = 30000, pixels: bool = False,
              frame_stack: int = 3, share: Any = None) -> TaskData:
    """Load the most recent `cap` relabelled transitions of `task` (every state of each episode is a row).

    `share` (a `ddp.DistContext` of a data-parallel rank): only this rank's share of those episodes is read."""
    store = EpisodeStore(store_root, create=False)
    if share is not None and share.active:
        found = _shared_episodes(store, task, cap, share)
    else:
        found = [(p, ep) for p, ep in store.iter_episodes(task)]
    if not found:
        raise ValueError(f"relabelled store {store_root}: no episodes of task {task!r}")
    keep = {p for p, _ in select_recent([(p, len(ep)) for p, ep in found], cap)}
    states, actions, frames, stacks = [], [], [], []
    goal = None
    offset = 0
    task_id = found[0][1].task_id
    for path, ep in found:
        if path not in keep:
            continue
        s, a = episode_rows(ep, str(path))
        states.append(s)
        actions.append(a)
        if ep.goal_pixels is not None:
            goal = ep.goal_pixels
        if pixels:
            if ep.pixels is None:
                raise EpisodeError(f"{path}: pixel student needs 'pixels' in the relabelled store")
            frames.append(ep.pixels)
            stacks.append(stack_indices(ep.pixels.shape[0], offset, frame_stack))
            offset += ep.pixels.shape[0]
    return TaskData(task=task, task_id=task_id, states=np.concatenate(states), actions=np.concatenate(actions),
                    episodes=len(keep), frames=np.concatenate(frames) if pixels else None,
                    stack_idx=np.concatenate(stacks) if pixels else None, goal_pixels=goal)


def _shared_episodes(store: EpisodeStore, task: str, cap: int, ctx: Any) -> list[tuple[Path, Episode]]:
    """A rank's share of the episodes `load_task` keeps, chosen from the file names (which carry the lengths)
    so that the other ranks' files are never read."""
    from polytask.learning.distill.ddp import share

    lengths = [(p, int(p.stem.rsplit("_", 1)[-1])) for p in store.paths()]
    mine = share([p for p, _ in select_recent(lengths, cap)], ctx, f"relabelled store {store.root}")
    found = [(p, load_episode(p)) for p in mine]
    wrong = [str(p) for p, ep in found if ep.task != task]
    if wrong:
        raise EpisodeError(f"relabelled store {store.root}: episodes of another task than {task!r}: {wrong[:3]}")
    return found


def normalizer(datasets: Sequence[TaskData]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of the states of all tasks, each task weighted equally (tasks are sampled uniformly)."""
    means = np.stack([d.states.mean(0) for d in datasets])
    sq = np.stack([(d.states.astype(np.float64) ** 2).mean(0) for d in datasets])
    mean = means.mean(0)
    var = np.maximum(sq.mean(0) - mean**2, 0.0)
    return mean.astype(np.float32), np.sqrt(var).astype(np.float32)


class MemorySampler:
    """Batches from tensors in memory: task index -> (obs, expert action)."""

    def __init__(self, datasets: Sequence[TaskData], device: str = "cpu") -> None:
        if not datasets:
            raise ValueError("MemorySampler needs at least one task's data")
        self.datasets = list(datasets)
        self.tasks = [d.task for d in self.datasets]
        self.device = device
        self._states = [torch.from_numpy(d.states).to(device) for d in self.datasets]
        self._actions = [torch.from_numpy(d.actions).to(device) for d in self.datasets]
        self._frames = [torch.from_numpy(d.frames).to(device) if d.frames is not None else None
                        for d in self.datasets]
        self._stack = [torch.from_numpy(d.stack_idx).to(device) if d.stack_idx is not None else None
                       for d in self.datasets]

    def sample(self, k: int, batch: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        n = self._states[k].shape[0]
        idx = torch.randint(n, (batch,), generator=generator, device="cpu").to(self.device)
        if self._frames[k] is not None:
            rows = self._stack[k][idx]  # (B, fs)
            frames = self._frames[k][rows]  # (B, fs, H, W, 3)
            b, fs, h, w, c = frames.shape
            obs = frames.permute(0, 1, 4, 2, 3).reshape(b, fs * c, h, w)
        else:
            obs = self._states[k][idx]
        return obs, self._actions[k][idx]

    def close(self) -> None:
        pass


def read_rows(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Only the two arrays training needs (states, teacher actions) from one relabelled episode file, checked.

    The hot path of the store feed: skips the pixels and metadata a full `load_episode` decodes, but still refuses
    a file whose arrays are missing, of the wrong dtype or shape, or not finite (the error names the file).
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            if "state" not in data.files or "expert_action" not in data.files:
                raise EpisodeError(f"{path}: needs 'state' and 'expert_action' (relabel the store first)")
            s, a = data["state"], data["expert_action"]
    except EpisodeError:
        raise
    except Exception as err:  # zipfile/zlib/OS errors of a damaged file
        raise EpisodeError(f"{path}: unreadable episode file ({type(err).__name__}: {err})") from err
    if s.dtype != np.float32 or a.dtype != np.float32 or s.ndim != 2 or a.ndim != 2 or len(s) != len(a):
        raise EpisodeError(f"{path}: state {s.dtype}{s.shape} / expert_action {a.dtype}{a.shape}, expected float32 "
                           "(T+1, state_dim) and (T+1, action_dim)")
    if not (np.isfinite(s).all() and np.isfinite(a).all()):
        raise EpisodeError(f"{path}: state or expert_action contains NaN or inf")
    return s, a


class StoreSampler:
    """Batches read from the episode files during training, with bounded memory (DrQ-v2's replay-loader idea).

    Per task, a cache of `cache_episodes` decompressed episodes lives in fixed slots; a background thread keeps a
    queue of ready batches, and before each batch it replaces `refresh` random slots with freshly read random
    episode files (decompress + validate). Rows are drawn uniformly from the cached episodes. Memory is
    `cache_episodes` episodes per task however large the stores are; over a run every file is read many times.
    """

    def __init__(self, store_roots: dict[str, str | Path], batch: int, cache_episodes: int = 64, refresh: int = 1,
                 prefetch: int = 4, seed: int = 0, cap: int = 30000) -> None:
        self.tasks = list(store_roots)
        self.batch = batch
        self.refresh = refresh
        self._paths: list[list[Path]] = []
        for task, root in store_roots.items():
            store = EpisodeStore(root, create=False)
            lengths = [(p, int(p.stem.rsplit("_", 1)[-1])) for p in store.paths()]
            chosen = [p for p, _ in select_recent(lengths, cap)] if lengths else []
            if not chosen:
                raise ValueError(f"relabelled store {root}: no episodes for task {task!r}")
            self._paths.append(chosen)
        self._rng = np.random.default_rng(seed)
        self._slots = [min(cache_episodes, len(p)) for p in self._paths]
        self._cache: list[dict[str, np.ndarray] | None] = [None] * len(self.tasks)
        self._queues = [queue.Queue(maxsize=prefetch) for _ in self.tasks]
        self._stop = threading.Event()
        self._want: queue.Queue[int] = queue.Queue()
        for k in range(len(self.tasks)):
            for _ in range(prefetch):
                self._want.put(k)
        self._thread = threading.Thread(target=self._worker, daemon=True)
        self._thread.start()

    def _read(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        return read_rows(self._paths[k][int(self._rng.integers(len(self._paths[k])))])

    def _put(self, cache: dict[str, np.ndarray], slot: int, s: np.ndarray, a: np.ndarray) -> None:
        width = cache["states"].shape[1]
        n = min(len(s), width)
        cache["states"][slot, :n] = s[:n]
        cache["actions"][slot, :n] = a[:n]
        cache["lengths"][slot] = n

    def _fill(self, k: int) -> dict[str, np.ndarray]:
        first = [self._read(k) for _ in range(self._slots[k])]
        width = max(len(s) for s, _ in first) + 32  # room for slightly longer episodes read later
        cache = {"states": np.zeros((self._slots[k], width, first[0][0].shape[1]), np.float32),
                 "actions": np.zeros((self._slots[k], width, first[0][1].shape[1]), np.float32),
                 "lengths": np.zeros(self._slots[k], np.int64)}
        for i, (s, a) in enumerate(first):
            self._put(cache, i, s, a)
        return cache

    def _make_batch(self, k: int) -> tuple[Tensor, Tensor]:
        cache = self._cache[k]
        if cache is None:
            cache = self._cache[k] = self._fill(k)
        else:
            for slot in self._rng.integers(self._slots[k], size=self.refresh):
                self._put(cache, int(slot), *self._read(k))
        slots = self._rng.integers(self._slots[k], size=self.batch)
        rows = (self._rng.random(self.batch) * cache["lengths"][slots]).astype(np.int64)
        return torch.from_numpy(cache["states"][slots, rows]), torch.from_numpy(cache["actions"][slots, rows])

    def _worker(self) -> None:
        while not self._stop.is_set():
            try:
                k = self._want.get(timeout=0.1)
            except queue.Empty:
                continue
            try:
                self._queues[k].put(self._make_batch(k))
            except Exception as err:  # surface the error to the trainer instead of hanging it
                self._queues[k].put(err)

    def sample(self, k: int, batch: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        if batch != self.batch:
            raise ValueError(f"StoreSampler was built for batch {self.batch}, asked for {batch}")
        item = self._queues[k].get()
        self._want.put(k)
        if isinstance(item, Exception):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
