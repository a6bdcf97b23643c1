"""teleop_record over DDS: a scripted joystick drives the simulated xArm through the recorder; episodes land in the
store with the commanded actions; redo and cancel discard; a silent joystick gives zero commands; the store is
resumed; bad images and Joy messages are reported while the recorder keeps running.

Run: MUJOCO_GL=egl .venv/bin/python -m pytest -q tests/test_ros_robot_teleop.py   (~40 s)"""

from __future__ import annotations

import array
import json
import time
from pathlib import Path

import numpy as np
import pytest
from sensor_msgs.msg import Image, Joy
from std_msgs.msg import Float32MultiArray

from polytask.learning.data.episodes import EpisodeStore, load_episode
from polytask.ros.image_conversion import numpy_to_image
from polytask.ros.testing import NodeProcess, Probe, allocate_domain

pytestmark = pytest.mark.ros
CONFIG = Path(__file__).resolve().parents[1] / "config"

START, SAVE, REDO, CANCEL, GRIP = 0, 1, 2, 3, 5
HALF = (0.5 - 0.1) / (1 - 0.1)  # a half-deflected stick past the default dead zone of 0.1 (rescaled)


def joy(axes: dict[int, float] | None = None, buttons: tuple[int, ...] = ()) -> Joy:
    a = [0.0] * 8
    for i, v in (axes or {}).items():
        a[i] = v
    b = [0] * 12
    for i in buttons:
        b[i] = 1
    return Joy(axes=a, buttons=b)


