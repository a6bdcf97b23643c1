"""THE topic table: every topic and service of the PolyTask graphs, with message type, QoS, publishers, subscribers.

Nodes create their publishers and subscriptions through `publisher()` / `subscription()` here, so a topic's type
and QoS are written once and a node cannot drift from the README. `docs/topics.md` is rendered from this table
(`python -m polytask.ros.topics > docs/topics.md`; a test checks it is current).

Names are relative (`camera/image_raw`) so that `-r __ns:=/arm2` moves a whole graph; in the default namespace they
resolve to `/camera/image_raw`. Remap single topics with `-r camera/image_raw:=/other`.

The action command is `sensor_msgs/JointState` (polytask.ros.action_msg): `position` holds one float vector in
[-1, 1]^d, the same action the task interface and the policies use, so the xArm, every simulated suite (4-D
Meta-World, 6-D DMC, 9-D Kitchen) and the policy server share one message; `name` holds one name per value
(`a0`, `a1`, ...); `header.stamp` is the stamp of the observation (camera frame) the action was computed from.
For the xArm d = 4: [dx, dy, dz, gripper]; dx..dz are scaled to at most 2.5 cm per control step by the driver,
gripper -1 = open, +1 = closed. A command answering a frame older than the receiver's `max_observation_age_s` (or
with a zero or future stamp) is refused and counted. An accepted command is applied at each control tick of the
driver while it is fresher than the driver's `command_timeout_s`; after that the driver holds the arm
(watchdog). Publishers therefore stream commands at the control rate; silence means stop.

QoS choices: our image publishers are RELIABLE (best-effort delivery lost about half the 640x480 frames on
Fast DDS's default transport), while image subscriptions are BEST_EFFORT: a best-effort reader matches reliable
and best-effort writers alike, and the standard ROS 2 camera drivers (realsense2_camera, usb_cam, v4l2_camera)
publish best effort (sensor-data QoS), which a RELIABLE reader never matches. Commands keep only the newest value;
status topics are TRANSIENT_LOCAL ("latched") so a node that joins late sees the current status at once. A pair
of endpoints whose QoS cannot match is reported by both sides (`incompatible QoS` warnings naming the topic,
the policy and the profile this table expects), never silent.

Status topics are also published as `diagnostic_msgs/DiagnosticArray` on `/diagnostics` (polytask.ros.diagnostics),
so rqt_robot_monitor and the diagnostic aggregator see every node that reports a status.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from typing import Any

# --- QoS profiles, by name (rclpy objects are built lazily so this module imports without ROS) -------------------
QOS_PROFILES: dict[str, dict[str, Any]] = {
    "sensor": {"reliability": "reliable", "durability": "volatile", "depth": 5,
               "why": "camera frames we publish: reliable (best-effort delivery drops large frames), shallow queue "
                      "(old frames are stale)"},
    "sensor_in": {"reliability": "best_effort", "durability": "volatile", "depth": 5,
                  "why": "camera frames we subscribe to: best effort matches reliable publishers and the standard "
                         "camera drivers' sensor-data (best-effort) publishers alike"},
    "state": {"reliability": "reliable", "durability": "volatile", "depth": 10,
              "why": "robot state, joystick, rewards: every sample matters, a short queue absorbs jitter"},
    "command": {"reliability": "reliable", "durability": "volatile", "depth": 1,
                "why": "action commands: only the newest command may ever be applied"},
    "latched": {"reliability": "reliable", "durability": "transient_local", "depth": 1,
                "why": "status and descriptions: a late subscriber gets the current value at once"},
}


@dataclass(frozen=True)
class Topic:
    key: str
    name: str  # relative; resolves to /<name> in the default namespace
    msg_type: str  # "pkg/msg/Type"
    qos: str  # a key of QOS_PROFILES: what our publishers offer (and our subscriptions request, unless sub_qos)
    publishers: tuple[str, ...]
    subscribers: tuple[str, ...]
    description: str
    sub_qos: str = ""  # a key of QOS_PROFILES for our subscriptions when it differs from `qos`

    @property
    def path(self) -> str:
        """The resolved name in the default namespace (what RViz configs and `ros2 topic echo` use)."""
        return self.name if self.name.startswith("/") else "/" + self.name

    @property
    def subscription_qos(self) -> str:
        return self.sub_qos or self.qos


@dataclass(frozen=True)
class Service:
    key: str
    name: str
    srv_type: str
    servers: tuple[str, ...]
    clients: tuple[str, ...]
    description: str

    @property
    def path(self) -> str:
        return "/" + self.name


_ROBOT = ("xarm_driver_node", "sim_bridge_node")
_STATUS_PUBLISHERS = ("camera_node", "joy_reader_node", "xarm_driver_node", "sim_bridge_node", "teleop_recorder_node",
                      "policy_server_node", "online_trainer_node", "offline_distiller_node")

TOPICS: dict[str, Topic] = {t.key: t for t in (
    Topic("image", "camera/image_raw", "sensor_msgs/msg/Image", "sensor",
          ("camera_node", "xarm_driver_node (sim backend)", "sim_bridge_node"),
          ("teleop_recorder_node", "policy_server_node", "online_trainer_node", "RViz"),
          "camera frames (rgb8 from our nodes; bgr8, mono8 also accepted)", sub_qos="sensor_in"),
    Topic("camera_info", "camera/camera_info", "sensor_msgs/msg/CameraInfo", "sensor", ("camera_node",),
          ("RViz (Camera display)", "image_proc"),
          "calibration of the published frames (K, D, P scaled to the crop and resize; all-zero K: uncalibrated), "
          "one per image with its stamp", sub_qos="sensor_in"),
    Topic("camera_status", "camera/status", "std_msgs/msg/String", "latched", ("camera_node",),
          ("monitor_node",), "JSON: connected, device, frames, reconnects, last_error"),
    Topic("joy", "joy", "sensor_msgs/msg/Joy", "state", ("joy_reader_node", "joy (ROS joy package)"),
          ("teleop_recorder_node",), "joystick axes and buttons"),
    Topic("joy_status", "joy/status", "std_msgs/msg/String", "latched", ("joy_reader_node",),
          ("monitor_node",), "JSON: connected, device, events, reconnects, last_error"),
    Topic("joint_states", "joint_states", "sensor_msgs/msg/JointState", "state", _ROBOT,
          ("monitor_node", "RViz (via robot_state_publisher)"),
          "arm joint positions (rad) and gripper"),
    Topic("ee_pose", "robot/ee_pose", "geometry_msgs/msg/PoseStamped", "state", _ROBOT,
          ("monitor_node", "policy_server_node"),
          "end-effector pose in the robot base frame (m); never published while the arm is not connected"),
    Topic("action", "robot/action", "sensor_msgs/msg/JointState", "command",
          ("teleop_recorder_node", "policy_server_node", "online_trainer_node"),
          ("xarm_driver_node", "sim_bridge_node", "monitor_node"),
          "action in [-1,1]^d in `position` (names a0..); header.stamp = the answered frame's stamp, refused when "
          "older than max_observation_age_s; xArm: [dx, dy, dz, gripper], at most 2.5 cm per step; silence -> "
          "watchdog stop"),
    Topic("robot_status", "robot/status", "std_msgs/msg/String", "latched", _ROBOT,
          ("teleop_recorder_node", "monitor_node", "online_trainer_node"),
          "JSON: state (connecting/ready/stale/error/estop/disconnected/shutdown), SDK error/warn codes, "
          "refused-command counters"),
    Topic("task_state", "robot/task_state", "std_msgs/msg/Float32MultiArray", "state", _ROBOT,
          ("teleop_recorder_node", "policy_server_node", "online_trainer_node"),
          "the task's state vector after the last step (Step.state; xArm: the 10-D [ee xyz, tool, achieved xyz, "
          "goal xyz], on the real arm its measured part); what teleop stores and state policies read"),
    Topic("reward", "robot/reward", "std_msgs/msg/Float32", "state", ("sim_bridge_node", "xarm_driver_node (sim "
          "backend)"), ("online_trainer_node", "monitor_node"), "the task's reward for the last step"),
    Topic("success", "robot/success", "std_msgs/msg/Bool", "state", ("sim_bridge_node", "xarm_driver_node (sim "
          "backend)"), ("teleop_recorder_node", "online_trainer_node", "monitor_node"),
          "the task's success signal for the last step (the teleop recorder's episode verdict)"),
    Topic("recorder_status", "recorder/status", "std_msgs/msg/String", "latched", ("teleop_recorder_node",),
          ("monitor_node",), "JSON: state (idle/recording/saving), task, episode index, steps, saved, errors"),
    Topic("policy_latency", "policy/latency_ms", "std_msgs/msg/Float32", "state", ("policy_server_node",),
          ("monitor_node",), "image receipt -> action publish latency of the last action (ms)"),
    Topic("policy_status", "policy/status", "std_msgs/msg/String", "latched", ("policy_server_node",),
          ("monitor_node",), "JSON: checkpoint, task, goal modality, rate"),
    Topic("training_progress", "training/progress", "std_msgs/msg/String", "latched",
          ("online_trainer_node", "offline_distiller_node"), ("monitor_node",),
          "JSON: job, step, total, episodes, losses/eval, checkpoint"),
    Topic("markers", "monitor/markers", "visualization_msgs/msg/MarkerArray", "state", ("monitor_node",),
          ("RViz",), "end effector, target, action arrow, task/status text, success counters"),
    Topic("robot_description", "robot_description", "std_msgs/msg/String", "latched",
          ("robot_state_publisher (where installed)", "monitor_node (otherwise)"), ("RViz (RobotModel)",),
          "URDF of the xArm (urdf/xarm7.urdf) in the teleop and xArm deploy graphs"),
    Topic("diagnostics", "/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", "state", _STATUS_PUBLISHERS,
          ("rqt_robot_monitor", "diagnostic_aggregator"),
          "every JSON status above as a DiagnosticStatus (level OK/WARN/ERROR, message, key/values); absolute name, "
          "as the diagnostics tools expect"),
)}

# Status topics whose every message is also published on /diagnostics.
DIAGNOSTIC_TOPICS = ("camera_status", "joy_status", "robot_status", "recorder_status", "policy_status",
                     "training_progress")

SERVICES: dict[str, Service] = {s.key: s for s in (
    Service("reset", "robot/reset", "std_srvs/srv/Trigger", _ROBOT,
            ("teleop_recorder_node", "online_trainer_node", "policy_server_node"),
            "reset the robot/task; the only way out of an SDK error or an e-stop"),
    Service("estop", "robot/estop", "std_srvs/srv/Trigger", _ROBOT, ("operator", "teleop_recorder_node"),
            "emergency stop from any state; commands are refused until reset"),
)}


def topic(key: str) -> Topic:
    if key not in TOPICS:
        raise KeyError(f"unknown topic key {key!r}; expected one of {sorted(TOPICS)}")
    return TOPICS[key]


def service(key: str) -> Service:
    if key not in SERVICES:
        raise KeyError(f"unknown service key {key!r}; expected one of {sorted(SERVICES)}")
    return SERVICES[key]


def load_type(type_name: str) -> type:
    """Import a message/service class from 'pkg/msg/Type' or 'pkg/srv/Type'."""
    parts = type_name.split("/")
    if len(parts) != 3 or parts[1] not in ("msg", "srv"):
        raise ValueError(f"type name {type_name!r} is malformed; expected 'pkg/msg/Type' or 'pkg/srv/Type'")
    module = importlib.import_module(f"{parts[0]}.{parts[1]}")
    return getattr(module, parts[2])


def qos_profile(name: str, depth: int | None = None):
    """The rclpy QoSProfile for a profile name of QOS_PROFILES (optionally with another queue depth)."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    if name not in QOS_PROFILES:
        raise KeyError(f"unknown QoS profile {name!r}; expected one of {sorted(QOS_PROFILES)}")
    spec = QOS_PROFILES[name]
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=int(depth or spec["depth"]),
        reliability=ReliabilityPolicy.RELIABLE if spec["reliability"] == "reliable" else ReliabilityPolicy.BEST_EFFORT,
        durability=(DurabilityPolicy.TRANSIENT_LOCAL if spec["durability"] == "transient_local"
                    else DurabilityPolicy.VOLATILE))


