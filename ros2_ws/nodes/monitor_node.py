"""Monitor: what an operator sees in RViz — markers for the arm, its target and its command, and a status text.

Listens to the robot (end-effector pose, status with target and success counters), the action stream, the policy
server (latency, status) and training/recording progress, and publishes one `visualization_msgs/MarkerArray` at a
fixed rate: end-effector sphere, target sphere, action arrow, and a text block (task, robot state, action rate,
latency, successes). It also latches `robot_description` (transient-local `std_msgs/String`, what RViz's
RobotModel reads) when a URDF file is given. On shutdown it logs (and optionally writes as JSON) a summary of
what it saw, which `make demo` prints. With `bag:=<folder>` it also records the session's topics into a rosbag2
MCAP bag (polytask.bag_recording) for replay in RViz or Foxglove.
"""

from __future__ import annotations

import json
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
from rclpy.node import Node

from polytask.bag_recording import DEFAULT_KEYS, BagError, BagRecorder
from polytask.learning.data.atomic import write_json
from polytask.ros import topics
from polytask.ros.action_msg import ActionMessageError, read_action
from polytask.ros.node_base import Param, ParamError, declare_params, run_node

PARAMS = (
    Param("task", "xarm/reach", "task name shown in the status text"),
    Param("frame_id", "world", "frame of the markers (the robot's base/world frame)"),
    Param("rate", 10.0, "marker publish rate in Hz", min=0.5, max=60.0),
    Param("robot_description_file", "", "URDF file to latch on robot_description (empty: none published)"),
    Param("publish_robot_description", True, "latch robot_description_file on robot_description; false where "
          "robot_state_publisher runs (it publishes that topic itself: two publishers would clash)"),
    Param("arrow_scale", 0.1, "metres of arrow per unit of action", min=0.0),
    Param("summary_file", "", "write a JSON summary of what was seen here on shutdown (empty: log only)"),
    Param("bag", "", "record the session's topics into this rosbag2 MCAP folder (empty: no recording)"),
    Param("bag_topics", list(DEFAULT_KEYS), "topic keys (polytask.ros.topics) recorded into the bag",
          type="string_array"),
)


