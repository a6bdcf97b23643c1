"""The teleop_record graph as `polytask launch teleop_record` starts it, driven by a scripted joystick.

The joystick is a FIFO fed with Linux `js_event` records (what /dev/input/js0 delivers), read by the graph's own
joy_reader node; the arm is the simulated xArm driver; the recorder writes the store. Holding the stick and
pressing start, then save, must land one valid teleop episode whose actions are the commanded direction and
whose arm (the driver's end-effector pose) moved — proof that the graph's nodes, parameters and rates fit together.
"""

from __future__ import annotations

import errno
import json
import os
import struct
import time

import numpy as np
import pytest

pytestmark = pytest.mark.ros

JS = struct.Struct("<IhBB")  # time ms, value, type (1 button, 2 axis), number


def _open_writer(path: str, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as err:
            if err.errno != errno.ENXIO or time.monotonic() > deadline:  # ENXIO: no reader yet
                raise
            time.sleep(0.1)


def test_teleop_record_graph_records_what_the_joystick_commands(tmp_path):
    from polytask.launch.graphs import resolve
    from polytask.launcher import Launcher
    from polytask.learning.data.episodes import EpisodeStore
    from polytask.ros.node_base import child_env
    from polytask.ros.testing import Probe, allocate_domain

    fifo = tmp_path / "js0"
    os.mkfifo(fifo)
    store = tmp_path / "demos"
    nodes = resolve("teleop_record", ["robot:=sim", "joystick:=reader", f"joy_device:={fifo}", f"store:={store}",
                                      "task:=xarm/reach", "rate:=10"])
    assert [n.name for n in nodes if not n.external] == ["xarm_driver", "joy_reader", "teleop_recorder", "monitor"]
    with allocate_domain(70, 99) as domain, open(tmp_path / "graph.log", "w") as log:
        launcher = Launcher(nodes, env=child_env(domain.id), output=log)
        launcher.start()
        probe = Probe(domain.id, name="teleop_probe")
        fd = -1
        try:
            status = probe.subscribe("recorder_status")
            joy = probe.subscribe("joy")
            poses = probe.subscribe("ee_pose")
            fd = _open_writer(str(fifo))
            t0 = int(time.monotonic() * 1000) & 0xFFFFFFFF

            def send(kind: int, number: int, value: int) -> None:
                os.write(fd, JS.pack(t0, value, kind, number))

            def latest() -> dict:
                return json.loads(status[-1][1].data) if status else {}

            for i in range(8):  # the initial-state burst a real pad sends: 8 axes, 8 buttons at rest
                send(0x82, i, 0)
                send(0x81, i, 0)
            send(2, 1, -32767)  # left stick pushed fully up; held for the whole episode
            robot = probe.subscribe("robot_status")

            def arm_ready() -> bool:  # the operator waits for the arm before pressing start
                return bool(robot) and json.loads(robot[-1][1].data).get("state") not in ("connecting", None)

            assert probe.spin_until(lambda: len(joy) >= 3 and latest().get("state") == "idle" and arm_ready(), 60), \
                (tmp_path / "graph.log").read_text()[-3000:]
            def press(button: int) -> None:  # held 0.3 s, as a thumb does (the reader publishes states, not edges)
                send(1, button, 1)
                probe.spin(0.3)
                send(1, button, 0)

            press(0)  # start
            assert probe.spin_until(lambda: latest().get("state") == "recording", 20), \
                (latest(), (tmp_path / "graph.log").read_text()[-3000:])
            probe.spin_until(lambda: (latest().get("steps") or 0) >= 15, 20)
            press(1)  # save
            saved = probe.spin_until(lambda: len(EpisodeStore(store).paths()) >= 1, 20)
            final = latest()
            xyz = np.array([[m.pose.position.x, m.pose.position.y, m.pose.position.z] for _, m in poses])
        finally:
            if fd >= 0:
                os.close(fd)
            probe.close()
            launcher.shutdown()
    assert saved, f"no episode saved; recorder status {final}; log:\n{(tmp_path / 'graph.log').read_text()[-3000:]}"
    (ep,) = EpisodeStore(store).episodes()
    assert ep.source == "teleop" and ep.task == "xarm/reach" and len(ep) >= 10
    moving = ep.action[:, :3]
    axis = int(np.argmax(np.abs(moving).mean(axis=0)))  # the commanded axis (the recorder's mapping decides which)
    assert np.all(np.abs(moving[:, axis]) > 0.9), "the held stick did not command full speed on one axis"
    assert np.all(np.sign(moving[:, axis]) == np.sign(moving[0, axis]))
    others = np.delete(moving, axis, axis=1)
    assert np.all(np.abs(others) < 0.1), "the other axes should be idle"
    assert ep.state.shape[0] == len(ep) + 1
    assert np.ptp(xyz, axis=0).max() > 0.05, "the simulated arm did not move with the stick"
