"""The episode store: one compressed `.npz` file per finished episode, written atomically, validated on read.

Why this shape: demos, RL replay and relabelled distillation data are all episodes, so one format serves all.
A crash can lose at most the episode being written (it lives under a `.tmp-` name until `os.replace`), never a
finished one; a corrupt file is skipped with a warning naming it. Files load with `allow_pickle=False`: the
metadata is JSON text, so reading a store never executes anything.

Layout of one episode of T agent steps (observations include the reset one, so they have T+1 rows):
    state    float32 (T+1, state_dim)
    pixels   uint8   (T+1, H, W, 3)        optional (state-only stores omit it)
    action   float32 (T, action_dim)       in [-1, 1]
    reward   float32 (T,)
    success  bool    (T,)                  the suite's per-step success signal
    goal_pixels uint8 (H, W, 3)            optional
    expert_action float32 (T+1, action_dim) optional: the teacher's action at every state (relabelled stores)
    meta     JSON text: schema, task, suite, task_id, success (episode verdict), score, source, created, extra
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from polytask.learning.data.atomic import TMP_PREFIX, atomic_open

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SUFFIX = ".npz"
_NAME_RE = re.compile(r"^(\d{6})_([A-Za-z0-9_.-]+)_(\d+)\.npz$")
SOURCES = ("scripted", "teleop", "expert", "replay", "imported", "relabelled", "play")


class EpisodeError(ValueError):
    """An episode (in memory or on disk) does not match the schema; the message names file and key."""


class EpisodeWriteError(OSError):
    """Writing an episode failed (disk full, file too large, permissions); nothing partial is left visible."""


@dataclass
class Episode:
    """One finished episode. See the module docstring for shapes."""

    task: str
    state: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    success: np.ndarray
    pixels: np.ndarray | None = None
    goal_pixels: np.ndarray | None = None
    expert_action: np.ndarray | None = None
    task_id: int = 0
    episode_success: bool = False
    score: float = 0.0
    source: str = "scripted"
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.action.shape[0])

    @property
    def suite(self) -> str:
        return self.task.split("/", 1)[0]

    def validate(self, where: str = "episode") -> None:
        """Check dtypes and shapes; raise EpisodeError naming the key and what was expected."""
        t = self.action.shape[0] if self.action.ndim == 2 else -1
        _expect(where, "action", self.action, np.float32, (t, None), ndim=2)
        _expect(where, "state", self.state, np.float32, (t + 1, None), ndim=2)
        _expect(where, "reward", self.reward, np.float32, (t,), ndim=1)
        _expect(where, "success", self.success, np.bool_, (t,), ndim=1)
        if self.pixels is not None:
            _expect(where, "pixels", self.pixels, np.uint8, (t + 1, None, None, 3), ndim=4)
        if self.goal_pixels is not None:
            _expect(where, "goal_pixels", self.goal_pixels, np.uint8, (None, None, 3), ndim=3)
        if self.expert_action is not None:
            _expect(where, "expert_action", self.expert_action, np.float32, (t + 1, self.action.shape[1]), ndim=2)
        if t < 1:
            raise EpisodeError(f"{where}: episode has no steps")
        for key in ("state", "action", "reward"):
            if not np.all(np.isfinite(getattr(self, key))):
                raise EpisodeError(f"{where}: key {key!r} contains NaN or inf")
        if self.source not in SOURCES:
            raise EpisodeError(f"{where}: source {self.source!r} unknown; expected one of {SOURCES}")

    def meta(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "task": self.task,
            "task_id": int(self.task_id),
            "length": len(self),
            "success": bool(self.episode_success),
            "score": float(self.score),
            "source": self.source,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "keys": sorted(k for k in _ARRAY_KEYS if getattr(self, k) is not None),
            "extra": self.extra,
        }


_ARRAY_KEYS = ("state", "action", "reward", "success", "pixels", "goal_pixels", "expert_action")
_REQUIRED = ("state", "action", "reward", "success")


def _expect(where: str, key: str, arr: np.ndarray, dtype, shape: tuple, ndim: int) -> None:
    if not isinstance(arr, np.ndarray):
        raise EpisodeError(f"{where}: key {key!r} is {type(arr).__name__}, expected a numpy array")
    if arr.dtype != dtype:
        raise EpisodeError(f"{where}: key {key!r} has dtype {arr.dtype}, expected {np.dtype(dtype)}")
    if arr.ndim != ndim or any(e is not None and e != a for e, a in zip(shape, arr.shape, strict=False)):
        want = ", ".join("*" if e is None else str(e) for e in shape)
        raise EpisodeError(f"{where}: key {key!r} has shape {arr.shape}, expected ({want})")


def _slug(task: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", task)


def save_episode(episode: Episode, path: Path) -> None:
    """Write one episode atomically: temp file in the same folder, fsync, rename, fsync the folder."""
    episode.validate(str(path))
    arrays = {k: getattr(episode, k) for k in _ARRAY_KEYS if getattr(episode, k) is not None}
    arrays["meta"] = np.array(json.dumps(episode.meta()))
    try:
        with atomic_open(path, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    except OSError as err:
        raise EpisodeWriteError(f"{path}: could not write episode ({err.strerror or err}); "
                                "episodes already in the store are intact") from err


def load_episode(path: Path) -> Episode:
    """Read and validate one episode file; raise EpisodeError naming the file and the problem."""
    where = str(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            files = set(data.files)
            missing = [k for k in (*_REQUIRED, "meta") if k not in files]
            if missing:
                raise EpisodeError(f"{where}: missing keys {missing}")
            arrays = {k: data[k] for k in _ARRAY_KEYS if k in files}
            meta = json.loads(str(data["meta"]))
    except EpisodeError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError, json.JSONDecodeError, TypeError) as err:
        raise EpisodeError(f"{where}: unreadable episode file ({type(err).__name__}: {err})") from err
    except Exception as err:  # zlib.error and friends from truncated members
        raise EpisodeError(f"{where}: unreadable episode file ({type(err).__name__}: {err})") from err
    if not isinstance(meta, dict) or meta.get("schema") != SCHEMA_VERSION:
        raise EpisodeError(f"{where}: meta schema {meta.get('schema') if isinstance(meta, dict) else meta!r}, "
                           f"expected {SCHEMA_VERSION}")
    try:
        episode = Episode(
            task=str(meta["task"]), task_id=int(meta["task_id"]), episode_success=bool(meta["success"]),
            score=float(meta["score"]), source=str(meta["source"]), extra=dict(meta.get("extra", {})), **arrays)
    except (KeyError, TypeError, ValueError) as err:
        raise EpisodeError(f"{where}: bad meta ({err})") from err
    episode.validate(where)
    return episode


class EpisodeStore:
    """A folder of episode files. Appending continues the numbering after a crash or restart."""

    def __init__(self, root: str | os.PathLike, create: bool = True) -> None:
        self.root = Path(root)
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        elif not self.root.is_dir():
            raise FileNotFoundError(f"episode store {self.root} does not exist")
        self._next_index = self._scan_next_index()

    def _scan_next_index(self) -> int:
        best = -1
        for p in self.root.glob(f"*{SUFFIX}"):
            m = _NAME_RE.match(p.name)
            if m:
                best = max(best, int(m.group(1)))
        return best + 1

    def paths(self) -> list[Path]:
        """Finished episode files in order; temp files of an interrupted write are never listed."""
        found = [p for p in self.root.glob(f"*{SUFFIX}") if _NAME_RE.match(p.name)]
        return sorted(found, key=lambda p: int(_NAME_RE.match(p.name).group(1)))

    def __len__(self) -> int:
        return len(self.paths())

    def append(self, episode: Episode) -> Path:
        path = self.root / f"{self._next_index:06d}_{_slug(episode.task)}_{len(episode)}{SUFFIX}"
        save_episode(episode, path)
        self._next_index += 1
        return path

    def clean_temp_files(self) -> list[Path]:
        """Remove leftovers of writes that were interrupted (never visible as episodes)."""
        removed = []
        for p in self.root.glob(f"{TMP_PREFIX}*"):
            p.unlink(missing_ok=True)
            removed.append(p)
        return removed

    def iter_episodes(self, task: str | None = None) -> Iterator[tuple[Path, Episode]]:
        """Yield valid episodes; corrupt files are skipped with a warning naming them."""
        for path in self.paths():
            try:
                ep = load_episode(path)
            except EpisodeError as err:
                log.warning("skipping corrupt episode: %s", err)
                continue
            if task is None or ep.task == task:
                yield path, ep

    def episodes(self, task: str | None = None) -> list[Episode]:
        return [ep for _, ep in self.iter_episodes(task)]

    def tasks(self) -> list[str]:
        return sorted({ep.task for _, ep in self.iter_episodes()})