class Monitor(Node):
    def __init__(self) -> None:
        super().__init__("monitor")
        self.p = declare_params(self, PARAMS)
        from visualization_msgs.msg import Marker, MarkerArray

        self._Marker, self._MarkerArray = Marker, MarkerArray
        self.ee: np.ndarray | None = None
        self.action: np.ndarray | None = None
        self.robot: dict[str, Any] = {}
        self.policy: dict[str, Any] = {}
        self.progress: dict[str, Any] = {}
        self.recorder: dict[str, Any] = {}
        self.latencies: deque[float] = deque(maxlen=3000)
        self.action_times: deque[float] = deque(maxlen=200)
        self.counts = {"actions": 0, "poses": 0, "successes_seen": 0, "markers": 0}
        self.started = time.monotonic()
        self.ee_path_m = 0.0

        self.pub_markers = topics.publisher(self, "markers")
        self.pub_description = (topics.publisher(self, "robot_description") if self.p.publish_robot_description
                                else None)
        self.subs = [
            topics.subscription(self, "ee_pose", self._on_pose),
            topics.subscription(self, "action", self._on_action),
            topics.subscription(self, "robot_status", lambda m: self._on_json(m, self.robot)),
            topics.subscription(self, "policy_status", lambda m: self._on_json(m, self.policy)),
            topics.subscription(self, "training_progress", lambda m: self._on_json(m, self.progress)),
            topics.subscription(self, "recorder_status", lambda m: self._on_json(m, self.recorder)),
            topics.subscription(self, "policy_latency", self._on_latency),
            topics.subscription(self, "success", self._on_success),
        ]
        self._publish_description()
        self.bag: BagRecorder | None = None
        if self.p.bag:
            try:
                self.bag = BagRecorder(self, self.p.bag, [k for k in self.p.bag_topics if k])
            except (BagError, KeyError) as err:
                raise ParamError(f"node 'monitor': parameter 'bag'/'bag_topics': {err}") from err
            self.get_logger().info(f"recording {len(self.bag.counts)} topics into {self.p.bag}")
        self.timer = self.create_timer(1.0 / self.p.rate, self._publish_markers)

    # --- inputs -----------------------------------------------------------------------------------------------------
    def _on_pose(self, msg) -> None:
        p = msg.pose.position
        ee = np.array([p.x, p.y, p.z], dtype=np.float64)
        if not np.all(np.isfinite(ee)):
            return
        if self.ee is not None:
            self.ee_path_m += float(np.linalg.norm(ee - self.ee))
        self.ee = ee
        self.counts["poses"] += 1

    def _on_action(self, msg) -> None:
        try:
            a, _stamp = read_action(msg)
        except ActionMessageError:
            return  # the robot refuses and counts it; the monitor only draws what could be applied
        if a.size and np.all(np.isfinite(a)):
            self.action = a
            self.counts["actions"] += 1
            self.action_times.append(time.monotonic())

    def _on_json(self, msg, into: dict[str, Any]) -> None:
        try:
            data = json.loads(msg.data)
        except ValueError:
            self.get_logger().warning("status message is not JSON; ignored", throttle_duration_sec=5.0)
            return
        if isinstance(data, dict):
            into.clear()
            into.update(data)

    def _on_latency(self, msg) -> None:
        if np.isfinite(msg.data):
            self.latencies.append(float(msg.data))

    def _on_success(self, msg) -> None:
        self.counts["successes_seen"] += int(bool(msg.data))

    def _publish_description(self) -> None:
        path = self.p.robot_description_file
        if not path or not self.p.publish_robot_description:
            return
        try:
            text = Path(path).read_text()
        except OSError as err:
            raise ParamError(f"node 'monitor': parameter 'robot_description_file' = {path!r}: {err}") from err
        if "<robot" not in text:
            raise ParamError(f"node 'monitor': parameter 'robot_description_file' = {path!r}: not a URDF "
                             f"(no <robot> element)")
        from std_msgs.msg import String

        self.pub_description.publish(String(data=text))

    # --- outputs ----------------------------------------------------------------------------------------------------
    def action_rate(self) -> float:
        t = [x for x in self.action_times if x > time.monotonic() - 2.0]
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        return {
            "task": self.robot.get("task", self.p.task), "seconds": round(time.monotonic() - self.started, 1),
            "actions": self.counts["actions"], "action_rate_hz": round(self.action_rate(), 2),
            "latency_ms_p50": round(lat[len(lat) // 2], 3) if lat else None,
            "latency_ms_p99": round(lat[min(len(lat) - 1, int(0.99 * len(lat)))], 3) if lat else None,
            "episodes": self.robot.get("episodes"), "successes": self.robot.get("successes"),
            "robot_state": self.robot.get("state"), "ee_path_m": round(self.ee_path_m, 4),
            "policy": self.policy.get("checkpoint"), "training": self.progress or None,
        }

    def _marker(self, mid: int, ns: str, kind: int, rgba: tuple[float, float, float, float]):
        m = self._Marker()
        m.header.frame_id = self.p.frame_id
        m.header.stamp = self.get_clock().now().to_msg()
        m.ns, m.id, m.type, m.action = ns, mid, kind, self._Marker.ADD
        m.pose.orientation.w = 1.0
        m.color.r, m.color.g, m.color.b, m.color.a = rgba
        return m

    def _publish_markers(self) -> None:
        from geometry_msgs.msg import Point

        M = self._Marker
        markers = []
        if self.ee is not None:
            m = self._marker(0, "end_effector", M.SPHERE, (0.1, 0.4, 1.0, 0.9))
            m.pose.position.x, m.pose.position.y, m.pose.position.z = self.ee
            m.scale.x = m.scale.y = m.scale.z = 0.04
            markers.append(m)
        target = self.robot.get("target")
        if isinstance(target, list) and len(target) == 3:
            m = self._marker(1, "target", M.SPHERE, (1.0, 0.1, 0.1, 0.7))
            m.pose.position.x, m.pose.position.y, m.pose.position.z = (float(v) for v in target)
            m.scale.x = m.scale.y = m.scale.z = 0.04
            markers.append(m)
        if self.ee is not None and self.action is not None and self.action.size >= 3:
            m = self._marker(2, "action", M.ARROW, (0.1, 0.9, 0.2, 0.9))
            end = self.ee + self.p.arrow_scale * self.action[:3]
            m.points = [Point(x=float(a), y=float(b), z=float(c)) for a, b, c in (self.ee, end)]
            m.scale.x, m.scale.y, m.scale.z = 0.01, 0.02, 0.02
            markers.append(m)
        m = self._marker(3, "status", M.TEXT_VIEW_FACING, (1.0, 1.0, 1.0, 1.0))
        base = self.ee if self.ee is not None else np.zeros(3)
        m.pose.position.x, m.pose.position.y, m.pose.position.z = base[0], base[1], base[2] + 0.25
        m.scale.z = 0.04
        m.text = self.status_text()
        markers.append(m)
        self.pub_markers.publish(self._MarkerArray(markers=markers))
        self.counts["markers"] += 1

    def status_text(self) -> str:
        s = self.summary()
        lines = [f"task: {s['task']}", f"robot: {s['robot_state'] or '-'}",
                 f"actions: {s['action_rate_hz']:.1f} Hz, latency p50 {s['latency_ms_p50'] or '-'} ms",
                 f"successes: {s['successes'] if s['successes'] is not None else '-'} / episodes "
                 f"{s['episodes'] if s['episodes'] is not None else '-'}"]
        if self.progress:
            lines.append(f"training: {self.progress.get('job', '')} step {self.progress.get('step', '-')}"
                         f"/{self.progress.get('total', '-')}")
        if self.recorder:
            lines.append(f"recorder: {self.recorder.get('state', '-')} saved {self.recorder.get('saved', '-')}")
        return "\n".join(lines)

    def close(self) -> None:
        if self.bag is not None:
            path = self.bag.close()
            self.get_logger().info(f"bag {path}: " + ", ".join(f"{k} {n}" for k, n in self.bag.counts.items() if n))
        summary = self.summary()
        self.get_logger().info("monitor summary: " + json.dumps(summary, sort_keys=True))
        if self.p.summary_file:
            write_json(self.p.summary_file, summary, indent=1, sort_keys=True)


def main(args: list[str] | None = None) -> int:
    return run_node(Monitor, args)


if __name__ == "__main__":
    raise SystemExit(main())
