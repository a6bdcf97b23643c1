"""Why the scripted joystick operator moves gently: the teleop loop lags the task state by control ticks.

The operator (polytask.ros.scripted_operator) plays a task's scripted expert through Joy -> recorder -> driver,
so the state it steers by is one to three ticks old. Played here without ROS through a state delayed by `lag`
ticks: at full gain the drawer expert rings and never shuts the drawer; at the operator's hand gain it settles for
every lag up to four ticks.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest

TASK = "xarm/drawer-close-left"
TICKS = 80  # the teleop test's shortest attempt
SEEDS = (0, 1, 2)


def _ticks_to_success(env, seed: int, lag: int, gain: float, hold: int = 5) -> int | None:
    """Ticks until the task has reported success `hold` ticks in a row, steering by a state `lag` ticks old."""
    from polytask.ros.scripted_operator import gentle_expert_action

    step = env.reset(seed=seed)
    seen = deque([step.state] * (lag + 1), maxlen=lag + 1)
    run = 0
    for tick in range(TICKS):
        step = env.step(gentle_expert_action(env, seen[0], gain))
        seen.append(step.state)
        run = run + 1 if step.success else 0
        if run >= hold:
            return tick + 1
    return None


@pytest.fixture(scope="module")
def env():
    from polytask.sim import registry

    task = registry.make(TASK, render=False)
    yield task
    task.close()


def test_full_gain_rings_under_one_tick_of_lag(env):
    assert all(_ticks_to_success(env, seed, 0, 1.0) is not None for seed in SEEDS)  # no lag: the expert works
    assert all(_ticks_to_success(env, seed, 1, 1.0) is None for seed in SEEDS)


@pytest.mark.parametrize("lag", [1, 2, 4])
def test_the_operators_hand_gain_settles_under_lag(env, lag):
    from polytask.ros.scripted_operator import HAND_GAIN

    ticks = [_ticks_to_success(env, seed, lag, HAND_GAIN) for seed in SEEDS]
    assert all(t is not None for t in ticks), ticks


def test_the_tool_value_is_not_scaled(env):
    from polytask.ros.scripted_operator import gentle_expert_action

    step = env.reset(seed=0)
    full = gentle_expert_action(env, step.state, 1.0)
    soft = gentle_expert_action(env, step.state, 0.35)
    np.testing.assert_allclose(soft[:3], 0.35 * full[:3], rtol=1e-6)
    assert soft[3] == full[3]
