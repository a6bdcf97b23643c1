"""The paper's xArm tasks in MuJoCo (sim/xarm_tasks): every task renders, steps, resets deterministically from a
seed, keeps the 2.5 cm/step rule and its own workspace box, and its scripted expert (reading the state alone)
succeeds where doing nothing fails. Default run: 2 seeds per expert (~2-4 s per task alone); the 10-seed sweep
is marked slow."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from polytask.sim import registry
from polytask.sim.xarm_arm import MAX_STEP_M
from polytask.sim.xarm_suite import STATE_DIM, TABLE_CENTRE, decode_xarm_state, xarm_state

PAPER_TASKS = (
    "xarm/peg-green",
    "xarm/peg-yellow",
    "xarm/peg-blue",
    "xarm/pour-left",
    "xarm/pour-right",
    "xarm/box-open-left",
    "xarm/box-open-right",
    "xarm/drawer-close-left",
    "xarm/drawer-close-right",
)
# the authors' robot episode lengths (their gym registrations)
HORIZONS = {"peg": 30, "pour": 30, "box": 40, "drawer-close-left": 20, "drawer-close-right": 25}


def horizon_of(name: str) -> int:
    short = name.split("/")[1]
    return HORIZONS.get(short, HORIZONS.get(short.split("-")[0]))


def run_episode(task, seed: int, policy) -> tuple[bool, list]:
    step = task.reset(seed=seed)
    assert not task.is_success(), f"{task.spec.name} seed {seed}: solved before the first step"
    states = [step.state]
    while not step.done:
        step = task.step(policy(step))
        states.append(step.state)
    return task.episode_success(), states


def test_registry_lists_the_paper_tasks_after_reach_and_push():
    names = registry.names("xarm/*")
    assert names == ["xarm/reach", "xarm/push", *PAPER_TASKS]
    ids = [registry.make(n, render=False).spec.task_id for n in ("xarm/reach", "xarm/push")]
    assert ids == [0, 1]


@pytest.fixture(scope="module", params=PAPER_TASKS)
def task(request):
    t = registry.make(request.param, render=True)
    yield t
    t.close()


def test_spec_render_and_motion(task):
    spec = task.spec
    assert (spec.state_dim, spec.action_dim, spec.action_repeat, spec.n_step) == (STATE_DIM, 4, 1, 1)
    assert spec.horizon == horizon_of(spec.name) and spec.suite == "xarm" and spec.language
    first = task.reset(seed=0)
    assert first.pixels.shape == (84, 84, 3) and first.pixels.dtype == np.uint8
    assert first.pixels.std() > 5  # a scene, not a blank buffer
    assert first.state.shape == (STATE_DIM,) and first.state.dtype == np.float32
    step = first
    for _ in range(3):  # away from every object: back towards the robot and up
        step = task.step(np.array([-1.0, 0.0, 1.0, 0.0]))
    assert not np.array_equal(step.pixels, first.pixels)  # the arm moved in the picture
    assert step.state[2] > first.state[2] + 0.02
    np.testing.assert_allclose(step.state[7:10], first.state[7:10], atol=1e-6)  # the goal stays put


def test_reset_is_deterministic_and_seeds_differ(task):
    task.render_pixels = False
    try:
        def episode(seed: int, steps: int = 12) -> np.ndarray:
            step = task.reset(seed=seed)
            states = [task.arm.data.qpos.copy()]  # the physics in float64, finer than the float32 state
            for _ in range(steps):
                step = task.step(task.scripted_action(step))
                states.append(task.arm.data.qpos.copy())
            return np.array(states)

        first = episode(5)
        a = task.reset(seed=5).state
        episode(6)  # an episode in between: the next reset must not remember it
        again = episode(5)
        b = task.reset(seed=5).state
        np.testing.assert_array_equal(a, b)  # same seed: same placement, same start
        np.testing.assert_array_equal(again, first)  # and the same physics from there, bit for bit
        c = task.reset(seed=6).state
        assert np.linalg.norm(c[7:10] - a[7:10]) > 1e-3  # another placement of the task's object
        assert np.linalg.norm(c[0:3] - a[0:3]) > 1e-3  # and another start of the arm
    finally:
        task.render_pixels = True


def test_action_rule_and_workspace_box(task):
    task.render_pixels = False
    try:
        task.reset(seed=0)
        arm = task.arm
        before = arm.target_position()
        task.step(np.array([5.0, -5.0, 5.0, 0.0]))  # clipped to [-1, 1] first
        np.testing.assert_allclose(np.abs(arm.target_position() - before), MAX_STEP_M, atol=1e-9)
        low, high = (np.array(b) for b in task.definition.workspace)
        assert np.all(low >= [1.25, 0.0, 0.575]) and np.all(high <= [1.80, 0.60, 0.85])
        commanded, moved = [], []
        for corner, bound in (([-1.0, -1.0, -1.0], low), ([1.0, 1.0, 1.0], high)):
            for _ in range(30):  # 75 cm of commands: far past the box on every axis
                target, ee = arm.target_position(), arm.ee_position()
                task.step(np.array([*corner, 0.0]))
                commanded.append(np.abs(arm.target_position() - target))
                moved.append(np.abs(arm.ee_position() - ee))
            np.testing.assert_allclose(arm.target_position(), bound)
            np.testing.assert_allclose(arm.ee_position(), bound, atol=0.015)
        assert np.max(commanded) <= MAX_STEP_M + 1e-9  # the rule itself: at most 2.5 cm per axis per step
        assert np.max(moved) <= 1.5 * MAX_STEP_M  # the arm follows without jumps (it may catch up some lag)
    finally:
        task.render_pixels = True


def test_scripted_expert_succeeds_and_doing_nothing_does_not(task):
    task.render_pixels = False
    try:
        for seed in (0, 1):
            ok, states = run_episode(task, seed, task.scripted_action)
            assert ok, f"{task.spec.name}: scripted expert failed seed {seed}"
            assert len(states) == task.spec.horizon + 1
        still, _ = run_episode(task, 0, lambda s: np.array([0.0, 0.0, 0.0, -1.0], dtype=np.float32))
        assert not still and not task.is_success()
    finally:
        task.render_pixels = True


def test_scripted_expert_reads_the_state_alone(task):
    """A copy of the Step with its state only, handed to another instance of the task (another episode in its
    simulator), gets the same action: what the policy server and offline relabelling rely on."""
    other = registry.make(task.spec.name, render=False)
    task.render_pixels = False
    try:
        other.reset(seed=9)
        step = task.reset(seed=2)
        for _ in range(12):
            action = task.scripted_action(step)
            copied = dataclasses.replace(step, state=step.state.copy(), pixels=None, info={})
            np.testing.assert_array_equal(other.scripted_action(copied), action)
            step = task.step(action)
        moved = step.state.copy()
        moved[7:9] += 0.08  # another goal: another action
        assert not np.array_equal(other.scripted_action(dataclasses.replace(step, state=moved)), action)
        with pytest.raises(ValueError, match="10-D state"):
            other.scripted_action(dataclasses.replace(step, state=step.state[:7]))
    finally:
        task.render_pixels = True
        other.close()


@pytest.mark.slow
@pytest.mark.parametrize("name", PAPER_TASKS)
def test_scripted_expert_succeeds_on_10_seeds(name):
    task = registry.make(name, render=False)
    try:
        wins = sum(run_episode(task, seed, task.scripted_action)[0] for seed in range(10))
    finally:
        task.close()
    assert wins >= 9, f"{name}: scripted expert succeeded on {wins}/10 seeds"


def test_state_layout_round_trip():
    ee, achieved, goal = np.array([1.4, 0.3, 0.7]), np.array([1.5, 0.2, 0.6]), np.array([1.6, 0.4, 0.55])
    state = xarm_state(ee, 0.25, achieved, goal)
    assert state.shape == (10,) and state.dtype == np.float32
    np.testing.assert_allclose(state[:3], ee - TABLE_CENTRE, atol=1e-6)
    back = decode_xarm_state(state)
    np.testing.assert_allclose(back.ee, ee, atol=1e-6)
    np.testing.assert_allclose(back.achieved, achieved, atol=1e-6)
    np.testing.assert_allclose(back.goal, goal, atol=1e-6)
    assert back.tool == pytest.approx(0.25)
    with pytest.raises(ValueError, match="finite"):
        xarm_state(ee, float("nan"), achieved, goal)
    with pytest.raises(ValueError, match="goal xyz"):
        xarm_state(ee, 0.0, achieved, goal[:2])
