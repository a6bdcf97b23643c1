"""xArm driver: the action topic in, JointState + end-effector pose (+ sim camera) out, e-stop and reset services.

Backends: `real` (xarm-python-sdk, polytask.robot.xarm_real) or `sim` (polytask.robot.xarm_sim: the registered
xArm task `task` in MuJoCo, its arm, objects and camera; every control tick is one step of that task).
Every command passes polytask.robot.safety.CommandGuard (refuse NaN/inf, wrong length, out of [-1, 1]; refuse a
command whose observation stamp (header.stamp, polytask.ros.action_msg) is older than `max_observation_age_s`,
zero or in the future, judged on this node's clock; scale to <= max_step_m; clamp to the workspace; watchdog on
stale commands); the state machine is polytask.robot.controller.ArmController. This file only wires it to ROS.

Besides the arm's joint states and end-effector pose, every tick publishes `robot/task_state`, the 10-D xArm task
state `[ee xyz, tool, achieved xyz, goal xyz]` (polytask.sim.xarm_suite.xarm_state) that the teleop recorder
stores and state policies read: on the sim backend the task's own state with `robot/reward` and `robot/success`;
on the real arm, where nothing measures the objects, the arm's own part of it (polytask.robot.backend.arm_task_state).

Threads (real backend): the reset and e-stop services run in their own callback groups on a
MultiThreadedExecutor, so a reset that waits on the SDK (a connect to a controller that accepts TCP and never
answers takes up to `connect_timeout_s`) never stops the control timer: ticks and the status keep coming, and an
e-stop is answered during the reset (docs/reliability-ros-graph.md). The sim backend stays single-threaded: its
resets are instant and its camera's EGL context belongs to the thread that created it.

    python -m polytask.nodes.xarm_driver_node --ros-args --params-file config/xarm_driver.yaml -p backend:=sim \
        -p task:=xarm/peg-green
"""

from __future__ import annotations

import sys

import numpy as np
from geometry_msgs.msg import PoseStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.duration import Duration
from rclpy.node import Node
from sensor_msgs.msg import JointState

from polytask.robot.backend import ArmBackend, ArmReading, arm_task_state
from polytask.robot.controller import ArmController
from polytask.robot.safety import GuardConfig, Observed
from polytask.ros import topics
from polytask.ros.action_msg import ActionMessageError, now_seconds, read_action
from polytask.ros.image_conversion import numpy_to_image
from polytask.ros.node_base import Param, ParamError, declare_params, json_string, run_node

PARAMS = (
    Param("backend", "sim", "which arm: 'real' (xarm-python-sdk) or 'sim' (MuJoCo SimArm)", choices=("real", "sim")),
    Param("rate_hz", 10.0, "control rate: one command step, one state message per tick", min=0.5, max=200.0),
    Param("command_timeout_s", 0.5, "watchdog: a command older than this is stale and the arm holds", min=0.01,
          max=10.0),
    Param("max_observation_age_s", 0.5, "a command computed from a camera frame older than this (its header.stamp, "
          "on this node's clock) is refused and the arm holds", min=0.01, max=10.0),
    Param("max_step_m", 0.025, "largest end-effector displacement per axis and tick for an action of +-1 (m)",
          min=0.001, max=0.05),
    Param("action_dim", 4, "values per command: [dx, dy, dz, gripper]", min=3, max=4),
    Param("workspace_low", [], "workspace box lower corner xyz (m, backend frame); [] = backend default",
          type="double_array"),
    Param("workspace_high", [], "workspace box upper corner xyz (m, backend frame); [] = backend default",
          type="double_array"),
    Param("ip", "", "real backend: controller IP address (required for backend real)"),
    Param("connect_timeout_s", 5.0, "real backend: give up connecting after this many seconds", min=0.1, max=120.0),
    Param("speed_mm_s", 250.0, "real backend: Cartesian speed of the interpolated servo stream (mm/s); "
          "rate_hz x 1000 x max_step_m reaches full steps", min=1.0, max=500.0),
    Param("servo_hz", 100.0, "real backend: servo setpoints per second between control ticks (0 = one jump per "
          "tick, not recommended: servo mode faults on large jumps)", min=0.0, max=1000.0),
    Param("use_gripper", False, "real backend: drive the gripper from the 4th action value"),
    Param("task", "xarm/reach", "registered xArm task (`polytask tasks 'xarm/*'`): the sim backend simulates it "
          "(arm, objects, camera, workspace box, success rule); names the task state on both backends"),
    Param("seed", 0, "sim backend: seed of the first episode (each reset draws the next: seed+1, seed+2, ...)", min=0),
    Param("publish_image", True, "sim backend: publish the simulated camera on camera/image_raw"),
    Param("image_width", 84, "sim backend: camera width (px)", min=8, max=640),
    Param("image_height", 84, "sim backend: camera height (px)", min=8, max=480),
    Param("status_period_s", 1.0, "republish the status at least this often (s); changes publish at once",
          min=0.05, max=60.0),
    Param("inject_error_code", 0, "sim backend fault drill: settable at run time; non-zero makes the simulated "
          "controller report this error code (recovery through the reset service)", min=0, max=1000),
)


