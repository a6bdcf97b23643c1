"""xArm in MuJoCo: both tasks through the registry, the 2.5 cm/step rule and workspace clamp on the real model,
and the scripted experts' success over 10 seeds (no rendering, ~1 s per task)."""

from __future__ import annotations

import numpy as np
import pytest

from polytask.learning.policies.base import ScriptedPolicy
from polytask.sim import registry
from polytask.sim.xarm_arm import MAX_STEP_M, WORKSPACE_HIGH, WORKSPACE_LOW, SimArm, action_to_delta

XARM_TASKS = ("xarm/reach", "xarm/push")


def test_registry_lists_xarm_tasks():
    assert registry.names("xarm/*")[:2] == list(XARM_TASKS)  # the paper's tasks follow (tests/test_xarm_tasks.py)


@pytest.mark.parametrize("name", XARM_TASKS)
def test_task_steps_with_pixels_and_state(name):
    task = registry.make(name, render=True)
    try:
        first = task.reset(seed=0)
        assert first.pixels.shape == (84, 84, 3) and first.pixels.dtype == np.uint8
        assert first.state.shape == (task.spec.state_dim,) == (10,)
        assert task.spec.action_dim == 4 and task.spec.horizon == 50
        assert task.spec.action_repeat == 1 and task.spec.n_step == 1
        assert first.pixels.std() > 5  # a real scene, not a blank buffer
        step = first
        for _ in range(3):
            step = task.step(np.array([1.0, 0.0, 0.0, 0.0]))
        assert not np.array_equal(step.pixels, first.pixels)  # the arm moved in the picture
        assert step.state[0] > first.state[0] + 0.05  # 3 steps of +x at most 2.5 cm each
        # goal slot of the state matches the drawn goal; a different seed draws a different goal
        goal0 = first.state[7:].copy()
        other = task.reset(seed=1)
        assert not np.allclose(goal0, other.state[7:])
        again = task.reset(seed=0)
        np.testing.assert_allclose(again.state, first.state, atol=1e-6)  # same seed, same episode start
    finally:
        task.close()


def test_action_scaling_moves_at_most_2_5_cm_per_step():
    task = registry.make("xarm/reach", render=False)
    try:
        task.reset(seed=0)
        arm = task.arm
        moves = []
        for direction in ([1, 0, 0], [0, -1, 0], [0, 0, 1], [1, 1, -1]):
            for _ in range(4):
                before_cmd, before = arm.target_position(), arm.ee_position()
                task.step(np.array([*direction, -1.0]) * 5.0)  # out-of-range actions are clipped to [-1, 1]
                cmd = arm.target_position() - before_cmd
                np.testing.assert_allclose(np.abs(cmd), np.abs(direction) * MAX_STEP_M, atol=1e-9)
                moves.append(np.abs(arm.ee_position() - before))
        moves = np.array(moves)
        assert moves.max() <= MAX_STEP_M + 1e-3  # the real arm never jumps further than one step's command
        assert moves.max() >= 0.02  # and it really follows (a weld that lagged badly would fail this)
    finally:
        task.close()
    np.testing.assert_allclose(action_to_delta(np.array([1.0, -0.5, 0.0, 1.0])), [0.025, -0.0125, 0.0])
    with pytest.raises(ValueError, match="finite"):
        action_to_delta(np.array([np.nan, 0.0, 0.0]))


def test_workspace_clamp_on_the_real_model():
    arm = SimArm("reach")
    try:
        arm.reset()
        for _ in range(60):  # 1.5 m of commands into the low corner
            arm.move(np.array([-MAX_STEP_M, -MAX_STEP_M, -MAX_STEP_M]))
        np.testing.assert_allclose(arm.target_position(), WORKSPACE_LOW)
        np.testing.assert_allclose(arm.ee_position(), WORKSPACE_LOW, atol=0.01)
        for _ in range(60):
            arm.move(np.array([MAX_STEP_M, MAX_STEP_M, MAX_STEP_M]))
        np.testing.assert_allclose(arm.target_position(), WORKSPACE_HIGH)
        np.testing.assert_allclose(arm.ee_position(), WORKSPACE_HIGH, atol=0.01)
        assert arm.joint_positions().shape == (len(arm.joint_names()),) == (8,)
        with pytest.raises(ValueError, match="delta_xyz_m"):
            arm.move(np.array([0.0, 0.0]))
    finally:
        arm.close()


def test_gripper_opens_and_closes():
    arm = SimArm("push")
    try:
        arm.reset(gripper=-1.0)
        assert arm.gripper_closure() < 0.1
        for _ in range(5):
            arm.move(np.zeros(3), gripper=1.0)
        assert arm.gripper_closure() > 0.9
    finally:
        arm.close()


@pytest.mark.parametrize("name", XARM_TASKS)
def test_scripted_expert_succeeds_on_10_seeds(name):
    task = registry.make(name, render=False)
    policy = ScriptedPolicy(task)
    wins = 0
    try:
        for seed in range(10):
            step = task.reset(seed=seed)
            assert not step.success and task.distance() > task.success_threshold  # never solved at the start
            policy.reset(step)
            while not step.done:
                step = task.step(policy.act(step))
            wins += task.episode_success()
    finally:
        task.close()
    assert wins >= 9, f"{name}: scripted expert succeeded on {wins}/10 seeds"


@pytest.mark.parametrize("name", XARM_TASKS)
def test_scripted_expert_reads_the_state_alone(name):
    """The expert's action for a copied Step (its state only) equals the live task's, from another task instance
    whose simulator is elsewhere: what the policy server and relabelling rely on."""
    import dataclasses

    live = registry.make(name, render=False)
    other = registry.make(name, render=False)
    try:
        step = live.reset(seed=3)
        other.reset(seed=7)  # a different episode: nothing of `live` is in its simulator
        checked = 0
        while not step.done:
            action = live.scripted_action(step)
            copied = dataclasses.replace(step, state=step.state.copy(), pixels=None, info={})
            np.testing.assert_array_equal(other.scripted_action(copied), action)
            checked += 1
            step = live.step(action)
        assert checked == live.spec.horizon
        # the state decides: the same state with another goal gives another action
        moved = step.state.copy()
        moved[7:9] += 0.1
        assert not np.array_equal(other.scripted_action(dataclasses.replace(step, state=moved)),
                                  live.scripted_action(step))
        with pytest.raises(ValueError, match="10-D state"):
            other.scripted_action(dataclasses.replace(step, state=step.state[:7]))
    finally:
        live.close()
        other.close()


def test_doing_nothing_does_not_succeed():
    """The success check is not trivially true: holding still fails every seed."""
    task = registry.make("xarm/push", render=False)
    try:
        for seed in range(3):
            step = task.reset(seed=seed)
            while not step.done:
                step = task.step(np.array([0.0, 0.0, 0.0, 1.0]))
            assert not task.episode_success()
    finally:
        task.close()


def test_score_is_judged_where_the_episode_ends():
    """Reaching the target and leaving again is not a success; ending on it is."""
    task = registry.make("xarm/reach", render=False)
    try:
        step = task.reset(seed=4)
        while not step.success:
            step = task.step(task.scripted_action(step))
        assert task.episode_success()
        for _ in range(4):  # 10 cm straight up, away from the target
            step = task.step(np.array([0.0, 0.0, 1.0, -1.0]))
        assert not step.success and not task.episode_success() and task.score() == 0.0
        while not step.done:
            step = task.step(task.scripted_action(step))
        assert task.episode_success()
    finally:
        task.close()
