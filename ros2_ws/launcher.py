"""Start a launch graph without the `ros2` CLI: one process per node, `--ros-args` as launch_ros passes them.

Why a launcher of our own: `launch`/`launch_ros` cannot be installed from PyPI, but a graph is only processes
with command lines (`--params-file`, `-p`, `-r __node:=` all work from the wheels). This module starts
those processes, prefixes their output with the node name, restarts the ones marked `respawn`, and on Ctrl-C or
SIGTERM stops them in an orderly way: SIGINT (rclpy shuts down cleanly), then SIGTERM, then SIGKILL after
deadlines. A node that dies does not take the others down, as with `ros2 launch`.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TextIO

from polytask.launch.graphs import RESPAWN_DELAY_S, ResolvedNode
from polytask.launch.packages import external_executable

log = logging.getLogger(__name__)


def node_command(node: ResolvedNode, python: str = sys.executable) -> list[str] | None:
    """The command line of one node, or None for a node of another ROS package that is not installed here.

    Another package's executable is found as `ros2 run` finds it: <prefix>/lib/<package>/<executable> of the
    package's ament index prefix (then PATH).
    """
    if node.external:
        exe = external_executable(node.package, node.executable)
        if exe is None:
            return None
        return [exe, *node.arguments, *node.ros_args()]
    return [python, "-m", node.module, *node.arguments, *node.ros_args()]


@dataclass
class NodeProcess:
    node: ResolvedNode
    command: list[str]
    proc: subprocess.Popen | None = None
    starts: int = 0
    exit_codes: list[int] = field(default_factory=list)
    restart_at: float | None = None
    reader: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Launcher:
    """Runs the nodes of a resolved graph as child processes.

    `respawn` overrides the per-node flag for all nodes (None keeps the graph's choice); restarts per node are
    bounded by `max_restarts` (None: each node's `respawn_max_retries`, as launch_ros does) so a node that
    crashes at start-up does not loop forever.
    """

    def __init__(self, nodes: list[ResolvedNode], env: Mapping[str, str] | None = None,
                 python: str = sys.executable, respawn: bool | None = None, respawn_delay: float = RESPAWN_DELAY_S,
                 max_restarts: int | None = None, output: TextIO | None = None, quiet: bool = False) -> None:
        self.env = dict(os.environ if env is None else env)
        self.python = python
        self.respawn_delay = respawn_delay
        self.output = output or sys.stdout
        self.quiet = quiet
        self.procs: dict[str, NodeProcess] = {}
        self.skipped: list[str] = []
        self._stopping = False
        self._lock = threading.Lock()  # output lines
        self._poll_lock = threading.Lock()  # exits and restarts
        self._watcher: threading.Thread | None = None
        self._respawn = {n.name: (n.respawn if respawn is None else respawn) for n in nodes}
        self._max_restarts = {n.name: (n.respawn_max_retries if max_restarts is None else max_restarts)
                              for n in nodes}
        for n in nodes:
            if n.name in self.procs:
                raise ValueError(f"two nodes named {n.name!r} in one graph")
            cmd = node_command(n, python)
            if cmd is None:
                self.skipped.append(n.name)
                log.warning("not starting %s: ROS package '%s' is not installed here (not in the ament index; "
                            "install it to get %s)", n.name, n.package, n.executable)
                continue
            self.procs[n.name] = NodeProcess(n, cmd)

    # --- lifecycle ----------------------------------------------------------------------------------------------
    def start(self) -> Launcher:
        """Start every node, and a watcher thread that notices exits and performs restarts."""
        for name in self.procs:
            self._spawn(name)
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()
        return self

    def _watch(self) -> None:
        while not self._stopping:
            self.poll()
            time.sleep(0.1)

    def _spawn(self, name: str) -> None:
        np_ = self.procs[name]
        np_.proc = subprocess.Popen(np_.command, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        np_.starts += 1
        np_.restart_at = None
        np_.reader = threading.Thread(target=self._pump, args=(name, np_.proc), daemon=True)
        np_.reader.start()
        log.info("started %s (pid %d)%s", name, np_.proc.pid, "" if np_.starts == 1 else f", start #{np_.starts}")

    def _pump(self, name: str, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            if self.quiet:
                continue
            line = raw.decode(errors="replace").rstrip("\n")
            with self._lock:
                self.output.write(f"[{name}] {line}\n")
                self.output.flush()

    def poll(self) -> None:
        """Notice exits; schedule and perform restarts (the watcher thread calls this every 0.1 s)."""
        with self._poll_lock:
            self._poll()

    def _poll(self) -> None:
        now = time.monotonic()
        for name, np_ in self.procs.items():
            if np_.proc is None:
                continue
            code = np_.proc.poll()
            if code is None or self._stopping:
                continue
            if np_.restart_at is None:
                np_.exit_codes.append(code)
                restartable = self._respawn[name] and np_.starts <= self._max_restarts[name]
                log.warning("%s exited with code %d%s", name, code,
                            f"; restarting in {self.respawn_delay:.1f} s" if restartable else "")
                np_.restart_at = now + self.respawn_delay if restartable else float("inf")
            elif now >= np_.restart_at:
                self._spawn(name)

    def alive(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.running()]

    def finished(self) -> bool:
        """True when no node runs and none is waiting to restart."""
        return all(not p.running() and (p.restart_at is None or p.restart_at == float("inf"))
                   for p in self.procs.values() if p.proc is not None) and not self.alive()

    def run(self, duration: float | None = None, on_tick: Callable[[], None] | None = None) -> int:
        """Block until Ctrl-C/SIGTERM, `duration` seconds, or every node has ended; then shut down.

        Returns 0 when stopped on request or after `duration`, 1 when the graph ended by itself with a failure.
        """
        stop = threading.Event()

        def _handler(signum, _frame):
            log.info("received %s, stopping the graph", signal.Signals(signum).name)
            stop.set()

        old = {s: signal.signal(s, _handler) for s in (signal.SIGINT, signal.SIGTERM)}
        deadline = None if duration is None else time.monotonic() + duration
        try:
            while not stop.is_set():
                if on_tick:
                    on_tick()
                if self.finished():
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
                stop.wait(0.1)
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            codes = self.shutdown()
        ended_by_itself = not stop.is_set() and (deadline is None or time.monotonic() < deadline)
        return 1 if ended_by_itself and any(c not in (0, None) for c in codes.values()) else 0

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to one node (fault injection; with respawn the launcher brings it back)."""
        proc = self.procs[name].proc
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, sig)

    def shutdown(self, sigint_timeout: float = 5.0, sigterm_timeout: float = 2.0) -> dict[str, int | None]:
        """SIGINT every node, then SIGTERM, then SIGKILL the stragglers. Returns each node's exit code."""
        self._stopping = True
        with self._poll_lock:  # no restart can begin after this point
            pass
        for stage, sig, timeout in (("SIGINT", signal.SIGINT, sigint_timeout),
                                    ("SIGTERM", signal.SIGTERM, sigterm_timeout),
                                    ("SIGKILL", signal.SIGKILL, 5.0)):
            running = [p for p in self.procs.values() if p.running()]
            if not running:
                break
            if stage != "SIGINT":
                log.warning("%s still running; sending %s", ", ".join(p.node.name for p in running), stage)
            for p in running:
                try:
                    os.killpg(p.proc.pid, sig)
                except ProcessLookupError:
                    pass
            end = time.monotonic() + timeout
            for p in running:
                try:
                    p.proc.wait(timeout=max(0.0, end - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        for p in self.procs.values():
            if p.reader is not None:
                p.reader.join(timeout=1.0)
        return {n: (p.proc.returncode if p.proc else None) for n, p in self.procs.items()}

    def __enter__(self) -> Launcher:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.shutdown()
