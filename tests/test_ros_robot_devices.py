"""Camera and joystick nodes over DDS: the device disappears and comes back -> the node lives, reports and
reconnects; frames are cropped/resized/converted; js_event records become Joy messages.

Run: .venv/bin/python -m pytest -q tests/test_ros_robot_devices.py   (~20 s)"""

from __future__ import annotations

import json
import os
import time

import cv2
import numpy as np
import pytest

from polytask.nodes.joy_reader_node import JS_EVENT, decode_events
from polytask.ros.image_conversion import image_to_numpy
from polytask.ros.testing import NodeProcess, Probe, allocate_domain

pytestmark = pytest.mark.ros
AXIS, BUTTON, INIT = 0x02, 0x01, 0x80


def ev(value: int, etype: int, number: int, t: int = 0) -> bytes:
    return JS_EVENT.pack(t, value, etype, number)


def test_decode_events_keeps_partial_records():
    data = ev(5, AXIS, 1) + ev(1, BUTTON, 3)
    events, rest = decode_events(data + data[:3])
    assert events == [(0, 5, AXIS, 1), (0, 1, BUTTON, 3)] and rest == data[:3]
    events, rest = decode_events(rest + data[3:8])
    assert events == [(0, 5, AXIS, 1)] and rest == b""


def _last_status(store) -> dict:
    return json.loads(store[-1][1].data) if store else {}


def _open_writer(path: str, timeout: float = 10.0) -> int:
    """Open the FIFO for writing once the node has it open for reading (ENXIO until then)."""
    end = time.monotonic() + timeout
    while True:
        try:
            return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.02)


def test_joy_reader_fifo_disconnect_and_reconnect(tmp_path):
    fifo = str(tmp_path / "js0")
    os.mkfifo(fifo)
    with allocate_domain(40, 69) as domain, Probe(domain.id) as probe:
        node = NodeProcess("joy_reader_node", domain_id=domain.id, log_dir=tmp_path,
                           params={"device": fifo, "autorepeat_rate": 20.0, "reconnect_period_s": 0.2})
        try:
            joys = probe.subscribe("joy")
            status = probe.subscribe("joy_status")
            assert probe.wait_for_publishers("joy", timeout=15), node.log_text()
            fd = _open_writer(fifo)
            init = b"".join(ev(0, AXIS | INIT, i) for i in range(6)) + b"".join(ev(0, BUTTON | INIT, i)
                                                                              for i in range(12))
            os.write(fd, init + ev(-32767, AXIS, 1) + ev(1, BUTTON, 0))
            assert probe.spin_until(lambda: any(m.axes[1] == 1.0 and m.buttons[0] == 1 for _, m in joys), 10)
            msg = joys[-1][1]
            assert len(msg.axes) == 6 and len(msg.buttons) == 12
            os.write(fd, ev(16384, AXIS, 0)[:3])  # a partial record, completed later
            probe.spin(0.2)
            os.write(fd, ev(16384, AXIS, 0)[3:] + ev(1, 0x10, 200))  # + an event of an unknown type
            assert probe.spin_until(lambda: abs(joys[-1][1].axes[0] + 16384 / 32767) < 1e-6, 5)
            n = len(joys)
            probe.spin(0.5)  # no events: autorepeat keeps the state flowing
            assert len(joys) - n >= 4  # 10 expected at 20 Hz; margin for a loaded machine
            assert probe.spin_until(lambda: _last_status(status).get("bad_events") == 1, 3)
            # unplug
            os.close(fd)
            assert probe.spin_until(lambda: _last_status(status).get("connected") is False, 5), node.log_text()
            assert _last_status(status)["losses"] == 1
            probe.spin(0.2)
            n = len(joys)
            probe.spin(0.8)
            assert len(joys) == n, "a lost joystick must go silent, not repeat its last state"
            assert node.alive
            # plug back in
            fd = _open_writer(fifo)
            os.write(fd, init + ev(32767, AXIS, 4))
            assert probe.spin_until(lambda: joys[-1][1].axes[4] == -1.0 and joys[-1][1].axes[1] == 0.0, 10)
            assert probe.spin_until(lambda: _last_status(status).get("connected") is True
                                    and _last_status(status).get("reconnects") == 1, 5)
            os.close(fd)
        finally:
            node.stop()


