"""The command guard without ROS or an arm: refusals by reason, scaling, the workspace box, the watchdog, and the
observation stamp rule (a command computed from a frame older than the limit, or with a zero or future stamp, is
refused and counted; an accepted one is never applied after its frame passes the limit). Also the action message
that carries the stamp (polytask.ros.action_msg)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from polytask.robot.safety import CommandGuard, GuardConfig, Observed, observation_verdict

LOW, HIGH = (0.2, -0.3, 0.05), (0.6, 0.3, 0.45)
CFG = GuardConfig(
    action_dim=4,
    max_step_m=0.025,
    workspace_low=LOW,
    workspace_high=HIGH,
    command_timeout_s=0.5,
    max_observation_age_s=0.5,
)
HOME = np.array([0.4, 0.0, 0.2])
NODE_NOW = 1_700_000_000.0  # the node clock (ROS time, seconds); the guard's own clock runs separately from 0


# --- values ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ([math.nan, 0, 0, 0], "nonfinite"),
        ([0, math.inf, 0, 0], "nonfinite"),
        ([0, 0, -math.inf, 0], "nonfinite"),
        ([0, 0, 0], "length"),
        ([0, 0, 0, 0, 0], "length"),
        ([], "length"),
        ([1.5, 0, 0, 0], "range"),
        ([0, 0, 0, -1.01], "range"),
        ([0, 1e9, 0, 0], "range"),
    ],
)
def test_guard_refuses_and_counts_bad_commands(values, reason):
    guard = CommandGuard(CFG)
    assert guard.submit([1, 0, 0, 0], now=0.0).accepted
    verdict = guard.submit(values, now=0.1)
    assert not verdict.accepted and verdict.reason == reason
    assert guard.counters.refused[reason] == 1
    plan = guard.plan(np.array([0.4, 0.0, 0.2]), now=0.1)  # the earlier good command is cancelled: hold
    assert not plan.moving and np.array_equal(plan.target, [0.4, 0.0, 0.2])


def test_guard_scales_to_2p5_cm_and_clamps_to_box():
    guard = CommandGuard(CFG)
    guard.submit([1.0, -0.5, 0.2, 1.0], now=0.0)
    plan = guard.plan([0.4, 0.0, 0.2], now=0.0)
    np.testing.assert_allclose(plan.target, [0.425, -0.0125, 0.205])
    assert plan.gripper == 1.0 and plan.moving
    target = np.array([0.4, 0.0, 0.2])
    for i in range(40):  # push +x for 1 m: must stop at the box edge
        guard.submit([1.0, 0, 0, 0], now=i * 0.1)
        target = guard.plan(target, now=i * 0.1).target
    assert target[0] == pytest.approx(HIGH[0]) and guard.counters.clamped > 0


def test_guard_arm_outside_box_reenters_one_step_at_a_time():
    guard = CommandGuard(CFG)
    guard.submit([0, 0, 0, 0], now=0.0)
    plan = guard.plan([0.9, 0.0, 0.2], now=0.0)  # 30 cm outside in x: no jump back
    assert plan.target[0] == pytest.approx(0.9 - 0.025)


def test_guard_watchdog_holds_after_timeout():
    guard = CommandGuard(CFG)
    guard.submit([1, 0, 0, 0], now=0.0)
    assert guard.plan([0.4, 0, 0.2], now=0.49).moving
    plan = guard.plan([0.4, 0, 0.2], now=0.51)
    assert plan.stale and not plan.moving and guard.counters.stale_events == 1


# --- observation stamps ---------------------------------------------------------------------------------------------
def test_fresh_stamp_accepted_old_frame_refused_counted_and_cancels():
    guard = CommandGuard(CFG)
    assert guard.submit([1, 0, 0, 0], now=0.0, observed=Observed(NODE_NOW - 0.05, NODE_NOW)).accepted
    assert guard.plan(HOME, now=0.0).moving
    verdict = guard.submit([1, 0, 0, 0], now=0.1, observed=Observed(NODE_NOW - 0.8, NODE_NOW + 0.1))
    assert not verdict.accepted and verdict.reason == "old_observation"
    assert "0.900 s old" in verdict.detail and "max_observation_age" in verdict.detail
    assert guard.counters.refused["old_observation"] == 1 and guard.counters.as_dict()["refused_total"] == 1
    plan = guard.plan(HOME, now=0.1)  # the earlier fresh command is cancelled too: hold
    assert not plan.moving and np.array_equal(plan.target, HOME)


@pytest.mark.parametrize(
    ("stamp", "words"),
    [
        (0.0, "header.stamp is zero"),
        (NODE_NOW + 3.0, "in the future"),
        (NODE_NOW - 3 * 86400.0, "another clock"),
    ],
)
def test_zero_future_and_foreign_clock_stamps_say_why(stamp, words):
    guard = CommandGuard(CFG)
    verdict = guard.submit([0.5, 0, 0, 0], now=0.0, observed=Observed(stamp, NODE_NOW))
    assert not verdict.accepted and words in verdict.detail
    assert guard.counters.refused["stamp" if words != "another clock" else "old_observation"] == 1
    assert not guard.plan(HOME, now=0.0).moving


def test_small_clock_skew_is_not_the_future():
    assert observation_verdict(Observed(NODE_NOW + 0.01, NODE_NOW), 0.5).accepted
    assert not observation_verdict(Observed(NODE_NOW + 0.2, NODE_NOW), 0.5).accepted


def test_accepted_command_expires_when_its_frame_passes_the_limit():
    """A command answering a 0.3 s old frame (limit 0.5 s) is applied for 0.2 s, not for the 0.5 s watchdog."""
    guard = CommandGuard(CFG)
    assert guard.submit([1, 0, 0, 0], now=10.0, observed=Observed(NODE_NOW - 0.3, NODE_NOW)).accepted
    assert guard.plan(HOME, now=10.19).moving
    plan = guard.plan(HOME, now=10.21)
    assert plan.stale and not plan.moving and guard.counters.stale_events == 1
    # without a stamp (library callers) the watchdog alone decides, as before
    guard.submit([1, 0, 0, 0], now=20.0)
    assert guard.plan(HOME, now=20.49).moving and not guard.plan(HOME, now=20.51).moving


def test_stamp_checked_after_the_values_and_while_locked_nothing_passes():
    guard = CommandGuard(CFG)
    old = Observed(NODE_NOW - 9.0, NODE_NOW)
    assert guard.submit([math.nan, 0, 0, 0], now=0.0, observed=old).reason == "nonfinite"
    guard.lock()
    assert guard.submit([0, 0, 0, 0], now=0.0, observed=Observed(NODE_NOW, NODE_NOW)).reason == "locked"


def test_max_observation_age_must_be_positive():
    with pytest.raises(ValueError, match="max_observation_age_s"):
        GuardConfig(max_observation_age_s=0.0)


# --- the action message ---------------------------------------------------------------------------------------------
def test_action_message_round_trip_and_malformed_messages():
    from builtin_interfaces.msg import Time

    from polytask.ros.action_msg import ActionMessageError, action_message, read_action

    msg = action_message(np.array([0.5, -1.0, 0.0, 1.0], np.float32), Time(sec=12, nanosec=500_000_000))
    assert list(msg.name) == ["a0", "a1", "a2", "a3"] and not msg.velocity and not msg.effort
    values, stamp = read_action(msg)
    assert values.tolist() == [0.5, -1.0, 0.0, 1.0] and stamp == 12.5
    msg.name = ["a0", "a1"]
    with pytest.raises(ActionMessageError, match="2 names for 4 positions"):
        read_action(msg)
    msg.name = []
    assert read_action(msg)[0].shape == (4,)  # names are optional
    msg.velocity = [0.0] * 4
    with pytest.raises(ActionMessageError, match="in `position` only"):
        read_action(msg)
    assert read_action(action_message([0.0], None))[1] == 0.0  # no stamp: zero, which receivers refuse
