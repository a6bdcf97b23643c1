"""The deploy graph for real: sim bridge + policy server + monitor as separate processes over DDS.

Started the way `polytask launch deploy` starts it (polytask.launch.graphs + polytask.launcher), on a Meta-World
task whose scripted expert the policy server runs from the received state. Checks: the server answers every camera
frame with one action stamped with that frame's stamp, and the bridge refuses nothing (no answer to a frame too
old); the arm moves and episodes succeed; every display topic of
rviz/polytask.rviz is published with the right type; a runtime checkpoint/task swap keeps the stream going; and a
fault: the policy server SIGKILLed -> the others keep running and the bridge's watchdog stops the arm; the launcher
restarts the server and the stream resumes. How fast (action rate against the camera's, server latency, time to
the watchdog) is measured by bench/bench_deploy_graph.py, not asserted here.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

pytestmark = pytest.mark.ros

TASK = "metaworld/button-press"
OTHER_TASK = "metaworld/button-press-topdown"
REPO = Path(__file__).resolve().parents[1]
WINDOW_S = 10.0


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    from polytask.launch.graphs import resolve
    from polytask.launcher import Launcher
    from polytask.ros.node_base import child_env
    from polytask.ros.testing import Probe, allocate_domain

    domain = allocate_domain(70, 99)
    log = open(tmp_path_factory.mktemp("deploy") / "graph.log", "w")
    nodes = resolve("deploy", [f"task:={TASK}", "rviz:=false"])
    launcher = Launcher(nodes, env=child_env(domain.id), respawn=True, respawn_delay=0.5, output=log)
    launcher.start()
    probe = Probe(domain.id, name="deploy_probe")
    from std_msgs.msg import Float32MultiArray

    state_msgs: list = []
    probe.node.create_subscription(Float32MultiArray, "robot/task_state", lambda m: state_msgs.append(
        (time.monotonic(), np.asarray(m.data, np.float32))), 50)
    probe.task_state = state_msgs
    for key in ("action", "image", "markers", "ee_pose", "robot_status", "policy_status", "policy_latency"):
        probe.subscribe(key)
    assert probe.spin_until(lambda: len(probe.received["robot/action"]) >= 30, 90), \
        f"no actions from the deploy graph; log: {log.name}"
    yield launcher, probe, log
    probe.close()
    launcher.shutdown()
    log.close()
    domain.release()


def latest_json(probe, name: str) -> dict:
    msgs = probe.received[name]
    return json.loads(msgs[-1][1].data) if msgs else {}


def test_policy_server_answers_every_frame(graph):
    launcher, probe, _ = graph
    before = latest_json(probe, "policy/status")
    acts, imgs = probe.received["robot/action"], probe.received["camera/image_raw"]
    a0, i0 = len(acts), len(imgs)
    probe.spin(WINDOW_S)
    probe.spin_until(lambda: latest_json(probe, "policy/status").get("frames", 0) > before.get("frames", 0), 2)
    n_actions, n_frames = len(acts) - a0, len(imgs) - i0
    assert n_frames > 0 and n_actions >= n_frames - 2, f"{n_frames} frames but {n_actions} actions"
    status = latest_json(probe, "policy/status")
    assert status["bad_frames"] == status["policy_errors"] == status["bad_actions"] == 0
    assert status["frames"] - status["actions"] <= 1, status  # one action per frame received
    assert status["frames"] > before.get("frames", 0) and status["latency_ms_p50"] is not None, status
    frame_stamps = {(m.header.stamp.sec, m.header.stamp.nanosec) for _, m in imgs}
    action_stamps = [(m.header.stamp.sec, m.header.stamp.nanosec) for _, m in acts[a0:]]
    assert action_stamps and all(s in frame_stamps for s in action_stamps), "an action not stamped by its frame"
    assert len(set(action_stamps)) >= len(action_stamps) - 2, "frames are stamped when published, one per tick"
    robot = latest_json(probe, "robot/status")
    assert robot["refused"] == robot["refused_old_observation"] == robot["refused_stamp"] == 0, robot
    assert robot["applied"] > 0, robot
    assert set(launcher.alive()) == {"sim_bridge", "policy_server", "monitor"}


def test_the_arm_moves_and_episodes_succeed(graph):
    _, probe, _ = graph
    states = probe.task_state
    hand = np.stack([s[:3] for _, s in states[-200:]])  # Meta-World state: hand xyz first
    assert np.ptp(hand, axis=0).max() > 0.02, "the hand did not move"
    poses = np.array([[m.pose.position.x, m.pose.position.y, m.pose.position.z]
                      for _, m in probe.received["robot/ee_pose"][-200:]])
    assert np.ptp(poses, axis=0).max() > 0.02, "robot/ee_pose did not follow the hand"
    assert probe.spin_until(lambda: (latest_json(probe, "robot/status").get("successes") or 0) >= 1, 30), \
        latest_json(probe, "robot/status")


def test_every_rviz_display_topic_is_published_with_its_type(graph):
    from polytask.ros import topics

    _, probe, _ = graph
    cfg = yaml.safe_load((REPO / "rviz" / "polytask.rviz").read_text())
    shown = [d["Topic"]["Value"] for d in cfg["Visualization Manager"]["Displays"] if "Topic" in d]
    by_path = {t.path: t for t in topics.TOPICS.values()}
    types = dict(probe.node.get_topic_names_and_types())
    for path in shown:
        key = by_path[path].key
        assert probe.wait_for_messages(key, 1, timeout=5), f"{path} shown in RViz but nothing published"
        assert by_path[path].msg_type in types.get(path, []), f"{path}: {types.get(path)}"
    markers = probe.received["monitor/markers"][-1][1].markers
    assert {m.ns for m in markers} == {"end_effector", "target", "action", "status"}
    text = next(m.text for m in markers if m.ns == "status")
    assert TASK in text and "Hz" in text


def make_student(path: Path) -> Path:
    """A randomly initialised unified state policy of TASK and OTHER_TASK (what `polytask distill` writes)."""
    from polytask.learning.goals import onehot
    from polytask.learning.nets.student import StudentNet, StudentSpec
    from polytask.learning.policies.student import save_student
    from polytask.sim import registry

    ids = {t: registry.spec(t).task_id for t in (TASK, OTHER_TASK)}
    student = StudentNet(StudentSpec(obs="state", obs_dim=39, action_dim=4, goal="onehot", goal_dim=16, hidden=64,
                                     layers=2))
    return save_student(path, student, {t: onehot(i, 16) for t, i in ids.items()}, [TASK, OTHER_TASK], step=0)


def test_task_and_checkpoint_swap_keep_the_stream(graph, tmp_path):
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    _, probe, _ = graph
    client = probe.node.create_client(SetParameters, "/policy_server/set_parameters")
    assert probe.spin_until(client.service_is_ready, 10)
    status = lambda: latest_json(probe, "policy/status")  # noqa: E731

    def set_param(name: str, value: str):
        req = SetParameters.Request(parameters=[Parameter(name=name, value=ParameterValue(
            type=ParameterType.PARAMETER_STRING, string_value=value))])
        fut = client.call_async(req)
        assert probe.spin_until(fut.done, 10)
        return fut.result().results[0]

    bad = set_param("task", "metaworld/no-such-task")
    assert not bad.successful and "no-such-task" in bad.reason
    assert not set_param("checkpoint", "/nonexistent/policy.safetensors").successful
    acts, imgs = probe.received["robot/action"], probe.received["camera/image_raw"]
    a0, i0 = len(acts), len(imgs)
    # swap to a unified checkpoint, then switch its task, while frames keep coming
    ckpt = make_student(tmp_path / "student.safetensors")
    assert set_param("checkpoint", str(ckpt)).successful
    assert probe.spin_until(lambda: status().get("kind") == "student", 30), status()
    assert set_param("task", OTHER_TASK).successful
    assert probe.spin_until(lambda: status().get("task") == OTHER_TASK, 30), status()
    probe.spin(1.0)
    # loading happens beside the stream: every camera frame of the swaps was answered (none dropped by a blocked
    # server), by the old policy until the new one was ready
    n_frames, n_actions = len(imgs) - i0, len(acts) - a0
    assert n_frames > 0 and n_actions >= n_frames - 2, f"{n_frames} frames but {n_actions} actions during the swaps"
    assert status()["policy_errors"] == 0 and status()["swaps"] >= 2
    # a task the unified policy was not taught: accepted by name, refused at load, the old policy keeps serving
    assert set_param("task", "metaworld/hammer").successful
    assert probe.spin_until(lambda: "not taught" in status().get("last_error", ""), 30), status()
    assert status()["task"] == OTHER_TASK
    n = len(acts)
    assert probe.spin_until(lambda: len(acts) - n >= 10, 20), "the old policy stopped answering"
    # back to the scripted expert of the bridge's task for the following tests
    assert set_param("checkpoint", "scripted").successful
    assert probe.spin_until(lambda: status().get("kind") == "scripted", 30)
    assert set_param("task", TASK).successful
    assert probe.spin_until(lambda: status().get("task") == TASK, 30)


def test_answers_to_old_or_unstamped_frames_are_refused_and_the_bridge_keeps_running(graph):
    """A commander answering a frame older than the bridge's max_observation_age_s (5 s), or not stamping at all,
    is refused and counted by reason; the bridge stays up and keeps applying the policy server's fresh answers."""
    from builtin_interfaces.msg import Time

    from polytask.ros.action_msg import action_message

    launcher, probe, _ = graph
    pub = probe.publisher("action")
    before = latest_json(probe, "robot/status")
    old = Time(sec=probe.node.get_clock().now().to_msg().sec - 10)
    for stamp, counter in ((old, "refused_old_observation"), (None, "refused_stamp")):
        def counted(c=counter) -> bool:
            return latest_json(probe, "robot/status")[c] > before[c]

        deadline = time.monotonic() + 15
        while not counted() and time.monotonic() < deadline:  # the server's stream may overwrite one (depth 1)
            pub.publish(action_message([0.0, 0.0, 0.0, 0.0], stamp))
            probe.spin(0.2)
        assert counted(), (counter, latest_json(probe, "robot/status"))
    after = latest_json(probe, "robot/status")
    assert after["refused"] >= before["refused"] + 2 and "sim_bridge" in launcher.alive()
    n = len(probe.task_state)
    assert probe.spin_until(lambda: len(probe.task_state) - n >= 10, 20), (
        "the bridge stopped applying fresh commands after the refusals"
    )


