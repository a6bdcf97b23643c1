"""Teleop recorder: a joystick (sensor_msgs/Joy) drives the arm and demonstrations go into the episode store.

The record flow itself is the library's (`polytask.learning.data.recording.RecordingSession`: states, episode
building, the store, the one frame preprocessing); this node maps buttons, the reset service and its tick onto it.
Flow (LeRobot's record flow, on joystick buttons): `start` begins an episode (after resetting the robot when
`reset_on_start`), `save` ends it and writes it, `redo` throws the current attempt away and starts again, `cancel`
throws it away and goes idle. An episode that reaches `max_steps` is saved. The store is resumed: numbering
continues after the episodes already there.

Every tick (`rate_hz`) the node publishes one action [dx, dy, dz, gripper] on robot/action, built from the
newest Joy message by polytask.robot.teleop.JoyMapping: sticks -> Δxyz in [-1, 1] (signs, a rescaled dead zone),
a held button -> gripper closed / tool engaged (+1, else -1). A joystick silent for more than `joy_timeout_s`
gives the zero action, never the last value. While recording, each tick stores (image, state, action) with
state = the task's state vector as the task defines it (`robot/task_state`: for the xArm tasks the 10-D
[ee xyz, tool, achieved xyz, goal xyz] a scripted episode of the task stores too, checked against the task's
registered size), and the task's `robot/success` signal where the arm publishes one (the simulated xArm): the
episode's verdict is then the task's success rule at the final observation, else the operator's (saved = a
demonstration). Idle with a silent joystick,
nobody is driving: after one zero action (to stop a motion in progress) the node publishes nothing, so the driver's
watchdog reports the command stream `stale` and another commander (a policy) is not overridden by zeros.
Each action is stamped (polytask.ros.action_msg) with the observation current at the tick: the newest camera
frame's header stamp while that frame is fresh (within `obs_timeout_s`: the frame a recorded step pairs with the
action), else the joystick message's stamp (nothing but the operator's stick behind the command).

Bad inputs (undecodable images, Joy without the configured axes, NaN) are counted and reported on
recorder/status; the node keeps running. After `save` the episode is over (state `saving`: nothing more is
recorded, the arm is held); a failed write (disk full) keeps the episode in memory and reports the error, and
pressing save again retries (redo/cancel discard it).
"""

from __future__ import annotations

import re
import sys
import time

import numpy as np
from rclpy.duration import Duration
from rclpy.node import Node

from polytask.learning.data.episodes import EpisodeStore
from polytask.learning.data.recording import IDLE, RECORDING, RESETTING, SAVING, Observation, RecordingSession
from polytask.robot.teleop import JoyMapping
from polytask.ros import topics
from polytask.ros.action_msg import action_message, stamp_seconds
from polytask.ros.image_conversion import ImageError, image_to_rgb8
from polytask.ros.node_base import Param, ParamError, declare_params, json_string, run_node

PARAMS = (
    Param("store", "", "episode store folder (created if missing, resumed if present); required"),
    Param("task", "xarm/reach", "registry name of the task being demonstrated (stored in every episode with its "
          "registered task id; its state size is what robot/task_state must carry)"),
    Param("rate_hz", 10.0, "action/recording rate (match the driver's rate_hz)", min=0.5, max=100.0),
    Param("joy_timeout_s", 0.5, "joystick silent longer than this -> zero action", min=0.05, max=10.0),
    Param("obs_timeout_s", 1.0, "image/task state older than this is not recorded (the step is skipped)", min=0.05,
          max=10.0),
    Param("axes", [1, 0, 4], "Joy axis index for dx, dy, dz", type="int_array", length=3, min=0, max=63),
    Param("axis_signs", [1.0, 1.0, 1.0], "sign (and gain) for dx, dy, dz", type="double_array", length=3, min=-1.0,
          max=1.0),
    Param("deadzone", 0.1, "stick values with |v| below this count as 0 (the rest is rescaled to 0..1)", min=0.0,
          max=0.9),
    Param("button_gripper", 5, "held -> gripper closed (+1), released -> open (-1); -1 disables", min=-1, max=63),
    Param("button_start", 0, "start an episode", min=0, max=63),
    Param("button_save", 1, "end the episode and save it", min=0, max=63),
    Param("button_redo", 2, "discard the episode and record it again", min=0, max=63),
    Param("button_cancel", 3, "discard the episode and go idle", min=0, max=63),
    Param("max_steps", 200, "an episode reaching this many steps is saved", min=1, max=100000),
    Param("image_size", 84, "stored frames are resized to image_size x image_size (INTER_AREA)", min=8, max=1024),
    Param("reset_on_start", True, "call the robot's reset service before each episode"),
    Param("reset_timeout_s", 10.0, "give up on a reset that does not answer", min=0.1, max=120.0),
)

