"""The teleop recorder's stick mapping and its inverse (polytask.robot.teleop.JoyMapping), without ROS."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polytask.robot.teleop import JoyMapping

MAPPINGS = st.builds(
    JoyMapping,
    axes=st.permutations([1, 0, 4]).map(tuple),
    axis_signs=st.tuples(*[st.sampled_from([1.0, -1.0])] * 3),
    deadzone=st.floats(0.0, 0.5),
    button_tool=st.sampled_from([5, 7, -1]),
)
ACTIONS = st.tuples(*[st.floats(-1.0, 1.0)] * 3, st.sampled_from([-1.0, 1.0]))


@settings(max_examples=200, deadline=None)
@given(MAPPINGS, ACTIONS)
def test_the_inverse_gives_back_the_action(mapping, action):
    axes, buttons = mapping.joy_for_action(action)
    got = mapping.action(axes, buttons)
    want = np.array(action, dtype=np.float32)
    if mapping.button_tool < 0:
        want[3] = -1.0  # no tool button: always released
    assert np.allclose(got, want, atol=1e-5), (axes, buttons, got, want)
    assert all(-1.0 <= a <= 1.0 for a in axes)


def test_dead_zone_is_rescaled_and_full_deflection_is_full_speed():
    m = JoyMapping(deadzone=0.2)
    axes = [0.0] * 8
    axes[1], axes[0], axes[4] = 0.15, 1.0, -0.6  # inside the dead zone, full, past it
    out = m.action(axes, [0] * 12)
    assert out[0] == 0.0 and out[1] == pytest.approx(1.0) and out[2] == pytest.approx(-0.5)
    assert out[3] == -1.0
    buttons = [0] * 12
    buttons[5] = 1
    assert m.action(axes, buttons)[3] == 1.0


def test_bad_joy_and_bad_mappings_are_refused():
    m = JoyMapping()
    with pytest.raises(ValueError, match="expected at least 5 finite axes"):
        m.action([0.0, 0.0], [])
    with pytest.raises(ValueError, match="expected at least 5 finite axes"):
        m.action([float("nan")] * 8, [])
    with pytest.raises(ValueError, match="4 finite values"):
        m.joy_for_action([0.0, float("inf"), 0.0, 1.0])
    with pytest.raises(ValueError, match="deadzone"):
        JoyMapping(deadzone=1.0)
    with pytest.raises(ValueError, match="axis_signs"):
        JoyMapping(axis_signs=(1.0, 0.0, 1.0))
