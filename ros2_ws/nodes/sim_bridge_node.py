"""Sim bridge: any registry task exposed as a robot, on the same topics and services as the xArm driver.

Why: the policy server, teleop recorder, online trainer and monitor should not know whether the arm is real.
This node owns one `Task` and speaks the robot's contract (polytask.ros.topics): it publishes the camera frame
(`camera/image_raw`, rgb8) at `rate`, takes `robot/action` commands, and serves `robot/reset` and `robot/estop`;
on top of the xArm path it publishes `robot/reward`, `robot/success` and the task's state vector
(`robot/task_state`, for state-conditioned policies).

Stepping rule: each received command is applied once, at the next tick (a simulator should not repeat a command
the way a servo loop does, or a slow learner would get many steps per decision). A command older than
`command_timeout_s` is never applied, and when none has arrived for that long the bridge reports `stale` and the
arm holds: that is the watchdog that stops the arm when its commander dies. NaN/inf or wrong-length commands are
refused and counted; the arm holds. Frames keep streaming while the arm holds, so a restarted commander rejoins.

Stamps: a command carries the stamp of the frame it answers (polytask.ros.action_msg). One answering a frame
older than `max_observation_age_s`, or with a zero or future stamp, is refused and counted (the same rule as the
xArm driver's, polytask.robot.safety.observation_verdict, on this node's clock). Each published frame is stamped
when it is published: the simulated world stands still between steps, so a frame re-sent while the arm holds
still shows the world as it is. The default limit is looser than the real arm's because of that standstill: an
online learner may update for a while between an observation and its action without the world moving.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from rclpy.node import Node

from polytask.robot.safety import Observed, observation_verdict
from polytask.ros import topics
from polytask.ros.action_msg import ActionMessageError, now_seconds, read_action
from polytask.ros.image_conversion import numpy_to_image
from polytask.ros.node_base import Param, ParamError, declare_params, json_string, run_node

PARAMS = (
    Param("task", "xarm/reach", "registry task to expose (e.g. metaworld/button-press, xarm/reach)"),
    Param("rate", 30.0, "tick rate in Hz: camera frames are published and one pending command applied per tick",
          min=0.5, max=240.0),
    Param("seed", 0, "seed of the first episode (later episodes use seed+1, seed+2, ...)", min=0),
    Param("quality", "fast", "render quality", choices=("fast", "default")),
    Param("command_timeout_s", 0.5, "watchdog: no command for this long -> stale, the arm holds", min=0.01),
    Param("max_observation_age_s", 5.0, "a command answering a frame older than this (its header.stamp, on this "
          "node's clock) is refused", min=0.01, max=600.0),
    Param("auto_reset", True, "start a new episode when one ends"),
    Param("frame_id", "camera", "frame_id of the camera images"),
    Param("world_frame", "world", "frame_id of the end-effector pose"),
    Param("status_period_s", 1.0, "period of the status heartbeat", min=0.05),
    Param("ee_state_index", -1, "first of 3 state entries holding the end-effector xyz; -1: from `state_layouts`, "
          "else the task's own end effector (step info 'ee' or task.arm), if any", min=-1),
    Param("target_state_index", -1, "first of 3 state entries holding the target xyz; -1: from `state_layouts`, "
          "else the task's goal_pos attribute, if any", min=-1),
    Param("state_layouts", ["metaworld:0:36"], "per suite `suite:ee_index:target_index` (-1: none): where the "
          "monitor's end-effector and target markers come from in that suite's state vector", type="string_array"),
)


def parse_state_layouts(items: list[str]) -> dict[str, tuple[int, int]]:
    """["metaworld:0:36"] -> {"metaworld": (0, 36)}; a malformed item is a ParamError naming it."""
    out = {}
    for item in items:
        if not item.strip():
            continue
        parts = item.split(":")
        try:
            suite, ee, target = parts[0], int(parts[1]), int(parts[2])
            if len(parts) != 3 or not suite or ee < -1 or target < -1:
                raise ValueError
        except (ValueError, IndexError):
            raise ParamError(f"node 'sim_bridge': parameter 'state_layouts' item {item!r}: expected "
                             f"suite:ee_index:target_index with indices >= -1") from None
        out[suite] = (ee, target)
    return out


class SimBridge(Node):
    def __init__(self) -> None:
        super().__init__("sim_bridge")
        self.p = declare_params(self, PARAMS)
        from std_msgs.msg import Bool, Float32

        from polytask.sim import registry

        self._Float32, self._Bool = Float32, Bool
        self._StateMsg = topics.load_type(topics.topic("task_state").msg_type)
        try:
            registry.entry(self.p.task)
        except KeyError as err:
            raise ParamError(f"node 'sim_bridge': parameter 'task' = {self.p.task!r}: {err.args[0]}") from err
        self.task = registry.make(self.p.task, render=True, quality=self.p.quality)
        self.spec = self.task.spec

        self.pub_image = topics.publisher(self, "image")
        self.pub_pose = topics.publisher(self, "ee_pose")
        self.pub_status = topics.publisher(self, "robot_status")
        self.pub_reward = topics.publisher(self, "reward")
        self.pub_success = topics.publisher(self, "success")
        self.pub_state = topics.publisher(self, "task_state")
        self.sub_action = topics.subscription(self, "action", self._on_action)
        self.srv_reset = topics.service_server(self, "reset", self._on_reset)
        self.srv_estop = topics.service_server(self, "estop", self._on_estop)

        self.mode = "ready"  # ready (no command yet) / running / stale / estop / error
        self.pending: tuple[float, np.ndarray] | None = None
        self.last_command_t: float | None = None
        self.counters = {"steps": 0, "episodes": 0, "successes": 0, "refused": 0, "refused_stamp": 0,
                         "refused_old_observation": 0, "applied": 0, "frames": 0}
        self.last_error = ""
        self.episode_seed = int(self.p.seed)
        self._target: np.ndarray | None = None
        self.ee_index, self.target_index = self.p.ee_state_index, self.p.target_state_index
        layout = parse_state_layouts(self.p.state_layouts).get(self.spec.suite)
        if layout is not None:
            self.ee_index = self.ee_index if self.ee_index >= 0 else layout[0]
            self.target_index = self.target_index if self.target_index >= 0 else layout[1]
        if self.ee_index + 3 > self.spec.state_dim or self.target_index + 3 > self.spec.state_dim:
            raise ParamError(f"node 'sim_bridge': ee_state_index/target_state_index must leave 3 entries in the "
                             f"{self.spec.state_dim}-D state of {self.spec.name}")
        self._new_episode()
        self.timer = self.create_timer(1.0 / self.p.rate, self._tick)
        self.status_timer = self.create_timer(self.p.status_period_s, self._publish_status)
        self.get_logger().info(f"bridging {self.spec.name} at {self.p.rate:.1f} Hz "
                               f"(action {self.spec.action_dim}-D, state {self.spec.state_dim}-D)")

    # --- commands -------------------------------------------------------------------------------------------------
    def _on_action(self, msg) -> None:
        from polytask.sim.task import validate_action

        try:
            values, stamp_s = read_action(msg)
            action = validate_action(values, self.spec)
        except (ActionMessageError, ValueError) as err:
            self._refuse(str(err))
            return
        verdict = observation_verdict(Observed(stamp_s, now_seconds(self)), self.p.max_observation_age_s)
        if not verdict.accepted:
            self.counters[f"refused_{verdict.reason}"] += 1
            self._refuse(f"{verdict.reason}: {verdict.detail}")
            return
        now = time.monotonic()
        self.last_command_t = now
        if self.mode != "estop":
            self.pending = (now, action)

    def _refuse(self, why: str) -> None:
        self.counters["refused"] += 1
        self.last_error = why
        self.get_logger().warning(f"refused command: {why}", throttle_duration_sec=2.0)

    def _on_reset(self, _req, resp):
        self._new_episode()
        self.mode = "ready"
        self.pending = None
        resp.success, resp.message = True, f"reset {self.spec.name}, episode {self.counters['episodes']}"
        self._publish_status()
        return resp

    def _on_estop(self, _req, resp):
        self.mode = "estop"
        self.pending = None
        resp.success, resp.message = True, "e-stop: commands refused until robot/reset"
        self._publish_status()
        return resp

    # --- the loop ---------------------------------------------------------------------------------------------------
    def _tick(self) -> None:
        now = time.monotonic()
        previous = self.mode
        if self.mode not in ("estop", "error"):
            fresh = self.pending is not None and now - self.pending[0] <= self.p.command_timeout_s
            if fresh:
                self._apply(self.pending[1])
                self.mode = "running"
            elif self.last_command_t is not None and now - self.last_command_t > self.p.command_timeout_s:
                self.mode = "stale"  # watchdog: the commander went silent; the arm holds
            self.pending = None
        self._publish_frame()
        if self.mode != previous:
            self.get_logger().info(f"state {previous} -> {self.mode}")
            self._publish_status()

    def _apply(self, action: np.ndarray) -> None:
        try:
            step = self.task.step(action)
        except Exception as err:  # a simulator failure must be visible, not kill the node
            self.mode = "error"
            self.last_error = f"{type(err).__name__}: {err}"
            self.get_logger().error(f"task step failed: {self.last_error}")
            return
        self.step = step
        self.counters["steps"] += 1
        self.counters["applied"] += 1
        self._publish_step(step)
        if step.done:
            self.counters["successes"] += int(self.task.episode_success())
            if self.p.auto_reset:
                self._new_episode()

    def _new_episode(self) -> None:
        self.step = self.task.reset(seed=self.episode_seed)
        self.episode_seed += 1
        self.counters["episodes"] += 1
        self._publish_step(self.step, with_reward=False)

    # --- publishing -------------------------------------------------------------------------------------------------
    def _publish_step(self, step, with_reward: bool = True) -> None:
        msg = self._StateMsg()
        msg.data = np.asarray(step.state, dtype=np.float32).tolist()
        self.pub_state.publish(msg)
        if with_reward:
            self.pub_reward.publish(self._Float32(data=float(step.reward)))
            self.pub_success.publish(self._Bool(data=bool(step.success)))
        ee = self._vector(step.state, self.ee_index)
        if ee is None and self.ee_index < 0:
            ee = step.info.get("ee") if isinstance(step.info, dict) else None
            if ee is None:
                ee = getattr(getattr(self.task, "arm", None), "ee_position", lambda: None)()
        self._target = self._vector(step.state, self.target_index)
        if self._target is None and self.target_index < 0:
            goal = getattr(self.task, "goal_pos", None)
            self._target = None if goal is None else np.asarray(goal, dtype=np.float64).reshape(-1)[:3]
        if ee is not None:
            from geometry_msgs.msg import PoseStamped

            pose = PoseStamped()
            pose.header.stamp = self.get_clock().now().to_msg()
            pose.header.frame_id = self.p.world_frame
            pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = (float(v) for v in ee[:3])
            pose.pose.orientation.w = 1.0
            self.pub_pose.publish(pose)
        self._frame = step.pixels

    @staticmethod
    def _vector(state: np.ndarray, index: int) -> np.ndarray | None:
        if index < 0 or index + 3 > len(state):
            return None
        return np.asarray(state[index:index + 3], dtype=np.float64)

    def _publish_frame(self) -> None:
        if self._frame is None:
            return
        self.pub_image.publish(numpy_to_image(np.ascontiguousarray(self._frame), "rgb8", frame_id=self.p.frame_id,
                                              stamp=self.get_clock().now().to_msg()))
        self.counters["frames"] += 1

    def status(self) -> dict[str, Any]:
        goal = self._target
        return {"state": self.mode, "task": self.spec.name, "backend": "sim_bridge", "t": self.task.t,
                "episode": self.counters["episodes"], **self.counters, "last_error": self.last_error,
                "target": None if goal is None else [float(v) for v in goal],
                "action_dim": self.spec.action_dim, "state_dim": self.spec.state_dim}

    def _publish_status(self) -> None:
        self.pub_status.publish(json_string(self.status()))

    def close(self) -> None:
        self.mode = "stopped"
        self._publish_status()
        self.task.close()


def main(args: list[str] | None = None) -> int:
    return run_node(SimBridge, args)


if __name__ == "__main__":
    raise SystemExit(main())