class TeleopRecorderNode(Node):
    def __init__(self) -> None:
        super().__init__("teleop_recorder")
        self.p = declare_params(self, PARAMS)
        if not self.p.store:
            raise ParamError("node 'teleop_recorder': parameter 'store' is empty; expected an episode store folder")
        buttons = [self.p.button_start, self.p.button_save, self.p.button_redo, self.p.button_cancel]
        if len(set(buttons)) != 4 or self.p.button_gripper in buttons:
            raise ParamError(f"node 'teleop_recorder': buttons start/save/redo/cancel/gripper {buttons} + "
                             f"{self.p.button_gripper} must all differ")
        try:
            self.mapping = JoyMapping(tuple(self.p.axes), tuple(self.p.axis_signs), self.p.deadzone,
                                      self.p.button_gripper)
        except ValueError as err:
            raise ParamError(f"node 'teleop_recorder': {err}") from err
        from polytask.sim import registry

        try:
            self.spec = registry.spec(self.p.task)
        except KeyError as err:
            raise ParamError(f"node 'teleop_recorder': parameter 'task' = {self.p.task!r}: {err.args[0]}") from err
        try:
            store = EpisodeStore(self.p.store)
        except OSError as err:
            raise ParamError(f"node 'teleop_recorder': parameter 'store' = {self.p.store!r}: {err}") from err
        removed = store.clean_temp_files()
        self.episodes_at_start = len(store)
        self.session = RecordingSession(store, self.p.task, self.spec.task_id, self.p.image_size,
                                        extra={"rate_hz": self.p.rate_hz, "recorder": "teleop_recorder_node"})
        self.counters = {"images": 0, "bad_images": 0, "bad_joy": 0, "bad_states": 0, "skipped_steps": 0}
        self.last_error = ""
        self._joy = None
        self._joy_action = np.zeros(4, dtype=np.float32)
        self._joy_time = -1e9
        self._prev_buttons: list[int] = []
        self._image: np.ndarray | None = None
        self._awaiting_first = False  # a reset just finished: nothing recorded until the robot's next observation
        self._image_time = -1e9
        self._state: np.ndarray | None = None
        self._state_time = -1e9
        self._success: bool | None = None  # None until the arm publishes a success signal (simulation)
        self._success_time = -1e9
        self._image_stamp = None  # header.stamp of the newest frame
        self._joy_stamp = None  # header.stamp of the newest Joy (or its receipt time on the node clock)
        self._reset_future = None
        self._reset_deadline = 0.0
        self._last_action = np.zeros(4, dtype=np.float32)
        self._log_times: dict[str, float] = {}

        self.pub_action = topics.publisher(self, "action")
        self.pub_status = topics.publisher(self, "recorder_status")
        self.sub_joy = topics.subscription(self, "joy", self._on_joy)
        self.sub_image = topics.subscription(self, "image", self._on_image)
        self.sub_state = topics.subscription(self, "task_state", self._on_task_state)
        self.sub_success = topics.subscription(self, "success", self._on_success)
        self.reset_client = topics.service_client(self, "reset")
        self.timer = self.create_timer(1.0 / self.p.rate_hz, self._tick)
        self.status_timer = self.create_timer(1.0, self._publish_status)
        self.get_logger().info(f"recording {self.p.task!r} into {store.root} ({self.episodes_at_start} episodes "
                               f"there{', removed ' + str(len(removed)) + ' partial writes' if removed else ''})")
        self._publish_status()

    @property
    def state(self) -> str:
        return self.session.state

    def _warn(self, key: str, text: str) -> None:
        self.last_error = text
        now = time.monotonic()
        key = f"{key}:{re.sub(r'[0-9.]+', '#', text)[:60]}"  # each kind of error is logged, at most once a second
        if now - self._log_times.get(key, 0.0) > 1.0:
            self._log_times[key] = now
            self.get_logger().warn(text)

    # --- inputs -----------------------------------------------------------------------------------------------------
    def _on_joy(self, msg) -> None:
        try:
            self._joy_action = self.mapping.action(msg.axes, msg.buttons)
        except ValueError as err:
            self.counters["bad_joy"] += 1
            self._warn("joy", f"{err}; ignored")
            return
        self._joy = msg
        self._joy_time = time.monotonic()
        self._joy_stamp = msg.header.stamp if stamp_seconds(msg.header.stamp) > 0 else \
            self.get_clock().now().to_msg()
        buttons = list(msg.buttons)
        prev = self._prev_buttons
        pressed = {i for i, b in enumerate(buttons) if b and (i >= len(prev) or not prev[i])}  # rising edges
        self._prev_buttons = buttons
        self._on_buttons(pressed)

    def _on_image(self, msg) -> None:
        try:
            rgb = self.session.frame(image_to_rgb8(msg))  # as it is stored, and as a deployed policy sees it
        except (ImageError, ValueError) as err:
            self.counters["bad_images"] += 1
            self._warn("image", f"bad image on {topics.topic('image').path}: {err}")
            return
        self._image, self._image_time, self._image_stamp = rgb, time.monotonic(), msg.header.stamp
        self.counters["images"] += 1

    def _on_task_state(self, msg) -> None:
        state = np.asarray(msg.data, dtype=np.float32)
        if state.shape != (self.spec.state_dim,) or not np.all(np.isfinite(state)):
            self.counters["bad_states"] += 1
            self._warn("state", f"task state on {topics.topic('task_state').path} with {state.shape[0]} values "
                                f"{state.tolist()[:12]}: expected {self.spec.state_dim} finite values (the state of "
                                f"{self.p.task}); ignored")
            return
        self._state, self._state_time = state, time.monotonic()

    def _on_success(self, msg) -> None:
        self._success, self._success_time = bool(msg.data), time.monotonic()

    # --- the record flow (the library's RecordingSession; the node adds buttons, the reset service and timing) ---
    def _on_buttons(self, pressed: set[int]) -> None:
        p, state = self.p, self.state
        if p.button_start in pressed and state == IDLE:
            self._begin()
        elif p.button_save in pressed and state in (RECORDING, SAVING):
            self._save()
        elif p.button_redo in pressed and state in (RECORDING, RESETTING, SAVING):
            self._discard("redo")
            self._begin()
        elif p.button_cancel in pressed and state in (RECORDING, RESETTING, SAVING):
            self._discard("cancel")
            self.session.state = IDLE
        self._publish_status()

    def _begin(self) -> None:
        self.session.start(reset=self.p.reset_on_start)
        self._reset_future = None  # with a reset, it is requested from the tick once the service is there
        self._reset_deadline = time.monotonic() + self.p.reset_timeout_s

    def _reset_failed(self, text: str) -> None:
        self._warn("reset", text)
        self.session.reset_finished(False)
        self._publish_status()

    def _check_reset(self) -> None:
        if self.state != RESETTING:
            return
        fut = self._reset_future
        if fut is None:
            if self.reset_client.service_is_ready():
                request = topics.load_type(topics.service("reset").srv_type).Request()
                self._reset_future = self.reset_client.call_async(request)
            elif time.monotonic() > self._reset_deadline:
                self._reset_failed(f"reset service {topics.service('reset').path} not available within "
                                   f"{self.p.reset_timeout_s:g} s; not recording")
            return
        if fut.done():
            self._reset_future = None
            result = fut.result()
            if result is not None and result.success:
                # what arrived before the reset shows the previous episode (another placement): the episode's first
                # observation must be one the robot sent after resetting
                self._image = self._state = None
                self._awaiting_first = True
                self.session.reset_finished(True)
                self._publish_status()
            else:
                self._reset_failed(f"robot reset failed: {getattr(result, 'message', 'no answer')}; not recording")
        elif time.monotonic() > self._reset_deadline:
            self._reset_future = None
            self._reset_failed(f"robot reset did not answer within {self.p.reset_timeout_s:g} s; not recording")

    def _discard(self, why: str) -> None:
        lost = self.session.discard()
        if lost:
            self.get_logger().info(f"{why}: discarded an episode of {lost} steps")
        self._reset_future = None

    def _observation(self) -> Observation | None:
        now = time.monotonic()
        fresh = self.p.obs_timeout_s
        if self._image is None or self._state is None or now - self._image_time > fresh \
                or now - self._state_time > fresh:
            return None
        success = self._success if now - self._success_time <= fresh else None
        return Observation(self._image, self._state, success)

    def _save(self) -> None:
        """End the episode (no more steps are recorded, the arm is held) and write it; retried on failure."""
        steps = self.session.steps
        outcome = self.session.finish(self._observation())  # the final observation, unless it is already in
        if outcome.path is not None:
            self.last_error = ""
            self.get_logger().info(f"saved {outcome.path.name} ({steps} steps)")
        elif outcome.error:
            self._warn("save", outcome.error)

    # --- the tick -----------------------------------------------------------------------------------------------------
    def _joy_alive(self) -> bool:
        return self._joy is not None and time.monotonic() - self._joy_time <= self.p.joy_timeout_s

    def _action(self) -> np.ndarray:
        if not self._joy_alive():
            return np.zeros(4, dtype=np.float32)  # silent joystick: stop, never repeat the last command
        return self._joy_action.copy()

    def _tick(self) -> None:
        self._check_reset()
        action = self._action()
        if self.state == RECORDING:
            obs = self._observation()
            if obs is None and self._awaiting_first:
                action = np.zeros(4, dtype=np.float32)  # the first observation after the reset is not in yet: hold
            elif obs is None:
                self.counters["skipped_steps"] += 1
                self._warn("obs", "no fresh image and task state: step not recorded, arm held")
                action = np.zeros(4, dtype=np.float32)
            else:
                self._awaiting_first = False
                self.session.record(obs.frame, obs.state, action, obs.success)
        elif self.state in (RESETTING, SAVING):
            action = np.zeros(4, dtype=np.float32)  # the episode is over or not begun: hold the arm
            if self.session.waiting_for_final:
                self._save()
                self._publish_status()
        if self.state == IDLE and not self._joy_alive() and not np.any(self._last_action):
            return  # nobody drives and the arm was already told to stop: stay quiet
        self.pub_action.publish(action_message(action, self._observation_stamp()))
        self._last_action = action
        if self.state == RECORDING and self.session.steps >= self.p.max_steps:
            self._save()
            self._publish_status()

    def _observation_stamp(self):
        """The stamp of the observation an action answers: the fresh frame's, else the joystick's, else now."""
        if self._image_stamp is not None and time.monotonic() - self._image_time <= self.p.obs_timeout_s:
            return self._image_stamp
        return self._joy_stamp if self._joy_stamp is not None else self.get_clock().now().to_msg()

    def _publish_status(self) -> None:
        session = self.session
        self.pub_status.publish(json_string({
            "state": session.state, "task": self.p.task, "store": str(session.store.root),
            "episodes_in_store": self.episodes_at_start + session.counters["saved"], "steps": session.steps,
            **session.counters, **self.counters, "last_error": self.last_error, "joy_alive": self._joy_alive(),
            "last_action": [round(float(v), 3) for v in self._last_action]}))

    def close(self) -> None:
        if self.session.steps:
            self.get_logger().warn(f"shutting down: the unsaved episode of {self.session.steps} steps is "
                                   "discarded")
        self.pub_action.publish(action_message(np.zeros(4), self.get_clock().now().to_msg()))
        # The stop command must leave before the process does (publishing is asynchronous): bounded wait for acks.
        self.pub_action.wait_for_all_acked(Duration(seconds=1.0))


def main(args: list[str] | None = None) -> int:
    return run_node(TeleopRecorderNode, args)


if __name__ == "__main__":
    sys.exit(main())