class XArmDriverNode(Node):
    def __init__(self) -> None:
        super().__init__("xarm_driver")
        self.p = declare_params(self, PARAMS)
        self.backend = self._make_backend()
        self.executor_threads = 3 if self.p.backend == "real" else 1  # read by run_node
        low, high = self._workspace()
        guard = GuardConfig(action_dim=self.p.action_dim, max_step_m=self.p.max_step_m, workspace_low=tuple(low),
                            workspace_high=tuple(high), command_timeout_s=self.p.command_timeout_s,
                            max_observation_age_s=self.p.max_observation_age_s)
        self.controller = ArmController(self.backend, guard)
        self.pub_joints = topics.publisher(self, "joint_states")
        self.pub_pose = topics.publisher(self, "ee_pose")
        self.pub_status = topics.publisher(self, "robot_status")
        self.pub_task_state = topics.publisher(self, "task_state")
        self.pub_reward = topics.publisher(self, "reward") if self.p.backend == "sim" else None
        self.pub_success = topics.publisher(self, "success") if self.p.backend == "sim" else None
        self.pub_image = (topics.publisher(self, "image")
                          if self.p.backend == "sim" and self.p.publish_image else None)
        self.sub_action = topics.subscription(self, "action", self._on_action)
        # each service in its own group: neither blocks the timer (default group) nor the other service
        self.srv_estop = topics.service_server(self, "estop", self._on_estop,
                                               callback_group=MutuallyExclusiveCallbackGroup())
        self.srv_reset = topics.service_server(self, "reset", self._on_reset,
                                               callback_group=MutuallyExclusiveCallbackGroup())
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._last_status = ""
        self._last_status_time = 0.0
        self._refusal_log_time = 0.0
        self.controller.start_connect()
        self._publish_status(force=True)
        self.timer = self.create_timer(1.0 / self.p.rate_hz, self._tick)
        self.get_logger().info(f"xArm driver ({self.p.backend}) at {self.p.rate_hz:g} Hz, workspace {low} .. {high}")

    def _make_backend(self) -> ArmBackend:
        from polytask.robot.xarm_sim import XArmSim, check_xarm_task

        try:
            check_xarm_task(self.p.task)
        except ValueError as err:
            raise ParamError(f"node 'xarm_driver': parameter 'task': {err}") from err
        if self.p.backend == "real":
            from polytask.robot.xarm_real import XArmReal

            if not self.p.ip:
                raise ParamError("node 'xarm_driver': parameter 'ip' is empty; backend 'real' needs the "
                                 "controller's IP address")
            return XArmReal(self.p.ip, self.p.connect_timeout_s, speed_mm_s=self.p.speed_mm_s,
                            use_gripper=self.p.use_gripper, servo_hz=self.p.servo_hz)
        return XArmSim(self.p.task, seed=self.p.seed)

    def _workspace(self) -> tuple[np.ndarray, np.ndarray]:
        low, high = self.backend.default_workspace()
        for name, current in (("workspace_low", low), ("workspace_high", high)):
            value = getattr(self.p, name)
            if not value:
                continue
            if len(value) != 3:
                raise ParamError(f"node 'xarm_driver': parameter {name!r} = {value}: expected 3 values (x, y, z in m) "
                                 "or [] for the backend default")
            current[:] = value
        if np.any(low >= high):
            raise ParamError(f"node 'xarm_driver': workspace_low {low.tolist()} must be below workspace_high "
                             f"{high.tolist()} on every axis")
        return low, high

    # --- callbacks --------------------------------------------------------------------------------------------------
    def _on_action(self, msg) -> None:
        try:
            values, stamp_s = read_action(msg)
        except ActionMessageError as err:
            verdict = self.controller.refuse("malformed", str(err))
        else:
            verdict = self.controller.submit(values, Observed(stamp_s, now_seconds(self)))
        if not verdict.accepted:
            if verdict.reason == "locked" and self.controller.state == "connecting":
                return  # publishers that start before the arm is up are expected, not worth a warning
            now = self.get_clock().now().nanoseconds * 1e-9
            if now - self._refusal_log_time > 1.0:  # throttle: a flood of bad commands must not flood the log
                self._refusal_log_time = now
                self.get_logger().warn(f"refused command ({verdict.reason}): {verdict.detail}")
            self._publish_status(force=False)

    def _on_estop(self, _request, response):
        response.message = self.controller.estop()
        response.success = True
        self.get_logger().error("EMERGENCY STOP")
        self._publish_status(force=True)
        return response

    def _on_reset(self, _request, response):
        response.success, response.message = self.controller.reset()
        self.get_logger().info(response.message)
        self._publish_status(force=True)
        return response

    def _on_set_parameters(self, params) -> SetParametersResult:
        for p in params:
            if p.name == "inject_error_code":
                if self.p.backend != "sim":
                    return SetParametersResult(successful=False, reason="fault injection exists only on the sim "
                                                                        "backend")
                if not isinstance(p.value, int) or p.value < 0:
                    return SetParametersResult(successful=False, reason="inject_error_code: expected an int >= 0")
                self.backend.inject_fault(error_code=p.value)
            elif p.name not in ("use_sim_time",):
                return SetParametersResult(successful=False, reason=f"parameter {p.name!r} is fixed at start-up")
        return SetParametersResult(successful=True)

    def _tick(self) -> None:
        reading = self.controller.tick()
        if reading is not None:
            self._publish_reading(reading)
        if self.pub_image is not None and self.backend.connected:
            frame = self.backend.render((self.p.image_height, self.p.image_width))
            if frame is not None:
                self.pub_image.publish(numpy_to_image(frame, "rgb8", frame_id="camera0",
                                                      stamp=self.get_clock().now().to_msg()))
        self._publish_status(force=False)

    def _publish_reading(self, reading: ArmReading) -> None:
        stamp = self.get_clock().now().to_msg()
        js = JointState()
        js.header.stamp = stamp
        js.name = list(reading.joint_names)
        js.position = [float(v) for v in reading.joint_positions]
        self.pub_joints.publish(js)
        pose = PoseStamped()
        pose.header.stamp = stamp
        pose.header.frame_id = self.backend.frame_id
        pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = (float(v) for v in reading.ee_xyz)
        q = reading.ee_quat_xyzw
        pose.pose.orientation.x, pose.pose.orientation.y = float(q[0]), float(q[1])
        pose.pose.orientation.z, pose.pose.orientation.w = float(q[2]), float(q[3])
        self.pub_pose.publish(pose)
        feedback = self.backend.feedback()
        state = arm_task_state(reading) if feedback is None else feedback.state
        self.pub_task_state.publish(topics.load_type(topics.topic("task_state").msg_type)(
            data=[float(v) for v in state]))
        if feedback is not None and self.pub_reward is not None:
            self.pub_reward.publish(topics.load_type(topics.topic("reward").msg_type)(data=float(feedback.reward)))
            self.pub_success.publish(topics.load_type(topics.topic("success").msg_type)(data=bool(feedback.success)))

    def _publish_status(self, force: bool) -> None:
        status = {**self.controller.status(), "task": self.p.task, "episode": self.backend.episodes}
        if self.backend.feedback() is not None:  # a simulated task: its episodes and successes, for the monitor
            status.update(episodes=self.backend.episodes, successes=self.backend.successes)
        key = repr({k: v for k, v in status.items() if k not in ("ticks", "target")})
        now = self.get_clock().now().nanoseconds * 1e-9
        if force or key != self._last_status or now - self._last_status_time >= self.p.status_period_s:
            if key != self._last_status and status["state"] in ("error", "disconnected"):
                self.get_logger().error(f"arm {status['state']}: {status['last_error']}")
            self._last_status, self._last_status_time = key, now
            self.pub_status.publish(json_string(status))

    def close(self) -> None:
        """Stop the arm before the node goes away (Ctrl-C / SIGTERM)."""
        self.controller.close()
        self._publish_status(force=True)
        # Publishing is asynchronous: the process would exit (and drop the sample) before the final status left.
        # Wait, bounded, until every matched reader acknowledged it (RELIABLE), so monitors see "shutdown".
        self.pub_status.wait_for_all_acked(Duration(seconds=2.0))


def main(args: list[str] | None = None) -> int:
    return run_node(XArmDriverNode, args)


if __name__ == "__main__":
    sys.exit(main())
