"""Arm safety without ROS: the controller state machine on the real-SDK backend (a fake SDK object, a fake TCP
peer, the SDK's own unconnected behaviour) and on the simulated arm. The guard alone: test_command_guard.py."""

from __future__ import annotations

import math
import socket
import threading
import time

import numpy as np
import pytest
from xarm_fakes import CFG, HIGH, LOW, FakeClock, FakeSDK, make_controller, silent_controller

from polytask.robot.backend import ArmConnectError
from polytask.robot.controller import ArmController
from polytask.robot.safety import GuardConfig
from polytask.robot.xarm_real import SDK_DEFAULT_POSE, XArmReal


# --- controller on the real backend (fake SDK object) ---------------------------------------------------------------
def test_commands_move_and_stale_commands_stop(listener):
    ctl, sdk, clock = make_controller(listener)
    assert ctl.submit([1.0, 0.0, 0.0, 0.0]).accepted
    for _ in range(3):
        clock.t += 0.1
        ctl.tick()
    assert len(sdk.servo_calls) == 3 and sdk.servo_calls[-1][0] == pytest.approx(475.0)
    assert sdk.servo_calls[-1][3:] == [180.0, 0.0, 0.0]
    clock.t += 0.6  # no new command for longer than the watchdog period
    for _ in range(5):
        ctl.tick()
        clock.t += 0.1
    assert len(sdk.servo_calls) == 3 and ctl.state == "stale"
    assert ctl.status()["commands"]["stale_events"] == 1


def test_bad_commands_never_reach_the_sdk(listener):
    ctl, sdk, clock = make_controller(listener)
    bad = [[math.nan] * 4, [math.inf, 0, 0, 0], [0.1, 0.1], [0.1] * 6, [2.0, 0, 0, 0], [0, 0, -7, 0]]
    for values in bad:
        assert not ctl.submit(values).accepted
        clock.t += 0.1
        ctl.tick()
    assert sdk.servo_calls == []
    counts = ctl.status()["commands"]["refused"]
    assert counts == {"length": 2, "nonfinite": 2, "range": 2, "locked": 0, "malformed": 0, "stamp": 0,
                      "old_observation": 0}


@pytest.mark.parametrize("kind", ["error", "warn", "servo_refused"])
def test_sdk_fault_stops_and_only_reset_recovers(listener, kind):
    ctl, sdk, clock = make_controller(listener)
    ctl.submit([0.5, 0, 0, 0])
    clock.t += 0.1
    ctl.tick()
    n = len(sdk.servo_calls)
    if kind == "error":
        sdk.error_code = 22  # "self-collision" class controller error
    elif kind == "warn":
        sdk.warn_code = 11
    else:
        sdk.servo_return = 9  # SDK refuses the servo target
    ctl.submit([0.5, 0, 0, 0])
    ctl.tick()
    assert ctl.state == "error"
    assert "set_state(4)" in sdk.calls
    status = ctl.status()
    assert status["error_code"] == (22 if kind == "error" else 0)
    assert status["warn_code"] == (11 if kind == "warn" else 0)
    sdk.error_code = sdk.warn_code = sdk.servo_return = 0  # the fault clears on the controller side ...
    verdict = ctl.submit([0.5, 0, 0, 0])
    for _ in range(3):
        clock.t += 0.1
        ctl.tick()
    assert not verdict.accepted and verdict.reason == "locked"  # ... but nothing moves without a reset
    assert ctl.state == "error" and len(sdk.servo_calls) == n + (kind == "servo_refused")
    ok, _ = ctl.reset()
    assert ok and ctl.state == "stale" and "clean_error" in sdk.calls
    assert ctl.submit([0.5, 0, 0, 0]).accepted
    clock.t += 0.1
    ctl.tick()
    assert ctl.state == "ready"


