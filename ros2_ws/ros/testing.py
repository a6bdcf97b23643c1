"""Test helpers: real nodes as separate processes over DDS on loopback, isolated by ROS domain.

- `allocate_domain(lo, hi)` hands out a ROS_DOMAIN_ID held by an flock for the life of the returned object, so
  two pytest runs on one machine (or two colleagues) never share a domain. Releasing it stops (with a warning) any
  node this process started on that id and left running: a leaked node would otherwise keep publishing into the
  next test that draws the same id (a leaked teleop recorder's action stream kept a later driver from going stale).
- `NodeProcess` starts `python -m polytask.nodes.<x> --ros-args ...` with its log in a file (no pipe to fill),
  stops it with SIGINT then SIGKILL, and tells whether it is alive.
- `Probe` is an rclpy node in the test process on its own Context/domain: publish, collect, wait for matches,
  call services. Discovery sometimes takes ~2.5 s, so every helper waits for a condition with a deadline; none
  assumes the first message arrives.
- `run_job_graph` starts a training graph (train_task, distill) through the launcher and follows its
  `training/progress` until the job node reports `done` or dies.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polytask.ros import topics
from polytask.ros.node_base import child_env, node_command, ros_args

LOCK_DIR = Path(tempfile.gettempdir()) / "polytask-ros-domains"
_STARTED: dict[int, list[NodeProcess]] = {}  # domain id -> nodes this process started there and has not stopped


class Domain:
    """A ROS domain id reserved by an flock until `release()` (or process exit)."""

    def __init__(self, domain_id: int, fh) -> None:
        self.id = domain_id
        self._fh = fh

    def release(self) -> None:
        started = _STARTED.pop(self.id, [])
        leaked = [n for n in started if n.alive]
        for node in started:
            node.stop()
        if leaked:
            warnings.warn(f"ROS domain {self.id} released with nodes still running (stopped now): "
                          f"{', '.join(n.node_module for n in leaked)}; stop every node you start", ResourceWarning,
                          stacklevel=2)
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def __enter__(self) -> Domain:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def allocate_domain(lo: int = 40, hi: int = 69) -> Domain:
    """Reserve a free domain id in [lo, hi] (inclusive); raises RuntimeError when all are taken."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    for domain_id in range(lo, hi + 1):
        fh = open(LOCK_DIR / f"{domain_id}.lock", "w")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            continue
        return Domain(domain_id, fh)
    raise RuntimeError(f"no free ROS domain id in [{lo}, {hi}] (locks under {LOCK_DIR})")


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM the node when the test process dies, so a crashed test leaves no orphan nodes."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class NodeProcess:
    """One node in its own process. Use as a context manager or call stop()."""

    def __init__(self, node_module: str, *, domain_id: int, params: dict[str, Any] | None = None,
                 params_files: tuple[str, ...] = (), name: str | None = None, remaps: dict[str, str] | None = None,
                 log_dir: str | os.PathLike | None = None, extra_env: dict[str, str] | None = None) -> None:
        self.node_module = node_module
        args = ros_args(params=params, params_files=params_files, name=name, remaps=remaps)
        self.argv = node_command(node_module, args)
        log_dir = Path(log_dir or tempfile.mkdtemp(prefix="polytask-node-"))
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{name or node_module.rsplit('.', 1)[-1]}-{os.getpid()}-{time.monotonic_ns()}.log"
        # The child writes the log through its own copy of the descriptor; this process never writes to it, so the
        # handle is closed at once and log_text() just reads the file (before, during and after stop()).
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                         env=child_env(domain_id, extra=extra_env), preexec_fn=_die_with_parent)
        self.domain_id = domain_id
        _STARTED.setdefault(domain_id, []).append(self)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def log_text(self) -> str:
        """Everything the node wrote so far (stdout and stderr); works after stop() too."""
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        if self.alive:
            self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGINT (clean shutdown), then SIGKILL after `timeout`; returns the exit code."""
        if self.alive:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._forget()
        return int(self.proc.returncode)

    def kill(self) -> None:
        if self.alive:
            self.proc.kill()
            self.proc.wait(5)

    def _forget(self) -> None:
        started = _STARTED.get(self.domain_id, [])
        if self in started:
            started.remove(self)

    def __enter__(self) -> NodeProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02,
               spin: Callable[[float], None] | None = None) -> bool:
    """Poll (or spin) until predicate() is true or timeout passes; return the predicate's last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return bool(predicate())
        if spin is not None:
            spin(interval)
        else:
            time.sleep(interval)


