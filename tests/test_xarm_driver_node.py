"""The xArm driver node as its own process over DDS: commands move the simulated arm, bad and stale commands do
not (nor commands answering a frame older than the driver's limit, or with a zero or future stamp), faults stop it
until reset, e-stop works, and the real backend against a silent controller never publishes a pose.
Run: MUJOCO_GL=egl .venv/bin/python -m pytest -q tests/test_xarm_driver_node.py"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from xarm_fakes import silent_controller

from polytask.ros.action_msg import action_message
from polytask.ros.image_conversion import image_to_numpy
from polytask.ros.testing import NodeProcess, Probe, allocate_domain

pytestmark = pytest.mark.ros
CONFIG = Path(__file__).resolve().parents[1] / "config"


def _status(probe: Probe) -> dict:
    store = probe.subscribe("robot_status")
    return json.loads(store[-1][1].data) if store else {}


def _wait_status(probe: Probe, pred, timeout=10.0) -> dict:
    probe.subscribe("robot_status")
    probe.spin_until(lambda: bool(_status(probe)) and pred(_status(probe)), timeout)
    return _status(probe)


def _ee(probe: Probe) -> np.ndarray:
    p = probe.subscribe("ee_pose")[-1][1].pose.position
    return np.array([p.x, p.y, p.z])


def _command(probe: Probe, values, age_s: float = 0.0):
    """An action answering a frame taken `age_s` ago on the probe's clock (the same system clock as the driver's)."""
    stamp = probe.node.get_clock().now().nanoseconds - int(age_s * 1e9)
    return action_message(values, Time(sec=stamp // 10**9, nanosec=stamp % 10**9))


def _send(probe: Probe, values, seconds: float, rate: float = 20.0, age_s: float = 0.0) -> None:
    pub = probe.publisher("action")
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pub.publish(_command(probe, values, age_s))
        probe.spin(1.0 / rate)


@pytest.fixture(scope="module")
def sim_driver(tmp_path_factory):
    domain = allocate_domain(40, 69)
    node = NodeProcess("xarm_driver_node", domain_id=domain.id, log_dir=tmp_path_factory.mktemp("logs"),
                       params_files=(str(CONFIG / "xarm_driver.yaml"),),
                       params={"backend": "sim", "rate_hz": 10.0, "command_timeout_s": 0.4},
                       extra_env={"MUJOCO_GL": "egl"})
    probe = Probe(domain.id)
    try:
        probe.subscribe("ee_pose")
        probe.subscribe("image")
        assert probe.wait_for_messages("ee_pose", 3, timeout=30), node.log_text()
        assert probe.wait_for_subscribers("action", timeout=10)
        yield node, probe
    finally:
        probe.close()
        node.stop()
        domain.release()


def test_commands_move_and_watchdog_stops(sim_driver):
    _node, probe = sim_driver
    start = _ee(probe)
    _send(probe, [1.0, 0.0, 0.0, -1.0], 1.0)
    moved = _ee(probe)
    assert moved[0] - start[0] > 0.08, (start, moved)  # ~10 ticks x 2.5 cm, minus tracking lag
    probe.spin(0.4 + 0.3)  # silence longer than command_timeout_s
    held = _ee(probe)
    probe.spin(1.0)
    assert np.linalg.norm(_ee(probe) - held) < 0.005, "arm kept moving after its commands went stale"
    status = _wait_status(probe, lambda s: s["state"] == "stale")
    assert status["commands"]["stale_events"] >= 1
    frames = probe.subscribe("image")
    assert frames and image_to_numpy(frames[-1][1]).shape == (84, 84, 3)


def test_bad_commands_refused_counted_arm_holds(sim_driver):
    node, probe = sim_driver
    probe.spin(0.6)
    before_status = _status(probe)["commands"]["refused"]
    before = _ee(probe)
    bad = [[math.nan, 0.0, 0.0, 0.0], [math.inf, 0.0, 0.0, 0.0], [0.5, 0.5], [0.5] * 5, [3.0, 0.0, 0.0, 0.0],
           [0.0, -1.5, 0.0, 0.0]]
    pub = probe.publisher("action")
    total = sum(before_status.values())
    for i, values in enumerate(bad, 1):
        # The action topic keeps only the newest message (depth 1): send the next bad command once the driver has
        # counted this one, or a busy driver (loaded CI machine) may see only the last of two.
        pub.publish(_command(probe, values))
        _wait_status(probe, lambda s, n=total + i: s["commands"]["refused_total"] >= n)
    status = _wait_status(probe, lambda s: s["commands"]["refused_total"] >= total + 6)
    refused = status["commands"]["refused"]
    assert refused["nonfinite"] - before_status["nonfinite"] == 2
    assert refused["length"] - before_status["length"] == 2
    assert refused["range"] - before_status["range"] == 2
    probe.spin(0.5)
    assert np.linalg.norm(_ee(probe) - before) < 0.005
    assert node.alive


def test_commands_answering_old_or_unstamped_frames_are_refused_and_counted(sim_driver):
    """The driver's limit is 0.5 s (config/xarm_driver.yaml): a command computed from a 2 s old frame, one with no
    stamp and one stamped in the future are refused, counted by reason, and the arm holds; fresh ones move it."""
    node, probe = sim_driver
    probe.spin(0.6)
    before = _wait_status(probe, lambda s: "commands" in s)["commands"]["refused"]
    start = _ee(probe)
    _send(probe, [1.0, 0.0, 0.0, -1.0], 0.8, age_s=2.0)
    status = _wait_status(probe, lambda s: s["commands"]["refused"]["old_observation"] > before["old_observation"])
    assert "observation 2." in status["last_refusal"] and "max_observation_age" in status["last_refusal"], status
    assert np.linalg.norm(_ee(probe) - start) < 0.005, "the arm moved on commands answering a 2 s old frame"
    pub = probe.publisher("action")
    for age_s, wanted in ((None, "header.stamp is zero"), (-5.0, "in the future")):
        count = _status(probe)["commands"]["refused"]["stamp"]
        msg = action_message([1.0, 0.0, 0.0, -1.0], None) if age_s is None else _command(probe, [1, 0, 0, -1], age_s)
        pub.publish(msg)
        status = _wait_status(probe, lambda s, n=count: s["commands"]["refused"]["stamp"] > n)
        assert wanted in status["last_refusal"], status
    assert np.linalg.norm(_ee(probe) - start) < 0.005
    assert node.alive

    def diagnosed_refusals(m) -> bool:  # the same counters reach /diagnostics
        values = {kv.key: kv.value for st in m.status for kv in st.values if st.hardware_id == "xarm_driver"}
        return "commands" in values and json.loads(values["commands"])["refused"]["old_observation"] >= 1

    assert probe.wait_for_messages("diagnostics", 1, timeout=5, where=diagnosed_refusals)
    _send(probe, [1.0, 0.0, 0.0, -1.0], 0.6, age_s=0.1)  # a 0.1 s old frame is within the limit: executed
    assert _ee(probe)[0] - start[0] > 0.03


def test_workspace_clamp(sim_driver):
    _node, probe = sim_driver
    _send(probe, [0.0, 0.0, -1.0, -1.0], 2.0)  # 20 x 2.5 cm down from z ~0.70: far below the box floor
    z_floor = 0.575
    assert _ee(probe)[2] > z_floor - 0.01
    status = _wait_status(probe, lambda s: s["commands"]["clamped"] > 0)
    assert status["commands"]["clamped"] > 0


def test_fault_stops_until_reset_and_estop(sim_driver):
    node, probe = sim_driver
    res = probe.set_parameters("xarm_driver", {"inject_error_code": 24})
    assert res and res[0].successful
    status = _wait_status(probe, lambda s: s["state"] == "error")
    assert status["error_code"] == 24 and "error 24" in status["last_error"]
    before = _ee(probe)
    _send(probe, [1.0, 0.0, 0.0, 0.0], 0.6)
    assert np.linalg.norm(_ee(probe) - before) < 0.005
    assert _status(probe)["commands"]["refused"]["locked"] > 0
    assert probe.set_parameters("xarm_driver", {"inject_error_code": 0})[0].successful
    probe.spin(0.5)
    assert _status(probe)["state"] == "error"  # the code cleared, but only reset recovers
    # e-stop in the error state, then reset
    assert probe.call_trigger("estop").success
    assert _wait_status(probe, lambda s: s["state"] == "estop")["state"] == "estop"
    reply = probe.call_trigger("reset")
    assert reply.success, reply.message
    assert _wait_status(probe, lambda s: s["state"] in ("stale", "ready"))["state"] in ("stale", "ready")
    start = _ee(probe)
    _send(probe, [0.0, 1.0, 0.0, 0.0], 0.6)
    assert _ee(probe)[1] - start[1] > 0.03
    # e-stop while moving
    pub = probe.publisher("action")
    pub.publish(_command(probe, [0.0, -1.0, 0.0, 0.0]))
    assert probe.call_trigger("estop").success
    stopped = _ee(probe)
    _send(probe, [0.0, -1.0, 0.0, 0.0], 0.5)
    assert np.linalg.norm(_ee(probe) - stopped) < 0.03  # at most the step already in flight
    assert _status(probe)["state"] == "estop"
    assert node.alive


def test_real_backend_silent_controller(tmp_path):
    """A controller that accepts TCP and never answers: connect gives up at the deadline, no pose is published,
    the status says why, and e-stop still answers. A reset to it (a new connect, as long as the deadline) does
    not stall the driver: control ticks and status keep coming meanwhile and an e-stop is answered."""
    with silent_controller() as (host, conns), allocate_domain(40, 69) as domain, Probe(domain.id) as probe:
        node = NodeProcess("xarm_driver_node", domain_id=domain.id, log_dir=tmp_path,
                           params={"backend": "real", "ip": host, "connect_timeout_s": 1.5, "rate_hz": 10.0,
                                   "status_period_s": 0.2})
        try:
            poses = probe.subscribe("ee_pose")
            joints = probe.subscribe("joint_states")
            status = _wait_status(probe, lambda s: s["state"] == "disconnected", timeout=20)
            assert status["state"] == "disconnected", node.log_text()
            assert "did not answer within the connect deadline of 1.5 s" in status["last_error"]
            assert conns, "the SDK never reached the fake controller"
            probe.spin(1.5)
            assert poses == [] and joints == []

            # reset: a second connect to the silent controller, in the service's own thread
            from std_srvs.srv import Trigger

            statuses = probe.subscribe("robot_status")
            client = probe.node.create_client(Trigger, "robot/reset")
            assert probe.spin_until(client.service_is_ready, 10)
            first = len(statuses)
            t0 = time.monotonic()
            future = client.call_async(Trigger.Request())
            assert probe.spin_until(lambda: _status(probe).get("state") == "resetting", 5), _status(probe)
            estop_t0 = time.monotonic()
            estop = probe.call_trigger("estop", timeout=5)  # answered while the reset still waits on the SDK
            estop_s = time.monotonic() - estop_t0
            assert probe.spin_until(future.done, 15), "reset never answered"
            reset_s = time.monotonic() - t0
            during = [json.loads(m.data) for _, m in statuses[first:]]
            ticks = [d["ticks"] for d in during]
            assert estop is not None and estop.success and estop_s < 1.0, estop_s
            assert reset_s >= 1.4, f"the reset returned after {reset_s:.2f} s, before the connect deadline"
            assert len(during) >= 5, f"{len(during)} status messages during a {reset_s:.1f} s reset"
            assert ticks[-1] - ticks[0] >= 8, f"control ticks stalled during the reset: {ticks}"
            assert not future.result().success  # the e-stop overtook it, or the connect failed again
            print(f"reset {reset_s:.2f} s: {len(during)} statuses, ticks {ticks[0]}..{ticks[-1]}, "
                  f"e-stop answered in {estop_s * 1000:.0f} ms")
            assert _wait_status(probe, lambda s: s["state"] == "estop")["state"] == "estop"
            assert node.alive
        finally:
            node.stop()


def test_bad_parameters_exit_with_clear_error(tmp_path):
    with allocate_domain(40, 69) as domain:
        node = NodeProcess("xarm_driver_node", domain_id=domain.id, log_dir=tmp_path,
                           params={"backend": "real", "ip": ""})
        node.proc.wait(20)
        assert node.returncode == 2
        assert "parameter 'ip' is empty" in node.log_text()
        node = NodeProcess("xarm_driver_node", domain_id=domain.id, log_dir=tmp_path,
                           params={"backend": "sim", "max_step_m": 0.5})
        node.proc.wait(20)
        assert node.stop() == 2  # the log stays readable after stop()
        assert "parameter 'max_step_m' = 0.5: above the maximum 0.05" in node.log_text()
        bad_tasks = (("metaworld/reach", "is not a simulated xArm task"), ("xarm/peg-purple", "expected one of"))
        for task, needle in bad_tasks:
            node = NodeProcess("xarm_driver_node", domain_id=domain.id, log_dir=tmp_path,
                               params={"backend": "sim", "task": task})
            node.proc.wait(30)
            assert node.stop() == 2
            assert f"parameter 'task': task {task!r}" in node.log_text() and needle in node.log_text()
            assert "xarm/drawer-close-right" in node.log_text()  # the known tasks are named


def test_a_new_task_streams_its_state_reward_success_and_frames(tmp_path):
    """The sim backend on a paper task (not reach/push): the driver publishes the task's own 10-D state, reward
    and success every tick, the camera shows the task's scene, and the reset service starts the next seed."""
    from polytask.sim import registry
    from polytask.sim.xarm_suite import decode_xarm_state

    task = "xarm/drawer-close-left"
    with allocate_domain(40, 69) as domain, Probe(domain.id) as probe:
        node = NodeProcess("xarm_driver_node", domain_id=domain.id, log_dir=tmp_path, extra_env={"MUJOCO_GL": "egl"},
                           params_files=(str(CONFIG / "xarm_driver.yaml"),),
                           params={"backend": "sim", "task": task, "seed": 7, "rate_hz": 10.0})
        try:
            states, rewards, successes = (probe.subscribe(k) for k in ("task_state", "reward", "success"))
            images, poses = probe.subscribe("image"), probe.subscribe("ee_pose")
            ready = lambda: len(states) >= 3 and len(rewards) >= 3 and len(poses) >= 3 and bool(images)  # noqa: E731
            assert probe.spin_until(ready, 60), node.log_text()
            first = decode_xarm_state(states[-1][1].data)
            expect = registry.make(task, render=False)
            try:
                seeded = decode_xarm_state(expect.reset(seed=7).state)  # the driver's first episode is seed 7
            finally:
                expect.close()
            assert np.allclose(first.goal, seeded.goal, atol=1e-4), (first.goal, seeded.goal)
            assert np.linalg.norm(first.ee - _ee(probe)) < 0.01  # slot 0..2 is the end effector of ee_pose
            status = _wait_status(probe, lambda s: s.get("task") == task)
            assert status["episode"] == status["episodes"] == 1 and status["successes"] == 0
            frame = image_to_numpy(images[-1][1])
            assert frame.shape == (84, 84, 3) and frame.std() > 5
            assert not any(bool(m.data) for _, m in successes)  # the drawer starts open
            # each tick is one task step: its reward is the task's (minus the handle's distance to the closed spot)
            assert all(float(m.data) <= 0.0 for _, m in rewards[-3:])
            assert abs(float(rewards[-1][1].data) + np.linalg.norm(first.achieved - first.goal)) < 0.02
            assert probe.call_trigger("reset").success
            status = _wait_status(probe, lambda s: s.get("episode") == 2)
            n = len(states)
            assert probe.spin_until(lambda: len(states) > n + 1, 10)
            second = decode_xarm_state(states[-1][1].data)
            assert np.abs(second.goal - first.goal).max() > 1e-3 or np.abs(second.ee - first.ee).max() > 1e-3
        finally:
            node.stop()
