"""The deploy graph runs a unified policy on the simulated xArm tasks (`polytask launch deploy robot:=xarm_sim
task:=xarm/<task> checkpoint:=<student>`): the xArm driver on the task's simulated backend, the policy server,
the monitor, as separate processes over DDS, started the way `polytask launch` starts them.

The policy is a tiny student distilled here, the way `polytask distill` does it, from the scripted experts of two
xArm tasks. Checks: the policy server serves the student conditioned on the launched task's goal (its registered
id), answers the driver's camera frames with actions, the driver accepts every one (nothing refused), the arm
moves, its actions follow the teacher's on the states the arm reports, and the task's success signal comes on
(the student learned the task, it is not noise). Speed is not asserted here (bench/bench_deploy_graph.py
measures the graph's pace).
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

pytestmark = pytest.mark.ros

TASKS = ("xarm/peg-green", "xarm/drawer-close-left")
DEPLOYED = TASKS[0]
SMALL = {
    "student.hidden": 128,
    "student.layers": 2,
    "lr": 1e-3,
    "log_every": 100,
    "checkpoint_every": 1000,
    "batch_size": 128,
}


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    import torch

    from polytask.learning.distill.pipeline import DistillJob, run_distillation
    from polytask.learning.policies.demos import record_demos

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("distil")
    stores = []
    for i, task in enumerate(TASKS):
        stores.append(root / task.replace("/", "_"))
        record_demos(task, 4, stores[-1], seed=100 * i, render=False, progress=False)
    job = DistillJob(experts=["scripted"], stores=stores, out=root / "out", overrides=SMALL, steps=600, eval_episodes=0)
    outcome = run_distillation(job, log=lambda _: None)
    assert outcome.tasks == list(TASKS)
    return outcome.checkpoint


def _latest(store) -> dict:
    return json.loads(store[-1][1].data) if store else {}


def test_deploy_graph_drives_the_simulated_xarm_with_a_distilled_student(student, tmp_path):
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float32MultiArray

    from polytask.launch.graphs import resolve
    from polytask.launcher import Launcher
    from polytask.ros.action_msg import read_action
    from polytask.ros.node_base import child_env
    from polytask.ros.testing import Probe, allocate_domain
    from polytask.sim import registry
    from polytask.sim.task import Step

    nodes = resolve(
        "deploy", ["robot:=xarm_sim", f"task:={DEPLOYED}", f"checkpoint:={student}", "rviz:=false", "rate:=10"]
    )
    ours = [n for n in nodes if not n.external]
    assert [n.name for n in ours] == ["xarm_driver", "policy_server", "monitor"]
    driver = next(n for n in ours if n.name == "xarm_driver")
    assert driver.parameters["backend"] == "sim" and driver.parameters["task"] == DEPLOYED
    log_path = tmp_path / "graph.log"
    with allocate_domain(70, 99) as domain, open(log_path, "w") as log:
        launcher = Launcher(nodes, env=child_env(domain.id), output=log)
        launcher.start()
        probe = Probe(domain.id, name="deploy_xarm_probe")
        pairs: list[tuple[np.ndarray, np.ndarray]] = []  # (state the policy saw last, the action it sent)
        state_box: dict[str, np.ndarray] = {}
        try:
            probe.node.create_subscription(
                Float32MultiArray,
                "robot/task_state",
                lambda m: state_box.__setitem__("s", np.asarray(m.data, np.float32)),
                10,
            )
            probe.node.create_subscription(
                JointState,  # the stamped action message: the values in `position`
                "robot/action",
                lambda m: (
                    pairs.append((state_box["s"].copy(), read_action(m)[0])) if "s" in state_box else None
                ),
                10,
            )
            robot, policy = probe.subscribe("robot_status"), probe.subscribe("policy_status")
            poses, successes = probe.subscribe("ee_pose"), probe.subscribe("success")
            assert probe.spin_until(lambda: len(pairs) >= 40, 120), (
                _latest(policy),
                _latest(robot),
                log_path.read_text()[-3000:],
            )
            # a fresh episode while every subscription is matched (the first episode may be over by now): the
            # driver draws the next initialisation, the server resets its policy on the status' new episode
            assert probe.call_trigger("reset").success
            reset_at = time.monotonic()
            pairs.clear()
            assert probe.spin_until(lambda: len(pairs) >= 40, 30), _latest(robot)
            probe.spin_until(lambda: _latest(robot).get("state") == "ready", 10)
            robot_status, policy_status = _latest(robot), _latest(policy)
            xyz = np.array(
                [[m.pose.position.x, m.pose.position.y, m.pose.position.z] for t, m in poses if t > reset_at]
            )
            alive = set(launcher.alive())
            succeeded = any(bool(m.data) for t, m in successes if t > reset_at)
        finally:
            probe.close()
            launcher.shutdown()
    spec = registry.spec(DEPLOYED)
    assert policy_status["kind"] == "student" and policy_status["task"] == DEPLOYED, policy_status
    assert policy_status["task_id"] == spec.task_id, "the server must condition on the launched task's goal"
    assert policy_status["bad_frames"] == policy_status["policy_errors"] == policy_status["bad_actions"] == 0
    assert robot_status["state"] == "ready" and robot_status["task"] == DEPLOYED and robot_status["episode"] == 2
    assert robot_status["commands"]["refused_total"] == 0 and robot_status["commands"]["applied"] >= 20
    assert alive == {"xarm_driver", "policy_server", "monitor"}
    assert np.ptp(xyz, axis=0).max() > 0.03, "the simulated arm did not move under the student"
    assert succeeded, "the student never completed the task (the driver's success signal stayed false)"
    assert robot_status["episodes"] == 2 and robot_status["successes"] >= 1, robot_status  # the monitor's counters
    # the student acts like its teacher on the states the arm reports (teacher: the task's scripted expert)
    teacher = registry.make(DEPLOYED, render=False)
    try:
        want = []
        for state, _action in pairs:
            step = Step(
                state=state, pixels=None, reward=0.0, success=False, terminal=False, truncated=False, goal=teacher.goal
            )
            want.append(np.asarray(teacher.scripted_action(step), np.float32)[:3])
    finally:
        teacher.close()
    want, got = np.stack(want), np.stack([a[:3] for _, a in pairs])
    error, baseline = np.mean(np.sum((got - want) ** 2, 1)), np.mean(np.sum(want**2, 1))  # baseline: act zero
    print(f"\nstudent on {DEPLOYED}: MSE to the teacher {error:.3f}, acting zero {baseline:.3f}, {len(pairs)} actions")
    assert baseline > 0.05 and error < 0.5 * baseline, f"student-teacher MSE {error:.3f} vs {baseline:.3f} for zero"