def _write_frames(folder, n=6):
    folder.mkdir()
    for i in range(n):
        frame = np.zeros((48, 64, 3), np.uint8)
        frame[:24, :32] = (255, 0, 0)  # top-left blue (BGR)
        frame[24:, 32:] = (0, 0, 255)  # bottom-right red (BGR)
        cv2.imwrite(str(folder / f"f_{i:03d}.png"), frame)


def test_camera_crop_and_device_loss(tmp_path):
    folder = tmp_path / "cam"
    _write_frames(folder)
    with allocate_domain(40, 69) as domain, Probe(domain.id) as probe:
        node = NodeProcess("camera_node", domain_id=domain.id, log_dir=tmp_path,
                           params={"device": str(folder / "f_%03d.png"), "rate_hz": 20.0, "width": 16,
                                   "height": 12, "crop": [32, 24, 32, 24], "reconnect_period_s": 0.2})
        try:
            frames = probe.subscribe("image")
            status = probe.subscribe("camera_status")
            assert probe.spin_until(lambda: len(frames) >= 10, 15), node.log_text()  # loops past the 6 files
            img = image_to_numpy(frames[-1][1])
            assert frames[-1][1].encoding == "rgb8" and img.shape == (12, 16, 3)
            assert np.all(img == np.array([255, 0, 0], np.uint8)), "crop of the red quadrant, published as RGB"
            moved = tmp_path / "gone"
            os.rename(folder, moved)  # the device disappears
            assert probe.spin_until(lambda: _last_status(status).get("connected") is False, 5), node.log_text()
            assert "failed" in _last_status(status)["last_error"] or "cannot open" in _last_status(status)["last_error"]
            probe.spin(0.3)
            n = len(frames)
            probe.spin(1.0)
            assert len(frames) == n and node.alive
            os.rename(moved, folder)  # ... and comes back
            assert probe.spin_until(lambda: _last_status(status).get("connected") is True
                                    and _last_status(status).get("reconnects") == 1, 10), _last_status(status)
            assert probe.spin_until(lambda: len(frames) >= n + 5, 5)
        finally:
            node.stop()


def test_camera_without_device_keeps_running(tmp_path):
    with allocate_domain(40, 69) as domain, Probe(domain.id) as probe:
        node = NodeProcess("camera_node", domain_id=domain.id, log_dir=tmp_path,
                           params={"device": str(tmp_path / "none.mp4"), "reconnect_period_s": 0.2})
        try:
            status = probe.subscribe("camera_status")
            assert probe.spin_until(lambda: bool(status), 15), node.log_text()
            probe.spin(1.0)
            st = _last_status(status)
            assert st["connected"] is False and "cannot open camera device" in st["last_error"] and node.alive
            assert probe.subscribe("image") == []
        finally:
            node.stop()


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_nodes_stop_cleanly(tmp_path, sig):
    """Ctrl-C (SIGINT) and SIGTERM end every robot-side node with exit code 0 and no traceback; the driver
    publishes its final status on the way out."""
    import signal as _signal

    specs = {"camera_node": {"device": str(tmp_path / "none.mp4")}, "joy_reader_node": {"device": "/nonexistent"},
             "teleop_recorder_node": {"store": str(tmp_path / "store"), "reset_on_start": False},
             "xarm_driver_node": {"backend": "sim"}}
    with allocate_domain(40, 69) as domain, Probe(domain.id) as probe:
        status = probe.subscribe("robot_status")
        nodes = [NodeProcess(m, domain_id=domain.id, log_dir=tmp_path, params=p, extra_env={"MUJOCO_GL": "egl"})
                 for m, p in specs.items()]
        try:
            for key in ("camera_status", "joy_status", "recorder_status"):
                assert probe.wait_for_publishers(key, timeout=20)
            assert probe.spin_until(lambda: bool(status) and json.loads(status[-1][1].data)["state"] == "stale", 30)
            n = len(status)
            for node in nodes:
                node.signal(getattr(_signal, sig))
            for node in nodes:
                node.proc.wait(15)
                assert node.returncode == 0, node.log_text()
                assert "Traceback" not in node.log_text()
            assert probe.spin_until(lambda: json.loads(status[-1][1].data)["state"] == "shutdown", 2), \
                [(round(t, 2), json.loads(m.data)["state"]) for t, m in status[-4:]]
            assert len(status) > n  # the driver said it was going before it left
        finally:
            for node in nodes:
                node.stop()