def _incompatible_qos_reporter(node: Any, t: Topic, side: str, profile: str):
    """An event callback that names the topic, the policy that cannot match and what this table expects."""

    def report(event) -> None:
        from rclpy.qos import qos_policy_name_from_kind

        policy = qos_policy_name_from_kind(event.last_policy_kind)
        peer = "publisher" if side == "subscription" else "subscription"
        node.get_logger().warning(
            f"incompatible QoS on {t.path}: a {peer} cannot match this {side} ({profile!r}: "
            f"{QOS_PROFILES[profile]['reliability']}, {QOS_PROFILES[profile]['durability']}); "
            f"policy {policy}; {event.total_count} such {peer}(s) so far; nothing flows between them")

    return report


def publisher(node: Any, key: str, depth: int | None = None):
    """Create a publisher for a topic of the table with its type and QoS (status topics also feed /diagnostics)."""
    from rclpy.event_handler import PublisherEventCallbacks

    t = topic(key)
    pub = node.create_publisher(load_type(t.msg_type), t.name, qos_profile(t.qos, depth),
                                event_callbacks=PublisherEventCallbacks(
                                    incompatible_qos=_incompatible_qos_reporter(node, t, "publisher", t.qos)))
    if key in DIAGNOSTIC_TOPICS:
        from polytask.ros.diagnostics import StatusPublisher

        return StatusPublisher(node, t, pub)
    return pub