def test_estop_from_every_state(listener):
    # connecting: a slow SDK connect
    gate = threading.Event()
    slow = FakeSDK()
    slow.connect = lambda: (gate.wait(5), setattr(slow, "connected", True))
    ctl = ArmController(XArmReal("127.0.0.1", 5.0, port=listener, api_factory=lambda ip: slow), CFG)
    ctl.start_connect()
    ctl.estop()
    gate.set()
    ctl._connect_thread.join(5)
    ctl.tick()
    assert ctl.state == "estop" and not ctl.submit([0.1, 0, 0, 0]).accepted and slow.servo_calls == []
    assert "emergency_stop" in slow.calls
    # ready, stale, error
    for setup in ("ready", "stale", "error"):
        ctl, sdk, _clock = make_controller(listener)
        if setup == "ready":
            ctl.submit([0.1, 0, 0, 0])
            ctl.tick()
        if setup == "error":
            sdk.error_code = 1
            ctl.tick()
        assert ctl.state == setup
        ctl.estop()
        assert ctl.state == "estop" and "emergency_stop" in sdk.calls
        assert not ctl.submit([0.1, 0, 0, 0]).accepted
        ok, _ = ctl.reset()
        assert ok and ctl.state == "stale"
    # disconnected (nothing listening)
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    ctl = ArmController(XArmReal("127.0.0.1", 1.0, port=port, api_factory=lambda ip: FakeSDK()), CFG)
    ctl.start_connect()
    ctl._connect_thread.join(5)
    ctl.tick()
    assert ctl.state == "disconnected" and "not reachable" in ctl.last_error
    ctl.estop()
    assert ctl.state == "estop"


# --- the real SDK ---------------------------------------------------------------------------------------------------
def test_silent_controller_connect_fails_within_deadline():
    with silent_controller() as (host, accepted):
        backend = XArmReal(host, connect_timeout_s=1.5)
        t0 = time.monotonic()
        with pytest.raises(ArmConnectError, match=r"did not answer within the connect deadline of 1\.5 s"):
            backend.connect()
        elapsed = time.monotonic() - t0
        assert elapsed >= 1.4, elapsed  # not a timing: it waited out its deadline (load only makes it longer)
        assert accepted, "the SDK never reached the peer: the test would prove nothing"
        assert backend.read() is None and not backend.connected


