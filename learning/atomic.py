"""Atomic file writes, written once: temp file in the same folder, fsync, `os.replace`, fsync the folder.

A reader (or a process started after a crash) sees either the old file or the complete new one, never a
partial write; the temp file carries a `.tmp-` prefix so stores and globs never list it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
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


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", **open_kwargs: Any) -> Iterator[IO]:
    """`with atomic_open(p, "w", newline="") as fh: ...` writes `p` atomically; on any error nothing is left."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=path.suffix, dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; our files are shared data
        with os.fdopen(fd, mode, **open_kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