def subscription(node: Any, key: str, callback, depth: int | None = None):
    """Create a subscription for a topic of the table with its type and QoS (`sub_qos` where the table has one)."""
    from rclpy.event_handler import SubscriptionEventCallbacks

    t = topic(key)
    profile = t.subscription_qos
    return node.create_subscription(load_type(t.msg_type), t.name, callback, qos_profile(profile, depth),
                                    event_callbacks=SubscriptionEventCallbacks(
                                        incompatible_qos=_incompatible_qos_reporter(node, t, "subscription",
                                                                                    profile)))


def service_server(node: Any, key: str, callback, callback_group: Any = None):
    s = service(key)
    return node.create_service(load_type(s.srv_type), s.name, callback, callback_group=callback_group)


def service_client(node: Any, key: str):
    s = service(key)
    return node.create_client(load_type(s.srv_type), s.name)


def markdown() -> str:
    """The topic and service tables as markdown (docs/topics.md and the README)."""
    lines = ["# PolyTask ROS 2 topics and services", "",
             "Generated from `ros2_ws/ros/topics.py` by `python -m polytask.ros.topics > docs/topics.md`; "
             "do not edit by hand.", "",
             "| Topic | Type | QoS | Publishers | Subscribers | What |",
             "|---|---|---|---|---|---|"]
    for t in TOPICS.values():
        qos = t.qos if not t.sub_qos else f"{t.qos} (subscribed {t.sub_qos})"
        lines.append(f"| `{t.path}` | `{t.msg_type}` | {qos} | {', '.join(t.publishers)} | "
                     f"{', '.join(t.subscribers)} | {t.description} |")
    lines += ["", "| Service | Type | Servers | Clients | What |", "|---|---|---|---|---|"]
    for s in SERVICES.values():
        lines.append(f"| `{s.path}` | `{s.srv_type}` | {', '.join(s.servers)} | {', '.join(s.clients)} | "
                     f"{s.description} |")
    lines += ["", "| QoS profile | Reliability | Durability | Depth | Why |", "|---|---|---|---|---|"]
    for name, q in QOS_PROFILES.items():
        lines.append(f"| {name} | {q['reliability']} | {q['durability']} | {q['depth']} | {q['why']} |")
    lines += ["", "Action command: `sensor_msgs/JointState`, values in [-1, 1] in `position`, one name per value "
              "(`a0`, `a1`, ...), `header.stamp` = the stamp of the camera frame (observation) the action was "
              "computed from. A command whose frame is older than the receiver's `max_observation_age_s` (xArm "
              "driver 0.5 s, sim bridge 5 s), or whose stamp is zero or in the future, is refused and counted "
              "(`commands.refused` in the robot status and on `/diagnostics`). xArm: `[dx, dy, dz, gripper]`, "
              "dx..dz scaled to at most 2.5 cm per control step, gripper -1 open / +1 closed. Commands are applied "
              "at each control tick while fresher than the driver's `command_timeout_s`; silence stops the arm.",
              "Status topics carry JSON text in `std_msgs/String`; each is also published as a "
              "`diagnostic_msgs/DiagnosticStatus` on `/diagnostics`.", ""]
    return "\n".join(lines)


README_BEGIN = "<!-- topics:begin (generated by polytask.ros.topics.readme_section) -->"
README_END = "<!-- topics:end -->"


def readme_section() -> str:
    """The README's topic table: markdown() without its title and generation note."""
    return "\n".join(markdown().split("\n")[4:])


def with_readme_section(text: str) -> str:
    """`text` (a README) with the part between README_BEGIN and README_END replaced by readme_section()."""
    if README_BEGIN not in text or README_END not in text:
        raise ValueError(f"README has no topic section markers; add the lines\n{README_BEGIN}\n{README_END}")
    head, rest = text.split(README_BEGIN, 1)
    _old, tail = rest.split(README_END, 1)
    return f"{head}{README_BEGIN}\n{readme_section()}{README_END}{tail}"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--write-readme":
        from pathlib import Path

        readme = Path(sys.argv[2])
        readme.write_text(with_readme_section(readme.read_text()))
    else:
        sys.stdout.write(markdown())
