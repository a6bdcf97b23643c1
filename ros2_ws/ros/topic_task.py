"""The `Task` interface over the robot topics, so the online-RL loop trains against the sim bridge or the real
arm exactly as against an in-process simulator.

An action goes out on `robot/action`; the step comes back as `robot/task_state` + `robot/reward` + `robot/success`
+ the next camera frame (brought to the task's image size by the one frame-preprocessing function,
`polytask.sim.frames.prepare_frame`); episodes start with the `robot/reset` service. The episode verdict of a topic
episode is the bridge's per-step success signal (any step), not a suite-specific rule. Steps and resets not
answered within `timeout` seconds are errors, never silent waits. Each action is stamped
(polytask.ros.action_msg) with the observation it was computed from: the header stamp of the step's camera
frame, or, without pixels, the node-clock time the step's state arrived (the state vector carries no stamp).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
from rclpy.node import Node

from polytask.ros import topics
from polytask.ros.action_msg import action_message
from polytask.ros.image_conversion import ImageError, image_to_rgb8
from polytask.sim.frames import prepare_frame
from polytask.sim.task import Goal, Step, Task, TaskSpec, validate_action


class TopicTask(Task):
    """The Task interface over the robot topics of a sim bridge (or anything speaking the same contract)."""

    def __init__(self, node: Node, spec: TaskSpec, pixels: bool, timeout: float) -> None:
        super().__init__(spec, render=pixels)
        self.node, self.timeout, self.pixels = node, timeout, pixels
        self._cond = threading.Condition()
        self._seq = {"state": 0, "reward": 0, "success": 0, "image": 0}
        self._state: np.ndarray | None = None
        self._reward = 0.0
        self._success = False
        self._image: np.ndarray | None = None
        self._image_after_state = -1  # state seq current when the latest image arrived
        self._state_stamp = None  # node-clock time the latest state arrived
        self._image_stamp = None  # header.stamp of the latest image
        self._observed_stamp = None  # the stamp of the observation the last returned Step holds
        self.stopped = threading.Event()
        self.pub_action = topics.publisher(node, "action")
        topics.subscription(node, "task_state", self._on_state)
        topics.subscription(node, "reward", lambda m: self._on("reward", "_reward", float(m.data)))
        topics.subscription(node, "success", lambda m: self._on("success", "_success", bool(m.data)))
        if pixels:
            topics.subscription(node, "image", self._on_image)
        self.reset_client = topics.service_client(node, "reset")

    # --- callbacks (executor thread) -----------------------------------------------------------------------------
    def _on(self, key: str, attr: str, value: Any) -> None:
        with self._cond:
            setattr(self, attr, value)
            self._seq[key] += 1
            self._cond.notify_all()

    def _on_state(self, msg) -> None:
        state = np.asarray(msg.data, dtype=np.float32)
        if state.shape != (self.spec.state_dim,):
            self.node.get_logger().warning(f"task_state has {state.shape[0]} values, expected "
                                           f"{self.spec.state_dim}; ignored", throttle_duration_sec=2.0)
            return
        self._state_stamp = self.node.get_clock().now().to_msg()
        self._on("state", "_state", state)

    def _on_image(self, msg) -> None:
        try:
            frame = prepare_frame(image_to_rgb8(msg), self.spec.image_size)
        except (ImageError, ValueError) as err:
            self.node.get_logger().warning(f"bad frame ignored: {err}", throttle_duration_sec=2.0)
            return
        with self._cond:
            self._image = frame
            self._image_stamp = msg.header.stamp
            self._seq["image"] += 1
            self._image_after_state = self._seq["state"]
            self._cond.notify_all()

    # --- waiting (trainer thread) ----------------------------------------------------------------------------------
    def _wait(self, predicate, what: str) -> None:
        deadline = time.monotonic() + self.timeout
        with self._cond:
            while not predicate():
                if self.stopped.is_set():
                    raise RuntimeError("trainer stopped")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {what} from the robot/bridge within {self.timeout} s "
                                       f"(is the sim bridge running on this ROS domain?)")
                self._cond.wait(min(left, 0.1))

    def _observe(self, before: dict[str, int], need_reward: bool, what: str) -> None:
        def ready() -> bool:
            if self._seq["state"] <= before["state"]:
                return False
            if need_reward and (self._seq["reward"] <= before["reward"] or self._seq["success"] <= before["success"]):
                return False
            return not self.pixels or self._image_after_state >= self._seq["state"]

        self._wait(ready, what)

    # --- the Task interface ------------------------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> Step:
        self._t, self._episode_return, self._success_steps = 0, 0.0, 0
        self._episode_info = {}
        before = dict(self._seq)
        if not self.reset_client.wait_for_service(timeout_sec=self.timeout):
            raise TimeoutError(f"service {topics.service('reset').path} not available within {self.timeout} s")
        done = threading.Event()
        future = self.reset_client.call_async(self.reset_client.srv_type.Request())
        future.add_done_callback(lambda _f: done.set())
        if not done.wait(self.timeout):
            raise TimeoutError(f"reset not answered within {self.timeout} s")
        self._observe(before, need_reward=False, what="state after reset")
        return self._make_step(0.0, False)

    def step(self, action: np.ndarray) -> Step:
        action = validate_action(action, self.spec)
        before = dict(self._seq)
        self.pub_action.publish(action_message(action, self._observed_stamp))
        self._observe(before, need_reward=True, what="step result")
        self._t += 1
        self._episode_return += self._reward
        self._success_steps += int(self._success)
        return self._make_step(self._reward, self._success, truncated=self._t >= self.spec.horizon)

    def _make_step(self, reward: float, success: bool, truncated: bool = False) -> Step:
        with self._cond:
            state = self._state.copy()
            pixels = None if not self.pixels or self._image is None else self._image.copy()
            self._observed_stamp = self._image_stamp if self.pixels else self._state_stamp
        return Step(state=state, pixels=pixels, reward=float(reward), success=bool(success), terminal=False,
                    truncated=truncated, goal=Goal(task_id=self.spec.task_id, name=self.spec.name))

    def _reset(self, seed):  # the public reset/step above replace the single-step primitives
        raise NotImplementedError

    def _step(self, action):
        raise NotImplementedError

    def _render(self):
        raise NotImplementedError

    def close(self) -> None:
        self.stopped.set()