def test_unconnected_sdk_pose_is_never_reported():
    """The SDK itself reports a made-up pose when unconnected; the backend must return no reading at all."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        from xarm.wrapper import XArmAPI
    api = XArmAPI("127.0.0.1", do_not_open=True)
    np.testing.assert_allclose(api.position, SDK_DEFAULT_POSE, atol=1e-4)  # the hazard is real
    backend = XArmReal("127.0.0.1", 1.0, api_factory=lambda ip: api)
    backend.api = api
    assert backend.read() is None
    assert backend.fault_codes().api_code == -1
    with pytest.raises(Exception, match="not connected"):
        backend.move_to(np.array([0.4, 0, 0.2]), None)


def test_nothing_listening_fails_at_once():
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    t0 = time.monotonic()
    with pytest.raises(ArmConnectError, match="not reachable"):
        XArmReal("127.0.0.1", 5.0, port=port).connect()
    assert time.monotonic() - t0 < 1.0


# --- the same logic on the simulated arm ----------------------------------------------------------------------------
def test_simulated_arm_fault_stale_and_clamp():
    from polytask.robot.xarm_sim import XArmSim
    from polytask.sim.xarm_arm import WORKSPACE_HIGH, WORKSPACE_LOW

    backend = XArmSim("xarm/reach")
    clock = FakeClock()
    ctl = ArmController(backend, GuardConfig(workspace_low=tuple(WORKSPACE_LOW), workspace_high=tuple(WORKSPACE_HIGH),
                                             command_timeout_s=0.5), clock=clock)
    ctl.start_connect()
    ctl._connect_thread.join(30)
    ctl.tick()
    start = backend.read().ee_xyz
    for _ in range(30):  # drive +y far beyond the box
        ctl.submit([0.0, 1.0, 0.0, -1.0])
        clock.t += 0.1
        ctl.tick()
    ee = backend.read().ee_xyz
    assert ee[1] <= WORKSPACE_HIGH[1] + 0.01 and ee[1] > start[1] + 0.2
    assert ctl.status()["commands"]["clamped"] > 0
    clock.t += 1.0
    ctl.tick()
    held = backend.read().ee_xyz
    for _ in range(5):
        clock.t += 0.1
        ctl.tick()
    assert np.linalg.norm(backend.read().ee_xyz - held) < 0.003 and ctl.state == "stale"
    backend.inject_fault(error_code=31)
    ctl.submit([-1.0, 0, 0, 0])
    ctl.tick()
    assert ctl.state == "error" and ctl.status()["error_code"] == 31
    assert not ctl.submit([-1.0, 0, 0, 0]).accepted
    assert ctl.reset()[0] and ctl.state == "stale"
    backend.close()


# --- property: no sequence of commands, however malformed, produces an unsafe servo target ---------------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_value = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(-1.0, 1.0), st.sampled_from([-1.0, 1.0]))
_command = st.one_of(st.lists(st.floats(-1.0, 1.0), min_size=4, max_size=4),  # valid: the arm must move
                     st.lists(st.sampled_from([-1.0, 1.0]), min_size=4, max_size=4),
                     st.lists(_value, min_size=0, max_size=7))


MOVED: list[int] = []


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(_command, st.floats(0.0, 1.0)), min_size=1, max_size=40),
       st.tuples(st.floats(0.0, 0.8), st.floats(-0.5, 0.5), st.floats(-0.2, 0.7)))
def test_no_command_sequence_yields_an_unsafe_target(commands, start):
    """Random commands (NaN, inf, any length, any size) at random intervals from a random start (possibly outside
    the box): every servo target is finite, moves at most 2.5 cm per axis per tick and never leaves the box except
    while re-entering it from outside."""
    port_sock = socket.socket()
    port_sock.bind(("127.0.0.1", 0))
    port_sock.listen(4)
    try:
        sdk = FakeSDK(pose_mm=(start[0] * 1000, start[1] * 1000, start[2] * 1000, 180.0, 0.0, 0.0))
        ctl, sdk, clock = make_controller(port_sock.getsockname()[1], sdk)
        prev = np.array(start)
        low, high = np.array(LOW), np.array(HIGH)
        for values, dt in commands:
            verdict = ctl.submit(values)
            arr = np.asarray(values, dtype=np.float64) if values else np.zeros(0)
            if verdict.accepted:
                assert arr.shape == (4,) and np.all(np.isfinite(arr)) and np.all(np.abs(arr) <= 1.0 + 1e-6)
            clock.t += dt
            ctl.tick()
        MOVED.append(len(sdk.servo_calls))
        for pose in sdk.servo_calls:
            target = np.array(pose[:3]) / 1000.0
            assert np.all(np.isfinite(target))
            assert np.all(np.abs(target - prev) <= 0.025 + 1e-9)
            inside_before = np.all((prev >= low - 1e-9) & (prev <= high + 1e-9))
            if inside_before:
                assert np.all((target >= low - 1e-9) & (target <= high + 1e-9))
            prev = target
    finally:
        port_sock.close()


def test_property_run_exercised_motion():
    """The property above is only meaningful if many generated sequences really moved the arm."""
    if not MOVED:
        pytest.skip("run together with test_no_command_sequence_yields_an_unsafe_target")
    assert sum(m > 0 for m in MOVED) >= len(MOVED) // 3, MOVED


# --- interpolated servo streaming of the real backend ---------------------------------------------------------------
def _streaming(listener_port, sdk):
    backend = XArmReal("127.0.0.1", 2.0, port=listener_port, api_factory=lambda ip: sdk, speed_mm_s=250.0,
                       servo_hz=100.0)
    backend.connect()
    return backend


def test_streaming_sends_small_steps_and_limits_lag(listener):
    sdk = FakeSDK()
    backend = _streaming(listener, sdk)
    used = backend.move_to(np.array([0.425, 0.0, 0.2]), None)
    np.testing.assert_allclose(used, [0.425, 0.0, 0.2])
    time.sleep(0.3)
    xs = [400.0] + [p[0] for p in sdk.servo_calls]
    assert len(sdk.servo_calls) == 10 and max(np.diff(xs)) <= 2.5 + 1e-9 and xs[-1] == pytest.approx(425.0)
    used = backend.move_to(np.array([0.625, 0.0, 0.2]), None)  # 20 cm ahead: the goal is held 5 cm ahead
    np.testing.assert_allclose(used, [0.475, 0.0, 0.2])
    time.sleep(0.05)
    held = backend.hold()  # stale: stop where the stream is now
    n = len(sdk.servo_calls)
    time.sleep(0.15)
    assert len(sdk.servo_calls) == n and held[0] * 1000 == pytest.approx(sdk.servo_calls[-1][0])
    assert 425.0 < sdk.servo_calls[-1][0] < 475.0


def test_streaming_error_faults_the_controller(listener):
    sdk = FakeSDK()
    ctl = ArmController(_streaming_backend := XArmReal("127.0.0.1", 2.0, port=listener, api_factory=lambda ip: sdk,
                                                       servo_hz=100.0), CFG, clock=FakeClock())
    ctl.start_connect()
    ctl._connect_thread.join(5)
    ctl.tick()
    ctl.submit([1.0, 0, 0, 0])
    sdk.servo_return = 9
    ctl.tick()
    time.sleep(0.1)
    ctl.tick()
    assert ctl.state == "error" and ctl.status()["api_code"] == 9 and len(sdk.servo_calls) == 1
    sdk.servo_return = 0
    assert ctl.reset()[0] and _streaming_backend.fault_codes().api_code == 0


def test_simulated_task_arm_keeps_to_the_tasks_box_and_steps_the_task():
    """XArmSim on a paper task: the default workspace is the task's own box, a command beyond it is clamped (the
    arm never leaves it), a refused command does not move the arm, and every tick is one step of the task whose
    state is what the backend reports."""
    from polytask.robot.xarm_sim import XArmSim
    from polytask.sim import registry
    from polytask.sim.xarm_suite import decode_xarm_state

    backend = XArmSim("xarm/pour-left", seed=3)
    low, high = backend.default_workspace()
    probe = registry.make("xarm/pour-left", render=False)
    try:
        assert np.allclose(low, probe.arm.workspace_low) and np.allclose(high, probe.arm.workspace_high)
        assert not np.allclose(low, backend_default_reach_low())  # the task's box, not the bare arm's
        first_goal = probe.reset(seed=3).state[7:10]
    finally:
        probe.close()
    clock = FakeClock()
    ctl = ArmController(backend, GuardConfig(workspace_low=tuple(low), workspace_high=tuple(high)), clock=clock)
    ctl.start_connect()
    ctl._connect_thread.join(30)
    ctl.tick()
    assert np.allclose(backend.feedback().state[7:10], first_goal, atol=1e-5)  # the first episode is seed 3
    t0 = backend.task.t
    for _ in range(40):  # +z and -y far beyond the box
        ctl.submit([0.0, -1.0, 1.0, -1.0])
        clock.t += 0.1
        ctl.tick()
    ee = backend.read().ee_xyz
    assert ee[2] <= high[2] + 0.01 and ee[1] >= low[1] - 0.01 and ctl.status()["commands"]["clamped"] > 0
    assert backend.task.t - t0 == 40  # one task step per tick
    assert np.allclose(decode_xarm_state(backend.feedback().state).ee, ee, atol=1e-5)  # the state is the task's
    before = backend.read().ee_xyz
    assert not ctl.submit([np.nan, 0.0, 0.0, 0.0]).accepted
    for _ in range(5):
        clock.t += 0.1
        ctl.tick()
    assert np.linalg.norm(backend.read().ee_xyz - before) < 0.005
    backend.close()


def backend_default_reach_low():
    from polytask.sim.xarm_arm import WORKSPACE_LOW

    return WORKSPACE_LOW