class Probe:
    """An rclpy node inside the test process, on its own Context and domain."""

    _count = 0

    def __init__(self, domain_id: int, name: str = "") -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node

        os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        Probe._count += 1
        self.node = Node(name or f"probe_{os.getpid()}_{Probe._count}", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.received: dict[str, list[tuple[float, Any]]] = {}
        self._subs: dict[str, Any] = {}
        self._pubs: dict[str, Any] = {}

    # spinning ------------------------------------------------------------------------------------------------------
    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                break
            self.executor.spin_once(timeout_sec=min(left, 0.05))

    def spin_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        return wait_until(predicate, timeout, interval=0.02, spin=self.spin)

    # topics ----------------------------------------------------------------------------------------------------------
    def subscribe(self, key: str, name: str | None = None) -> list[tuple[float, Any]]:
        """Record every message of a table topic (or of `name` with that topic's type/QoS) with its receipt time."""
        t = topics.topic(key)
        topic_name = name or t.name
        store = self.received.setdefault(topic_name, [])
        if topic_name not in self._subs:
            self._subs[topic_name] = self.node.create_subscription(
                topics.load_type(t.msg_type), topic_name, lambda m: store.append((time.monotonic(), m)),
                topics.qos_profile(t.qos, depth=100 if t.qos != "latched" else None))
        return store

    def publisher(self, key: str, name: str | None = None):
        t = topics.topic(key)
        topic_name = name or t.name
        if topic_name not in self._pubs:
            self._pubs[topic_name] = self.node.create_publisher(topics.load_type(t.msg_type), topic_name,
                                                                topics.qos_profile(t.qos))
        return self._pubs[topic_name]

    def wait_for_subscribers(self, key: str, count: int = 1, timeout: float = 10.0, name: str | None = None) -> bool:
        pub = self.publisher(key, name)
        return self.spin_until(lambda: pub.get_subscription_count() >= count, timeout)

    def wait_for_publishers(self, key: str, count: int = 1, timeout: float = 10.0, name: str | None = None) -> bool:
        topic_name = "/" + (name or topics.topic(key).name).lstrip("/")
        return self.spin_until(lambda: self.node.count_publishers(topic_name) >= count, timeout)

    def wait_for_subscriber_node(self, key: str, node: str, timeout: float = 10.0, name: str | None = None) -> bool:
        """Until discovery shows a node called `node` subscribed to the topic: a node's other topics flowing (its
        markers arriving, say) do not mean its subscriptions have matched yet on a busy machine."""
        topic_name = "/" + (name or topics.topic(key).name).lstrip("/")
        return self.spin_until(
            lambda: any(i.node_name == node for i in self.node.get_subscriptions_info_by_topic(topic_name)), timeout
        )

    def wait_for_messages(self, key: str, count: int = 1, timeout: float = 10.0, name: str | None = None,
                          where: Callable[[Any], bool] | None = None) -> list[Any]:
        store = self.subscribe(key, name)

        def matching() -> list[Any]:
            return [m for _, m in store if where is None or where(m)]

        self.spin_until(lambda: len(matching()) >= count, timeout)
        return matching()

    # services --------------------------------------------------------------------------------------------------------
    def call_trigger(self, key: str, timeout: float = 10.0, name: str | None = None):
        """Call a std_srvs/Trigger service of the table; returns the response or None on timeout."""
        s = topics.service(key)
        client = self.node.create_client(topics.load_type(s.srv_type), name or s.name)
        try:
            if not self.spin_until(client.service_is_ready, timeout):
                return None
            future = client.call_async(topics.load_type(s.srv_type).Request())
            self.spin_until(future.done, timeout)
            return future.result() if future.done() else None
        finally:
            self.node.destroy_client(client)

    def set_parameters(self, node_name: str, values: dict[str, Any], timeout: float = 10.0) -> list[Any] | None:
        """Set parameters of a running node; returns the SetParametersResult list (None on timeout)."""
        from rclpy.parameter import Parameter
        from rclpy.parameter_client import AsyncParameterClient

        client = AsyncParameterClient(self.node, node_name)
        if not self.spin_until(client.services_are_ready, timeout):
            return None
        future = client.set_parameters([Parameter(k, value=v) for k, v in values.items()])
        self.spin_until(future.done, timeout)
        return list(future.result().results) if future.done() else None

    def close(self) -> None:
        import rclpy

        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class JobRun:
    """What a training graph left behind: its last progress report, every report, the nodes still alive at the
    end, and the graph's log."""

    final: dict[str, Any]
    progress: list[dict[str, Any]]
    alive: list[str]
    log: str

    @property
    def done(self) -> bool:
        return bool(self.final.get("done", False))


def run_job_graph(nodes: list[Any], domain_id: int, job_node: str, log_path: Path, timeout: float = 240.0,
                  probe_name: str = "job_probe") -> JobRun:
    """Start `nodes` (polytask.launch.graphs.resolve) through the launcher on `domain_id` (one torch/OMP thread
    each), follow `training/progress` until `job_node` reports done or is no longer alive, then stop the graph."""
    import json

    from polytask.launcher import Launcher
    from polytask.ros.node_base import child_env

    with open(log_path, "w") as log:
        launcher = Launcher(nodes, env=child_env(domain_id, extra={"OMP_NUM_THREADS": "1"}), output=log)
        launcher.start()
        probe = Probe(domain_id, name=probe_name)
        try:
            progress = probe.subscribe("training_progress")

            def latest() -> dict[str, Any]:
                return json.loads(progress[-1][1].data) if progress else {}

            probe.spin_until(lambda: latest().get("done", False) or job_node not in launcher.alive(), timeout)
            reports = [json.loads(m.data) for _, m in progress]
            alive = launcher.alive()
        finally:
            probe.close()
            launcher.shutdown()
    return JobRun(final=reports[-1] if reports else {}, progress=reports, alive=list(alive),
                  log=Path(log_path).read_text())
