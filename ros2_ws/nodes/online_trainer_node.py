"""Online trainer: the expert loop of `polytask.learning.rl.expert` (BC, then DrQ-v2 finetuning) as a graph node.

A thin adapter: the algorithm, replay store, checkpoints and resume all belong to `ExpertTrainer`. What this node
adds is where the environment lives:
- `env:=inprocess`: the trainer steps its own simulator (fastest);
- `env:=sim`: the trainer's task is swapped for `TopicTask`, which drives the sim bridge over the robot topics —
  an action goes out on `robot/action`, the step comes back as `robot/task_state` + `robot/reward` +
  `robot/success` + the next camera frame, episodes start with the `robot/reset` service. The trainer cannot
  tell the difference, which is the point: the same loop runs against the real arm's topics.
Progress (step, episode, updates, losses, last evaluation, checkpoint) is published as JSON on
`training/progress` (latched). A run folder that already holds a checkpoint is resumed.

Evaluation runs in-process on the registry task (the trainer's own evaluator); the episode verdict of a topic
episode is the bridge's per-step success signal (any step), not a suite-specific rule.
"""

from __future__ import annotations

import threading
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
from rclpy.node import Node

from polytask.ros import topics
from polytask.ros.image_conversion import ImageError, image_to_rgb8
from polytask.ros.node_base import Param, ParamError, declare_params, json_string, run_node
from polytask.sim.task import Goal, Step, Task, TaskSpec, validate_action

TASK_STATE_TOPIC = "robot/task_state"

PARAMS = (
    Param("task", "xarm/reach", "registry task to train an expert for"),
    Param("env", "sim", "where the task runs: `sim` = the sim bridge through topics, `inprocess` = in this process",
          choices=("sim", "inprocess")),
    Param("demos", "data/demos", "episode store with the task's demonstrations"),
    Param("run_dir", "runs/train_task", "run folder (config, replay/, checkpoints/); resumed when it has one"),
    Param("steps", 6000, "training budget in agent steps", min=1),
    Param("reward", "env", "reward: `env` (the task's) or `ot` (optimal transport against the demos)",
          choices=("env", "ot")),
    Param("config_file", "", "expert config YAML (config/expert.yaml layout); empty: the paper's defaults"),
    Param("overrides", [""], "dotted config overrides, `key=value` (YAML value), e.g. agent.batch_size=64",
          type="string_array"),
    Param("threads", 1, "torch CPU threads", min=1, max=64),
    Param("step_timeout_s", 5.0, "env:=sim: a step or reset not answered within this is an error", min=0.1),
    Param("progress_period_s", 1.0, "training/progress publish period", min=0.05),
)


class TopicTask(Task):
    """The Task interface over the robot topics of a sim bridge (or anything speaking the same contract)."""

    def __init__(self, node: Node, spec: TaskSpec, pixels: bool, timeout: float) -> None:
        super().__init__(spec, render=pixels)
        from std_msgs.msg import Float32MultiArray

        self.node, self.timeout, self.pixels = node, timeout, pixels
        self._F32Array = Float32MultiArray
        self._cond = threading.Condition()
        self._seq = {"state": 0, "reward": 0, "success": 0, "image": 0}
        self._state: np.ndarray | None = None
        self._reward = 0.0
        self._success = False
        self._image: np.ndarray | None = None
        self._image_after_state = -1  # state seq current when the latest image arrived
        self.stopped = threading.Event()
        self.pub_action = topics.publisher(node, "action")
        node.create_subscription(Float32MultiArray, TASK_STATE_TOPIC, self._on_state, topics.qos_profile("state"))
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
        self._on("state", "_state", state)

    def _on_image(self, msg) -> None:
        try:
            frame = image_to_rgb8(msg)
        except ImageError as err:
            self.node.get_logger().warning(f"bad frame ignored: {err}", throttle_duration_sec=2.0)
            return
        with self._cond:
            self._image = frame
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
        self.pub_action.publish(self._F32Array(data=action.tolist()))
        self._observe(before, need_reward=True, what="step result")
        self._t += 1
        self._episode_return += self._reward
        self._success_steps += int(self._success)
        return self._make_step(self._reward, self._success, truncated=self._t >= self.spec.horizon)

    def _make_step(self, reward: float, success: bool, truncated: bool = False) -> Step:
        with self._cond:
            state = self._state.copy()
            pixels = None if not self.pixels or self._image is None else self._image.copy()
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


