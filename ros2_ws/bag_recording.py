"""Record a session's topics into a rosbag2 file (MCAP, metadata version 8) without rosbag2_py.

Why this way: `rosbag2_py`/`ros2 bag` are not installable from PyPI, but the `rosbags` package writes rosbag2
folders that ROS 2 tools (Humble and later: metadata version 8), RViz-by-replay and Foxglove open. Messages are
taken as the serialized CDR bytes rclpy receives (`raw=True`), so nothing is decoded or re-encoded.

Crash safety: the bag is written to `<path>.partial/` and renamed to `<path>/` only when closed, so a finished
bag is never confused with one cut short by a crash (the `.partial` folder holds what was written, for forensics).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from polytask.ros import topics

DEFAULT_KEYS = ("image", "action", "ee_pose", "joint_states", "robot_status", "policy_status", "policy_latency",
                "markers", "reward", "success", "recorder_status", "joy", "training_progress")


class BagError(RuntimeError):
    """The bag cannot be created or written; the message names the path."""


class BagRecorder:
    """Subscribes (raw) to topics of the table on `node` and appends every message to a rosbag2 MCAP bag."""

    def __init__(self, node: Any, path: str | os.PathLike, keys: tuple[str, ...] | list[str] = DEFAULT_KEYS,
                 storage: str = "mcap") -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.typesys import Stores, get_typestore

        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        if self.path.exists():
            raise BagError(f"bag {self.path} already exists; choose a new path (bags are never overwritten)")
        if self.partial.exists():
            raise BagError(f"{self.partial} exists (a bag cut short by a crash?); move it away first")
        plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
        if storage not in plugins:
            raise BagError(f"bag storage {storage!r} unknown; expected one of {sorted(plugins)}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        typestore = get_typestore(Stores.ROS2_JAZZY)
        self.writer = Writer(self.partial, version=8, storage_plugin=plugins[storage])
        self.writer.open()
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.closed = False
        self._subs = []
        for key in keys:
            t = topics.topic(key)
            conn = self.writer.add_connection(t.path, t.msg_type, typestore=typestore)
            self.counts[t.path] = 0
            qos = topics.qos_profile(t.qos, depth=None if t.qos == "latched" else 50)
            self._subs.append(node.create_subscription(
                topics.load_type(t.msg_type), t.name, lambda data, c=conn, p=t.path: self._write(c, p, data),
                qos, raw=True))

    def _write(self, connection: Any, path: str, data: bytes) -> None:
        with self._lock:
            if self.closed:
                return
            self.writer.write(connection, time.time_ns(), data)
            self.counts[path] += 1

    def close(self) -> Path:
        """Finish the bag (metadata written) and make it visible under its final name."""
        with self._lock:
            if self.closed:
                return self.path
            self.closed = True
            self.writer.close()
        os.replace(self.partial, self.path)
        return self.path
