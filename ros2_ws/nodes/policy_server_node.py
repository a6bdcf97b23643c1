"""Policy server: camera frames (+ the task state) in, one action out per frame, at camera rate.

A thin adapter over `polytask.learning.policies`: `policy_for_task` loads the policy — a checkpoint of any kind
(distilled student, expert, multi-task RL baseline, progressive net; the header's kind picks the loader), or
`scripted` / `scripted:<task>`, the task's own scripted expert run on the received state (suites whose expert reads
only the state, e.g. Meta-World) — and checks it against the task; the policy's declared `inputs` say which frame
size it takes and whether it reads the state. Frames go through the one frame-preprocessing function
(`polytask.sim.frames.prepare_frame`) that the recorder and the simulated suites use, so the server feeds the policy
exactly what it was trained on.

Runtime changes go through the standard parameter services (`ros2 param set /policy_server task ...`), so any
ROS tool can drive them:
- `task`: the goal the policy is conditioned on (task id, name, language; a goal image when the policy has one),
  checked against the registry before it is accepted;
- `checkpoint`: loaded in a background thread while the old policy keeps answering frames; swapped in one
  assignment when ready, so the action stream never pauses. A checkpoint that fails to load is reported on
  `policy/status` and the old policy stays.

Bad frames (unknown encoding, wrong size/step, empty data) and policy failures are counted and logged, never
fatal; an action that is not finite or has the wrong length is never published. Each action carries the header
stamp of the frame it answers (polytask.ros.action_msg), so the robot can refuse answers to frames that are too
old by the time they arrive (a slow inference, a backlog of frames).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
from rclpy.node import Node

from polytask.learning.policies.loaders import SCRIPTED, policy_for_task
from polytask.ros import topics
from polytask.ros.action_msg import action_message
from polytask.ros.image_conversion import ImageError, image_to_rgb8
from polytask.ros.node_base import Param, ParamError, declare_params, json_string, run_node
from polytask.sim import registry
from polytask.sim.frames import prepare_frame
from polytask.sim.task import Goal, Step

PARAMS = (
    Param("checkpoint", "scripted", "checkpoint file, or `scripted` / `scripted:<task>` for a scripted expert"),
    Param("task", "xarm/reach", "registry task the policy is conditioned on (change at runtime to switch)"),
    Param("threads", 1, "torch intra-op threads for inference", min=1, max=64),
    Param("use_state", True, "feed robot/task_state into the policy's step (state-based policies need it)"),
    Param("image_size", 0, "resize frames to image_size x image_size (INTER_AREA) before the policy, e.g. 84 for "
          "a 640x480 camera; 0: frames go in as they arrive", min=0, max=1024),
    Param("status_period_s", 1.0, "period of the policy/status heartbeat", min=0.05),
)


class PolicyServer(Node):
    def __init__(self) -> None:
        super().__init__("policy_server")
        self.p = declare_params(self, PARAMS)
        from std_msgs.msg import Float32

        self._Float32 = Float32
        try:
            import torch

            torch.set_num_threads(self.p.threads)
        except ImportError:
            pass
        try:
            self.loaded = policy_for_task(self.p.checkpoint, self.p.task)
        except (ValueError, KeyError, FileNotFoundError) as err:
            raise ParamError(f"node 'policy_server': checkpoint {self.p.checkpoint!r} / task {self.p.task!r}: "
                             f"{err}") from err
        self.goal = Goal(task_id=self.loaded.spec.task_id, name=self.loaded.spec.name)
        self.state: np.ndarray | None = None
        self.episode: int | None = None
        self.need_reset = True
        self.loading = ""
        self.last_error = ""
        self.counts = {"frames": 0, "actions": 0, "bad_frames": 0, "policy_errors": 0, "bad_actions": 0,
                       "swaps": 0}
        self.latencies: deque[float] = deque(maxlen=300)
        self.action_times: deque[float] = deque(maxlen=60)
        self._lock = threading.Lock()

        self.pub_action = topics.publisher(self, "action")
        self.pub_latency = topics.publisher(self, "policy_latency")
        self.pub_status = topics.publisher(self, "policy_status")
        self.sub_image = topics.subscription(self, "image", self._on_image)
        self.sub_state = topics.subscription(self, "task_state", self._on_state)
        self.sub_robot = topics.subscription(self, "robot_status", self._on_robot_status)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.timer = self.create_timer(self.p.status_period_s, self._publish_status)
        self._publish_status()
        self.get_logger().info(f"serving {self.loaded.kind} policy {self.loaded.checkpoint!r} for {self.goal.name}")

    # --- inputs -----------------------------------------------------------------------------------------------------
    def _on_state(self, msg) -> None:
        if self.p.use_state:
            self.state = np.asarray(msg.data, dtype=np.float32)

    def _on_robot_status(self, msg) -> None:
        import json

        try:
            episode = json.loads(msg.data).get("episode")
        except (ValueError, AttributeError):
            return
        if episode is not None and episode != self.episode:
            self.episode = episode
            self.need_reset = True

    def _on_image(self, msg) -> None:
        t0 = time.perf_counter()
        self.counts["frames"] += 1
        loaded = self.loaded  # one read: a swap in another thread changes the attribute, never this object
        spec, inputs = loaded.spec, loaded.policy.inputs
        try:
            pixels = image_to_rgb8(msg)
            if self.p.image_size:
                pixels = prepare_frame(pixels, self.p.image_size)
            inputs.check_frame(pixels, "the policy")
        except (ImageError, ValueError) as err:
            self.counts["bad_frames"] += 1
            resize = inputs.pixels and not self.p.image_size
            hint = f" (set image_size:={inputs.image_size} to resize)" if resize else ""
            self.last_error = f"bad frame: {err}{hint}"
            self.get_logger().warning(self.last_error, throttle_duration_sec=2.0)
            return
        state = self.state if self.state is not None and self.state.shape[0] == spec.state_dim else \
            np.zeros(spec.state_dim, np.float32)
        step = Step(state=state, pixels=pixels, reward=0.0, success=False, terminal=False, truncated=False,
                    goal=self.goal)
        try:
            if self.need_reset:
                loaded.policy.reset(step)
                self.need_reset = False
            action = np.asarray(loaded.policy.act(step), dtype=np.float32).reshape(-1)
        except Exception as err:  # a policy bug or a frame the policy cannot take: count, report, keep serving
            self.need_reset = True  # its history (frame stack) may hold the frame that failed: start afresh
            self.counts["policy_errors"] += 1
            self.last_error = f"policy failed: {type(err).__name__}: {err}"
            self.get_logger().warning(self.last_error, throttle_duration_sec=2.0)
            return
        if action.shape[0] != spec.action_dim or not np.all(np.isfinite(action)):
            self.counts["bad_actions"] += 1
            self.last_error = f"policy produced an invalid action {action.tolist()} (expected {spec.action_dim} " \
                              f"finite values); not published"
            self.get_logger().warning(self.last_error, throttle_duration_sec=2.0)
            return
        self.pub_action.publish(action_message(np.clip(action, -1.0, 1.0), msg.header.stamp))
        latency_ms = (time.perf_counter() - t0) * 1000.0
        self.counts["actions"] += 1
        self.latencies.append(latency_ms)
        self.action_times.append(time.monotonic())
        self.pub_latency.publish(self._Float32(data=float(latency_ms)))

    # --- runtime changes --------------------------------------------------------------------------------------------
    def _on_set_parameters(self, params):
        from rcl_interfaces.msg import SetParametersResult

        for prm in params:
            if prm.name == "task":
                try:
                    registry.entry(str(prm.value))
                except KeyError as err:
                    return SetParametersResult(successful=False, reason=str(err.args[0]))
                # a scripted expert is per task: a new task means that task's expert
                checkpoint = SCRIPTED if self.loaded.kind == SCRIPTED else self.loaded.checkpoint
                self._swap_async(checkpoint, str(prm.value))
            elif prm.name == "checkpoint":
                value = str(prm.value)
                if not value.startswith(SCRIPTED) and not Path(value).is_file():
                    return SetParametersResult(successful=False, reason=f"checkpoint {value!r} does not exist")
                self._swap_async(value, self._requested_task(params))
            elif prm.name in ("threads", "use_state", "status_period_s", "image_size"):
                return SetParametersResult(successful=False, reason=f"{prm.name} is fixed at start-up")
        return SetParametersResult(successful=True)

    def _requested_task(self, params) -> str:
        for prm in params:
            if prm.name == "task":
                return str(prm.value)
        return self.goal.name

    def _swap_async(self, checkpoint: str, task: str) -> None:
        self.loading = f"{checkpoint} for {task}"
        threading.Thread(target=self._swap, args=(checkpoint, task), daemon=True).start()

    def _swap(self, checkpoint: str, task: str) -> None:
        with self._lock:
            try:
                new = policy_for_task(checkpoint, task)
            except Exception as err:
                self.last_error = f"swap to {checkpoint!r} / {task!r} failed: {err}"
                self.get_logger().error(self.last_error)
                self.loading = ""
                return
            old = self.loaded
            self.goal = Goal(task_id=new.spec.task_id, name=new.spec.name)
            self.need_reset = True
            self.loaded = new
            self.counts["swaps"] += 1
            self.loading = ""
            if old is not new:
                old.close()
        self.get_logger().info(f"now serving {new.kind} policy {new.checkpoint!r} for {new.spec.name}")

    # --- status -----------------------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        times = list(self.action_times)
        rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
        return {"checkpoint": self.loaded.checkpoint, "kind": self.loaded.kind, "task": self.goal.name,
                "task_id": self.goal.task_id, "rate_hz": round(rate, 2), **self.counts,
                "latency_ms_p50": round(lat[len(lat) // 2], 3) if lat else None,
                "latency_ms_p99": round(lat[min(len(lat) - 1, int(0.99 * len(lat)))], 3) if lat else None,
                "loading": self.loading, "last_error": self.last_error}

    def _publish_status(self) -> None:
        self.pub_status.publish(json_string(self.status()))

    def close(self) -> None:
        self._publish_status()
        self.loaded.close()


def main(args: list[str] | None = None) -> int:
    return run_node(PolicyServer, args)


if __name__ == "__main__":
    raise SystemExit(main())