class OnlineTrainer(Node):
    def __init__(self) -> None:
        super().__init__("online_trainer")
        self.p = declare_params(self, PARAMS)
        from polytask.learning.config import ConfigError, load_config, parse_overrides
        from polytask.learning.rl.expert_config import ExpertConfig
        from polytask.sim import registry

        try:
            registry.entry(self.p.task)
        except KeyError as err:
            raise ParamError(f"node 'online_trainer': parameter 'task' = {self.p.task!r}: {err.args[0]}") from err
        try:
            overrides = parse_overrides(self.p.overrides, "node 'online_trainer': parameter 'overrides' item")
        except ValueError as err:
            raise ParamError(str(err)) from err
        overrides.update({"train.task": self.p.task, "train.demos": self.p.demos, "train.steps": self.p.steps,
                          "reward.kind": self.p.reward, "train.threads": self.p.threads, "train.progress": False})
        try:
            self.cfg = load_config(ExpertConfig, self.p.config_file or None, overrides)
        except (ConfigError, OSError) as err:
            raise ParamError(f"node 'online_trainer': {err}") from err
        self.pub_progress = topics.publisher(self, "training_progress")
        self.trainer = None
        self.topic_task: TopicTask | None = None
        self.done = False
        self.error = ""
        self.summary: dict[str, Any] = {}
        self.started = time.monotonic()
        self.thread = threading.Thread(target=self._train, daemon=True)
        self.thread.start()
        self.timer = self.create_timer(self.p.progress_period_s, self._publish_progress)

    def _train(self) -> None:
        from polytask.learning.rl.expert import ExpertTrainer

        run_dir = Path(self.p.run_dir)
        try:
            if (run_dir / "checkpoints" / "latest.safetensors").exists():
                self.get_logger().info(f"resuming {run_dir}")
                trainer = ExpertTrainer.resume(run_dir, {"train.steps": self.p.steps})
            else:
                trainer = ExpertTrainer(self.cfg, run_dir)
            if self.p.env == "sim":
                trainer.task.close()
                self.topic_task = TopicTask(self, trainer.task.spec, trainer.pixels, self.p.step_timeout_s)
                trainer.task = self.topic_task
            self.trainer = trainer
            self.get_logger().info(f"training {self.p.task} for {self.p.steps} steps ({self.p.env}) in {run_dir}")
            self.summary = trainer.run()
            self.get_logger().info(f"training done at step {trainer.state.step}: {self.summary.get('eval_final')}")
        except Exception as err:  # reported on the progress topic; the node stays up for inspection
            self.error = f"{type(err).__name__}: {err}"
            self.get_logger().error(f"training failed: {self.error}\n{traceback.format_exc()}")
        finally:
            self.done = True
            self._publish_progress()

    def progress(self) -> dict[str, Any]:
        t = self.trainer
        out: dict[str, Any] = {"job": "train_expert", "task": self.p.task, "env": self.p.env, "total": self.p.steps,
                               "run_dir": self.p.run_dir, "done": self.done, "error": self.error,
                               "seconds": round(time.monotonic() - self.started, 1)}
        if t is not None:
            st = t.state
            ckpt = Path(t.run_dir) / "checkpoints" / "expert.safetensors"
            out.update({"step": st.step, "episode": st.episode, "updates": st.updates,
                        "episodes_stored": t.replay.episodes_added, "losses": dict(t.last_metrics),
                        "eval": t.last_eval, "checkpoint": str(ckpt) if ckpt.exists() else None})
        return out

    def _publish_progress(self) -> None:
        try:
            self.pub_progress.publish(json_string(self.progress()))
        except Exception:  # the context may already be shut down at exit
            pass

    def close(self) -> None:
        if self.topic_task is not None:
            self.topic_task.close()
        self._publish_progress()


def main(args: list[str] | None = None) -> int:
    return run_node(OnlineTrainer, args)


if __name__ == "__main__":
    raise SystemExit(main())
