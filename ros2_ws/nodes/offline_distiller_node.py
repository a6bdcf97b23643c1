"""Offline distiller: episode stores + expert teachers in, one unified policy out (PolyTask phase 2), as a node.

A thin adapter over `polytask.learning.distill.pipeline.run_distillation` (the job `polytask distill` runs too:
relabel every store with its teacher, distil a student — multi-task, or lifelong add-task — then evaluate it).
The node runs that job in a background thread, reports progress on `training/progress` (latched JSON: stage,
step/total, loss, samples/s, then the per-task evaluation and the effective number of tasks) and stays up
afterwards so the result can be read. Rerunning with the same `out` folder resumes (the job's own resume).

Progress comes from the job's progress callback: every distillation log row is published as it arrives.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rclpy.node import Node

from polytask.ros import topics
from polytask.ros.node_base import Param, ParamError, declare_params, json_string, run_node

if TYPE_CHECKING:
    from polytask.learning.distill.pipeline import DistillJob

PARAMS = (
    Param("stores", "data/replay/metaworld_button-press", "comma-separated episode stores, one task each"),
    Param("experts", "scripted", "comma-separated teachers, one per store (expert checkpoints), or one for all "
          "(`scripted` = the tasks' scripted experts)"),
    Param("out", "runs/distill", "run folder: relabelled stores, student.safetensors, eval.csv (resumed)"),
    Param("goal", "onehot", "student goal modality", choices=("onehot", "sinusoid", "language", "image")),
    Param("goal_images", "", "demo store whose successful demos' last frames are the image goals (goal image)"),
    Param("steps", 2000, "gradient steps (per added task when lifelong)", min=1),
    Param("eval_episodes", 10, "evaluation episodes per task after distillation (0: skip)", min=0),
    Param("lifelong", False, "add the stores' tasks to a lifelong run in `out` (one stage per task)"),
    Param("config_file", "", "distillation YAML (config/distill.yaml layout); empty: Table V defaults"),
    Param("overrides", [""], "config overrides `key=value` (YAML values), e.g. batch_size=64", type="string_array"),
    Param("progress_period_s", 1.0, "training/progress publish period", min=0.05),
)


def _split(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


class OfflineDistiller(Node):
    def __init__(self) -> None:
        super().__init__("offline_distiller")
        self.p = declare_params(self, PARAMS)
        stores = _split(self.p.stores)
        experts = _split(self.p.experts)
        if not stores:
            raise ParamError("node 'offline_distiller': parameter 'stores' is empty; expected store folders")
        for s in stores:
            if not Path(s).is_dir():
                raise ParamError(f"node 'offline_distiller': parameter 'stores': {s!r} is not a folder")
        if len(experts) not in (1, len(stores)):
            raise ParamError(f"node 'offline_distiller': parameter 'experts' has {len(experts)} entries for "
                             f"{len(stores)} stores; expected one per store or a single one")
        self.stores, self.experts = stores, experts
        self.state: dict[str, Any] = {"job": "distill", "stage": "starting", "step": 0, "total": self.p.steps,
                                      "out": self.p.out, "done": False, "error": ""}
        self.started = time.monotonic()
        self.pub_progress = topics.publisher(self, "training_progress")
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.timer = self.create_timer(self.p.progress_period_s, self._publish)

    def _progress(self, stage: str, fraction: float, details: Mapping[str, Any]) -> None:
        """The job's progress callback (its thread): mirror stage, step/total, tasks and loss into the state."""
        if stage == "done":
            return  # "done" is published with the results, once they are in the state
        self.state["stage"] = stage
        for key in ("step", "total"):
            if key in details:
                self.state[key] = int(details[key])
        if stage == "distilling" and "tasks" in details:
            self.state["tasks"] = list(details["tasks"])
        if "loss" in details:
            self.state.update(loss=float(details["loss"]), samples_per_s=round(float(details["samples_per_s"]), 1))
            self.state.setdefault("first_loss", float(details["loss"]))
            self._publish()  # every logged row reaches the topic, however fast the distillation runs

    def _job(self) -> DistillJob:
        from polytask.learning.config import parse_overrides
        from polytask.learning.distill.pipeline import DistillJob

        return DistillJob(experts=self.experts, stores=self.stores, out=self.p.out,
                          config=self.p.config_file or None,
                          overrides=parse_overrides([o for o in self.p.overrides if o.strip()]), goal=self.p.goal,
                          goal_images=self.p.goal_images or None, steps=self.p.steps, lifelong=self.p.lifelong,
                          eval_episodes=self.p.eval_episodes)

    def _run(self) -> None:
        from polytask.learning.distill.pipeline import run_distillation

        self.state["stage"] = "relabelling"
        try:  # a bad override is reported on the topic like any other failure of the job
            outcome = run_distillation(self._job(), progress=self._progress)
            self.state.update(stage="done", checkpoint=str(outcome.checkpoint))
            if outcome.scores:
                self.state.update(eval=outcome.scores,
                                  effective_tasks=round(sum(outcome.scores.values()), 3))
            self.get_logger().info(f"distillation done: {self.state.get('checkpoint')} effective tasks "
                                   f"{self.state.get('effective_tasks')}")
        except Exception as err:  # reported on the progress topic; the node stays up
            self.state.update(stage="failed", error=f"{type(err).__name__}: {err}")
            self.get_logger().error(f"distillation failed: {self.state['error']}\n{traceback.format_exc()}")
        finally:
            self.state["done"] = True
            self._publish()

    def _publish(self) -> None:
        try:
            self.pub_progress.publish(json_string({**self.state,
                                                   "seconds": round(time.monotonic() - self.started, 1)}))
        except Exception:  # the context may be shutting down
            pass

    def close(self) -> None:
        self._publish()


def main(args: list[str] | None = None) -> int:
    return run_node(OfflineDistiller, args)


if __name__ == "__main__":
    raise SystemExit(main())