def test_killed_policy_server_stops_the_arm_and_rejoins(graph):
    launcher, probe, _ = graph
    status = probe.received["robot/status"]
    states = probe.task_state
    old_pid = launcher.procs["policy_server"].pid
    launcher.kill("policy_server", signal.SIGKILL)
    killed_at = time.monotonic()
    # the bridge's watchdog (command_timeout_s 0.5) stops the arm: state "stale", no more steps
    assert probe.spin_until(lambda: json.loads(status[-1][1].data)["state"] == "stale", 5), \
        json.loads(status[-1][1].data)
    stale_after = time.monotonic() - killed_at
    n = len(states)
    probe.spin(0.3)
    frozen = [s for t, s in states[n:]]
    assert not frozen, f"{len(frozen)} steps applied after the watchdog tripped"
    assert {"sim_bridge", "monitor"} <= set(launcher.alive())
    # the launcher restarts the server; it rejoins and the arm moves again
    assert probe.spin_until(lambda: json.loads(status[-1][1].data)["state"] == "running", 60)
    print(f"\nfault: policy_server SIGKILL -> bridge stale after {stale_after:.2f} s, "
          f"running again after {time.monotonic() - killed_at:.2f} s (respawn delay 0.5 s)")
    assert launcher.procs["policy_server"].pid != old_pid
    n = len(states)
    assert probe.spin_until(lambda: len(states) - n >= 20, 20), "the arm did not resume after the server restarted"