class Operator:
    """A scripted joystick: streams Joy at 20 Hz like a real joy driver; buttons are pressed for one message."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.pub = probe.publisher("joy")
        self.status = probe.subscribe("recorder_status")

    def last(self) -> dict:
        return json.loads(self.status[-1][1].data) if self.status else {}

    def stream(self, seconds: float, axes=None, hold=(), press=None, until=None) -> bool:
        end = time.monotonic() + seconds
        first = True
        while time.monotonic() < end:
            buttons = (*hold, press) if (first and press is not None) else hold
            if first and press is not None:  # a press is a rising edge: released first, then pressed
                self.pub.publish(joy(axes, hold))
                self.probe.spin(0.02)
            self.pub.publish(joy(axes, buttons))
            first = False
            self.probe.spin(0.05)
            if until is not None and self.last() and until(self.last()):
                return True
        return until is None

    def press(self, button: int, until, timeout: float = 10.0, axes=None, hold=()) -> dict:
        assert self.stream(timeout, axes=axes, hold=hold, press=button, until=until), self.last()
        return self.last()


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    domain = allocate_domain(40, 69)
    logs = tmp_path_factory.mktemp("logs")
    store = tmp_path_factory.mktemp("store") / "demos"
    driver = NodeProcess("xarm_driver_node", domain_id=domain.id, log_dir=logs, extra_env={"MUJOCO_GL": "egl"},
                         params_files=(str(CONFIG / "xarm_driver.yaml"),),
                         params={"backend": "sim", "rate_hz": 10.0, "command_timeout_s": 0.5})
    rec_params = {"store": str(store), "task": "xarm/reach", "rate_hz": 10.0, "joy_timeout_s": 0.5}
    recorder = NodeProcess("teleop_recorder_node", domain_id=domain.id, log_dir=logs, params=rec_params,
                           params_files=(str(CONFIG / "teleop_recorder.yaml"),))
    probe = Probe(domain.id)
    op = Operator(probe)
    graph = {"probe": probe, "op": op, "store": store, "driver": driver, "recorder": recorder, "domain": domain,
             "logs": logs, "rec_params": rec_params}
    try:
        assert probe.wait_for_messages("ee_pose", 2, timeout=30), driver.log_text()
        assert probe.spin_until(lambda: op.last().get("state") == "idle", 20), recorder.log_text()
        assert probe.wait_for_subscribers("joy", timeout=10)
        yield graph
    finally:
        probe.close()
        # Tests replace graph["recorder"] with restarted processes: stop the one running now (and the first), or it
        # outlives the domain lock and streams actions into the next test module that draws this domain id.
        for node in {id(n): n for n in (recorder, graph["recorder"], graph["driver"])}.values():
            node.stop()
        domain.release()


def _rows(actions: np.ndarray, row) -> int:
    return int(np.sum(np.all(np.isclose(actions, row, atol=1e-6), axis=1)))


def test_record_redo_cancel_silent_and_resume(graph):
    op, store = graph["op"], graph["store"]
    recording = lambda s: s["state"] == "recording"  # noqa: E731
    # episode 0: +x for 1 s, then save
    op.press(START, recording)
    op.stream(1.0, axes={1: 1.0})
    op.press(SAVE, lambda s: s["saved"] == 1)
    # episode 1: -y, redo, then +z with the gripper held, save
    op.press(START, recording)
    op.stream(0.6, axes={0: -0.5})
    op.press(REDO, lambda s: s["discarded"] == 1 and recording(s) and s["steps"] <= 1)
    op.stream(0.8, axes={4: 1.0}, hold=(GRIP,))
    op.press(SAVE, lambda s: s["saved"] == 2, axes={4: 1.0}, hold=(GRIP,))
    # a cancelled attempt
    op.press(START, recording)
    op.stream(0.5, axes={1: 1.0})
    status = op.press(CANCEL, lambda s: s["state"] == "idle")
    assert status["discarded"] == 2 and status["saved"] == 2
    # episode 2: -x, then the joystick goes silent, then save
    images_seen = graph["probe"].subscribe("image")
    actions_seen = graph["probe"].subscribe("action")
    op.press(START, recording)
    op.stream(0.6, axes={1: -1.0})
    silence_start = time.monotonic()
    graph["probe"].spin(1.2)
    op.press(SAVE, lambda s: s["saved"] == 3)

    paths = EpisodeStore(store).paths()
    assert [p.name[:6] for p in paths] == ["000000", "000001", "000002"]
    eps = [load_episode(p) for p in paths]  # validates schema, dtypes, shapes
    for ep in eps:
        assert ep.source == "teleop" and ep.task == "xarm/reach" and ep.pixels.shape[1:] == (84, 84, 3)
        assert ep.state.shape == (len(ep) + 1, 10)  # the task's state: [ee xyz, tool, achieved xyz, goal xyz]
        assert ep.extra["judged_by"] == "task"  # the simulated arm reports the task's success signal
    a0, a1, a2 = (ep.action for ep in eps)
    assert len(a0) >= 8 and _rows(a0, [1, 0, 0, -1]) >= len(a0) - 2, a0
    assert eps[0].state[-1, 0] - eps[0].state[0, 0] > 0.1  # the arm really moved +x
    assert _rows(a1, [0, -HALF, 0, -1]) == 0, "redo must discard the first attempt"
    assert _rows(a1, [0, 0, 1, 1]) >= len(a1) - 2, a1
    assert eps[1].state[-1, 2] - eps[1].state[0, 2] > 0.05
    assert _rows(a2, [-1, 0, 0, -1]) >= 4
    # the silent joystick's ticks are zero actions; only the last tick may already see the joystick back (the save
    # press is released-then-pressed, and a tick can fall between the two: no stick, gripper open)
    silent = a2[-6:-1] if list(a2[-1]) == [0.0, 0.0, 0.0, -1.0] else a2[-5:]
    assert len(silent) == 5 and np.all(silent == 0.0), f"silent joystick must give zero actions, got {a2[-6:]}"
    after = [m for t, m in actions_seen if t > silence_start + 0.8 and t < silence_start + 1.2]
    assert after and all(list(m.position) == [0.0, 0.0, 0.0, 0.0] for m in after)
    # each command carries the stamp of the camera frame current at its tick (the first few may answer a frame
    # published before the probe's image subscription matched), and the driver refused none as too old
    frame_stamps = {(m.header.stamp.sec, m.header.stamp.nanosec) for _, m in images_seen}
    by_frame = [(m.header.stamp.sec, m.header.stamp.nanosec) in frame_stamps for _, m in actions_seen]
    assert len(by_frame) >= 10 and sum(by_frame) >= len(by_frame) - 3, by_frame
    robot = graph["probe"].wait_for_messages("robot_status", 1, timeout=5)
    assert json.loads(robot[-1].data)["commands"]["refused"]["old_observation"] == 0

    # resume: a new recorder process continues the numbering
    graph["recorder"].stop()
    op.status.clear()
    recorder = NodeProcess("teleop_recorder_node", domain_id=graph["domain"].id, log_dir=graph["logs"],
                           params=graph["rec_params"])
    graph["recorder"] = recorder
    assert graph["probe"].spin_until(lambda: op.last().get("state") == "idle", 20), recorder.log_text()
    assert graph["probe"].wait_for_subscribers("joy", timeout=10)
    assert op.last()["episodes_in_store"] == 3
    op.press(START, recording)
    op.stream(0.5, axes={0: 1.0})
    op.press(SAVE, lambda s: s["saved"] == 1 and s["episodes_in_store"] == 4)
    paths = EpisodeStore(store).paths()
    assert paths[-1].name.startswith("000003") and len(paths) == 4
    assert _rows(load_episode(paths[-1]).action, [0, 1, 0, -1]) >= 3


def test_recorder_killed_mid_episode_the_arm_stops(graph):
    """SIGKILL of the recorder while it commands +x: the driver's watchdog stops the arm, nothing partial lands in
    the store, and a restarted recorder resumes the count."""
    op, probe, store = graph["op"], graph["probe"], graph["store"]
    before = EpisodeStore(store).paths()
    statuses = probe.subscribe("robot_status")
    op.press(START, lambda s: s["state"] == "recording")
    op.stream(0.5, axes={1: 1.0})
    graph["recorder"].kill()
    killed = time.monotonic()
    op.stream(0.7, axes={1: 1.0})  # the operator keeps pushing; nobody turns it into commands any more
    p0 = probe.subscribe("ee_pose")[-1][1].pose.position
    op.stream(1.0, axes={1: 1.0})
    p1 = probe.subscribe("ee_pose")[-1][1].pose.position
    assert abs(p1.x - p0.x) < 0.005, "the arm kept moving after the recorder died"
    assert any(t > killed and json.loads(m.data)["state"] == "stale" for t, m in statuses), \
        "the driver did not report the stale command stream"
    assert EpisodeStore(store).paths() == before and not list(store.glob(".tmp-*"))
    op.status.clear()
    graph["recorder"] = NodeProcess("teleop_recorder_node", domain_id=graph["domain"].id, log_dir=graph["logs"],
                                    params=graph["rec_params"])
    assert probe.spin_until(lambda: op.last().get("state") == "idle", 20), graph["recorder"].log_text()
    assert op.last()["episodes_in_store"] == len(before)


def _bad_images() -> list[Image]:
    good = numpy_to_image(np.zeros((84, 84, 3), np.uint8), "rgb8")
    out = []
    for change in ({"encoding": "yuv422"}, {"height": 85}, {"step": 100}, {"data": b""}, {"encoding": "16UC1"}):
        m = Image(height=good.height, width=good.width, encoding=good.encoding, step=good.step)
        m.data = good.data
        for k, v in change.items():
            setattr(m, k, array.array("B", v) if k == "data" else v)
        out.append(m)
    return out


def test_bad_images_and_joy_are_reported_and_recording_continues(tmp_path):
    with allocate_domain(40, 69) as domain, Probe(domain.id) as probe:
        store = tmp_path / "store"
        node = NodeProcess("teleop_recorder_node", domain_id=domain.id, log_dir=tmp_path,
                           params={"store": str(store), "reset_on_start": False, "rate_hz": 10.0})
        try:
            op = Operator(probe)
            assert probe.spin_until(lambda: op.last().get("state") == "idle", 20), node.log_text()
            assert probe.wait_for_subscribers("image", timeout=10) and probe.wait_for_subscribers("joy", timeout=10)
            img_pub = probe.publisher("image")
            # image subscriptions are best effort: a frame sent before the recorder's side of the match is complete
            # can be dropped, so a good frame is repeated until it is counted before the bad ones are sent
            good = numpy_to_image(np.zeros((84, 84, 3), np.uint8), "rgb8")
            for _ in range(60):
                img_pub.publish(good)
                if probe.spin_until(lambda: op.last().get("images", 0) >= 1, 0.5):
                    break
            assert op.last().get("images", 0) >= 1, op.last()
            for m in _bad_images():
                img_pub.publish(m)
                probe.spin(0.05)
            nan_joy = joy()
            nan_joy.axes = [float("nan")] * 8
            for m in (Joy(axes=[0.0], buttons=[1]), nan_joy):
                op.pub.publish(m)
                probe.spin(0.05)
            assert probe.spin_until(lambda: op.last().get("bad_images") == 5 and op.last().get("bad_joy") == 2, 10), \
                op.last()
            log = node.log_text()
            for needle in ("encoding 'yuv422' is not supported", "data has", "step 100 is shorter", "data is empty",
                           "without a scaling rule", "expected at least 5 finite axes"):
                assert needle in log, needle
            assert node.alive
            # the node still records from good inputs (bgr8 images are converted to rgb)
            state_pub = probe.publisher("task_state")
            for bad in ([0.0] * 5, [float("nan")] * 10):  # the wrong size for xarm/reach's state, and NaN
                state_pub.publish(Float32MultiArray(data=bad))
                probe.spin(0.05)
            assert probe.spin_until(lambda: op.last().get("bad_states") == 2, 10), op.last()
            assert "expected 10 finite values (the state of xarm/reach)" in node.log_text()
            frame = np.zeros((120, 160, 3), np.uint8)
            frame[..., 0] = 255  # blue in bgr8

            def feed():
                img_pub.publish(numpy_to_image(frame, "bgr8"))
                state_pub.publish(Float32MultiArray(data=[0.1 * i for i in range(10)]))

            op.press(START, lambda s: s["state"] == "recording")
            end = time.monotonic() + 0.8
            while time.monotonic() < end:
                feed()
                op.stream(0.1, axes={1: 0.5})
            feed()
            # a write error while saving: the store folder is replaced by a file (as root, chmod would not stop us)
            aside = tmp_path / "store-aside"
            store.rename(aside)
            store.write_text("not a folder")
            op.press(SAVE, lambda s: s["save_errors"] == 1)
            failed = op.last()
            assert "saving the episode failed" in failed["last_error"] and failed["state"] == "saving"
            store.unlink()
            aside.rename(store)
            for _ in range(5):  # the episode is over: more ticks must not add steps while the save is pending
                feed()
                op.stream(0.1, axes={1: 0.5})
            op.press(SAVE, lambda s: s["saved"] == 1)  # the kept episode is saved on the retry
            ep = load_episode(EpisodeStore(store).paths()[0])
            assert len(ep) == failed["steps"]
            assert ep.pixels.shape[1:] == (84, 84, 3) and np.all(ep.pixels[:, :, :, 2] == 255)
            assert np.all(ep.pixels[:, :, :, 0] == 0) and np.allclose(ep.state, np.arange(10) * 0.1)
            assert ep.episode_success and ep.extra["judged_by"] == "operator"  # no success signal: the operator's
            assert _rows(ep.action, [HALF, 0, 0, -1]) >= 3
        finally:
            node.stop()


def test_joystick_device_to_store(tmp_path):
    """The whole teleop chain with the default configs: js_event records on a FIFO -> joy_reader -> recorder ->
    simulated xArm; pushing the left stick forward records +x actions and moves the arm +x."""
    import os
    import struct

    fifo = str(tmp_path / "js0")
    os.mkfifo(fifo)
    ev = struct.Struct("<IhBB").pack
    store = tmp_path / "store"
    with allocate_domain(40, 69) as domain, Probe(domain.id) as probe:
        nodes = [
            NodeProcess("xarm_driver_node", domain_id=domain.id, log_dir=tmp_path, extra_env={"MUJOCO_GL": "egl"},
                        params_files=(str(CONFIG / "xarm_driver.yaml"),)),
            NodeProcess("joy_reader_node", domain_id=domain.id, log_dir=tmp_path,
                        params_files=(str(CONFIG / "joy_reader.yaml"),), params={"device": fifo}),
            NodeProcess("teleop_recorder_node", domain_id=domain.id, log_dir=tmp_path,
                        params_files=(str(CONFIG / "teleop_recorder.yaml"),), params={"store": str(store)}),
        ]
        try:
            op = Operator(probe)
            assert probe.wait_for_messages("ee_pose", 2, timeout=30), nodes[0].log_text()
            assert probe.spin_until(lambda: op.last().get("state") == "idle", 20), nodes[2].log_text()
            end = time.monotonic() + 10
            while True:  # the reader holds the FIFO open once it is up
                try:
                    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                    break
                except OSError:
                    assert time.monotonic() < end
                    probe.spin(0.05)
            init = b"".join(ev(0, 0, 0x82, i) for i in range(8)) + b"".join(ev(0, 0, 0x81, i) for i in range(12))
            os.write(fd, init + ev(0, 1, 1, 0))  # press A (start)
            assert probe.spin_until(lambda: op.last().get("state") == "recording", 15), op.last()
            os.write(fd, ev(0, 0, 1, 0) + ev(0, -32767, 2, 1))  # release A; left stick fully forward
            probe.spin(1.2)
            os.write(fd, ev(0, 0, 2, 1) + ev(0, 1, 1, 1))  # stick back to centre; press B (save)
            assert probe.spin_until(lambda: op.last().get("saved") == 1, 10), op.last()
            os.close(fd)
            ep = load_episode(EpisodeStore(store).paths()[0])
            assert _rows(ep.action, [1, 0, 0, -1]) >= 8, ep.action
            assert ep.state[-1, 0] - ep.state[0, 0] > 0.1
        finally:
            for node in nodes:
                node.stop()
