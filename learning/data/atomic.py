"""Atomic file writes, written once: temp file in the same folder, fsync, `os.replace`, fsync the folder.

A reader (or a process started after a crash) sees either the old file or the complete new one, never a
partial write; the temp file carries a `.tmp-` prefix so stores and globs never list it.

Two doors onto the one mechanism: `atomic_open` for code that writes through a file object, and `atomic_path`
for writers that insist on a file name (OpenCV's video and image encoders, matplotlib's `savefig`); the temp name
keeps the target's suffix, so such writers still pick the format from it. `write_text` and `write_json` are the
common one-liners; `update_json` is the read-modify-write of a JSON file that several processes share.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

TMP_PREFIX = ".tmp-"


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (best effort where the filesystem cannot open folders)."""
    try:
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _fsync_file(path: str) -> None:
    """fsync flushes the inode, whichever descriptor asks: a writer that closed its own handle is covered too."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """`with atomic_path(p) as tmp: writer(tmp)` publishes what the writer left at `tmp` as `p` atomically.

    The temp file exists (empty, mode 0644) when the block starts; on any error in the block it is removed and
    `p` is untouched. A writer that reports failure by a return value must raise inside the block.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=path.suffix, dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; our files are shared data
        os.close(fd)
        yield Path(tmp)
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", **open_kwargs: Any) -> Iterator[IO]:
    """`with atomic_open(p, "w", newline="") as fh: ...` writes `p` atomically; on any error nothing is left."""
    with atomic_path(path) as tmp, open(tmp, mode, **open_kwargs) as fh:
        yield fh


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Replace `path` with `text` atomically."""
    with atomic_open(path, "w") as fh:
        fh.write(text)
    return Path(path)


def write_json(path: str | os.PathLike, data: Any, **dump_kwargs: Any) -> Path:
    """Replace `path` with `json.dump(data, **dump_kwargs)` atomically."""
    with atomic_open(path, "w") as fh:
        json.dump(data, fh, **dump_kwargs)
    return Path(path)


def update_json(path: str | os.PathLike, mutate: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    """Read the JSON object at `path` ({} if absent), apply `mutate` to it, write it back atomically, all under an
    exclusive lock on `<path>.lock`: processes that each add their own entries keep each other's. Returns the
    updated object."""
    path = Path(path)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(path.read_text()) if path.exists() else {}
        mutate(data)
        write_json(path, data, indent=1, default=float)
    return data
