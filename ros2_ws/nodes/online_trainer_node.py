"""Online trainer: the expert loop of `polytask.learning.rl.expert` (BC, then DrQ-v2 finetuning) as a graph node.

A thin adapter: the algorithm, replay store, checkpoints and resume all belong to `ExpertTrainer`. What this node
adds is where the environment lives:
- `env:=inprocess`: the trainer steps its own simulator (fastest);
- `env:=sim`: the trainer is given a `TopicTask` (polytask.ros.topic_task), which drives the sim bridge over the
  robot topics. The trainer cannot tell the difference, which is the point: the same loop runs against the real
  arm's topics.
Progress (the trainer's own report: step, episode, updates, losses, last evaluation, checkpoint) is published as
JSON on `training/progress` (latched). A run folder that already holds a checkpoint is resumed.
Evaluation runs in-process on the registry task (the trainer's own evaluator).
"""

from __future__ import annotations

import threading
import time
import traceback
from typing import Any

from rclpy.node import Node

from polytask.learning.config import ConfigError, load_config, parse_overrides
from polytask.learning.rl.expert import ExpertTrainer
from polytask.learning.rl.expert_config import ExpertConfig
from polytask.ros import topics
from polytask.ros.node_base import Param, ParamError, declare_params, json_string, run_node
from polytask.ros.topic_task import TopicTask
from polytask.sim import registry
from polytask.sim.task import Task

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


class OnlineTrainer(Node):
    def __init__(self) -> None:
        super().__init__("online_trainer")
        self.p = declare_params(self, PARAMS)
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
        self.trainer: ExpertTrainer | None = None
        self.topic_task: TopicTask | None = None
        self.done = False
        self.error = ""
        self.summary: dict[str, Any] = {}
        self.started = time.monotonic()
        self.thread = threading.Thread(target=self._train, daemon=True)
        self.thread.start()
        self.timer = self.create_timer(self.p.progress_period_s, self._publish_progress)

    def _topic_task(self, name: str, render: bool) -> Task:
        self.topic_task = TopicTask(self, registry.spec(name), render, self.p.step_timeout_s)
        return self.topic_task

    def _train(self) -> None:
        try:
            make_task = self._topic_task if self.p.env == "sim" else None
            trainer = ExpertTrainer.open(self.cfg, self.p.run_dir, {"train.steps": self.p.steps}, make_task=make_task)
            if trainer.resumed:
                self.get_logger().info(f"resuming {self.p.run_dir} at step {trainer.step}")
            self.trainer = trainer
            self.get_logger().info(f"training {self.p.task} for {self.p.steps} steps ({self.p.env}) in "
                                   f"{trainer.run_dir}")
            self.summary = trainer.run()
            self.get_logger().info(f"training done at step {trainer.step}: {self.summary.get('eval_final')}")
        except Exception as err:  # reported on the progress topic; the node stays up for inspection
            self.error = f"{type(err).__name__}: {err}"
            self.get_logger().error(f"training failed: {self.error}\n{traceback.format_exc()}")
        finally:
            self.done = True
            self._publish_progress()

    def progress(self) -> dict[str, Any]:
        out: dict[str, Any] = {"job": "train_expert", "task": self.p.task, "env": self.p.env, "total": self.p.steps,
                               "run_dir": self.p.run_dir, "done": self.done, "error": self.error,
                               "seconds": round(time.monotonic() - self.started, 1)}
        if self.trainer is not None:
            out.update(self.trainer.progress())
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
