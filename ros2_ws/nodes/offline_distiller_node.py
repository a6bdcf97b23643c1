"""Offline distiller: episode stores + expert teachers in, one unified policy out (PolyTask phase 2), as a node.

A thin adapter over `polytask distill` (ros2_ws/commands/distill.py, which composes learning/distill: relabel
every store with its teacher, distil a student — multi-task, or lifelong add-task — then evaluate it). The node
runs that job in a background thread, reports progress on `training/progress` (latched JSON: stage, step/total,
loss, samples/s, then the per-task evaluation and the effective number of tasks) and stays up afterwards so the
result can be read. Rerunning with the same `out` folder resumes (the job's own resume).

Progress comes from the distiller's `on_log` rows: `Distiller.train` is wrapped in this process only so every
row reaches the topic (the distillation code itself is untouched).
"""

from __future__ import annotations

import argparse
import csv
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from rclpy.node import Node

from polytask.ros import topics
from polytask.ros.node_base import Param, ParamError, declare_params, json_string, run_node

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
        self.args = argparse.Namespace(
            experts=experts, stores=stores, out=self.p.out, config=self.p.config_file or None, goal=self.p.goal,
            goal_images=self.p.goal_images or None, steps=self.p.steps, lifelong=self.p.lifelong,
            method="polytask", eval_episodes=self.p.eval_episodes, eval_seed=1000, no_resume=False,
            set=[o for o in self.p.overrides if o.strip()], no_progress=True)
        self.state: dict[str, Any] = {"job": "distill", "stage": "starting", "step": 0, "total": self.p.steps,
                                      "out": self.p.out, "done": False, "error": ""}
        self.started = time.monotonic()
        self.pub_progress = topics.publisher(self, "training_progress")
        self._hook_progress()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.timer = self.create_timer(self.p.progress_period_s, self._publish)

    def _hook_progress(self) -> None:
        from polytask.learning.distill import distill as D

        original = D.Distiller.train
        node = self

        def train(self, total_steps, progress=False, on_log=None):
            node.state.update(stage="distilling", total=int(total_steps), tasks=list(self.tasks))

            def log_row(row: dict[str, float]) -> None:
                node.state.update(step=int(row["step"]), loss=float(row["loss"]),
                                  samples_per_s=round(float(row["samples_per_s"]), 1))
                node.state.setdefault("first_loss", float(row["loss"]))
                node._publish()  # every logged row reaches the topic, however fast the distillation runs
                if on_log is not None:
                    on_log(row)

            result = original(self, total_steps, progress=progress, on_log=log_row)
            node.state.update(stage="evaluating", step=int(result.step))
            return result

        D.Distiller.train = train

    def _run(self) -> None:
        from polytask.commands import distill as job

        self.state["stage"] = "relabelling"
        try:
            job.run(self.args)
            self.state.update(stage="done", **self._results())
            self.get_logger().info(f"distillation done: {self.state.get('checkpoint')} effective tasks "
                                   f"{self.state.get('effective_tasks')}")
        except Exception as err:  # reported on the progress topic; the node stays up
            self.state.update(stage="failed", error=f"{type(err).__name__}: {err}")
            self.get_logger().error(f"distillation failed: {self.state['error']}\n{traceback.format_exc()}")
        finally:
            self.state["done"] = True
            self._publish()

    def _results(self) -> dict[str, Any]:
        out = Path(self.p.out)
        found: dict[str, Any] = {}
        student = out / "student.safetensors"
        if student.exists():
            found["checkpoint"] = str(student)
        eval_csv = out / "eval.csv"
        if eval_csv.exists():
            with open(eval_csv, newline="") as fh:
                rows = list(csv.DictReader(fh))
            scores = {r["task"]: float(r["score"]) for r in rows if "task" in r and "score" in r}
            found["eval"] = scores
            found["effective_tasks"] = round(sum(scores.values()), 3)
        return found

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