@pytest.mark.slow
def test_one_minute_without_drops(graph):
    _, probe, _ = graph
    acts, imgs = probe.received["robot/action"], probe.received["camera/image_raw"]
    before = latest_json(probe, "policy/status")
    a0, i0 = len(acts), len(imgs)
    probe.spin(60.0)
    assert len(acts) - a0 >= len(imgs) - i0 - 2
    after = latest_json(probe, "policy/status")
    frames, answered = after["frames"] - before["frames"], after["actions"] - before["actions"]
    assert frames > 0 and frames - answered <= 1, (frames, answered)
    assert after["bad_frames"] == after["policy_errors"] == after["bad_actions"] == 0


@pytest.mark.parametrize("victim", ["monitor", "sim_bridge"])
def test_any_killed_node_leaves_the_others_running_and_rejoins(graph, victim):
    """The monitor dying must not disturb control; the bridge (the arm itself) dying silences the commands — the
    server only answers frames — and both come back through the launcher's restart."""
    launcher, probe, _ = graph
    acts, markers = probe.received["robot/action"], probe.received["monitor/markers"]
    others = {"sim_bridge", "policy_server", "monitor"} - {victim}
    old_pid = launcher.procs[victim].pid
    launcher.kill(victim, signal.SIGKILL)
    t0 = time.monotonic()
    probe.spin(1.0)
    assert others <= set(launcher.alive())
    n_acts, n_markers = len(acts), len(markers)
    if victim == "monitor":  # control goes on (its rate is measured by bench/bench_deploy_graph.py)
        assert probe.spin_until(lambda: len(acts) - n_acts >= 25, 20), "control stopped when the monitor died"
    # back through the launcher: markers and the stream again, with a new process
    assert probe.spin_until(lambda: len(markers) > n_markers + 3 and len(acts) > n_acts + 30, 60), victim
    assert launcher.procs[victim].pid != old_pid
    if victim == "sim_bridge":  # no frames, no actions: the stream paused for at least the respawn delay
        stamps = np.array([t for t, _ in acts if t > t0 - 0.5])
        assert np.diff(stamps).max() > 0.5, "actions kept coming without a camera"
    print(f"\nfault: {victim} SIGKILL -> others alive, stream back {time.monotonic() - t0:.2f} s after the kill")
