"""Lifelong distillation: tasks arrive one at a time; the unified policy never grows.

Adding task N+1 (`add_task`) trains the SAME student (warm-started from Π_N, same parameter count) on:
- `polytask`: the relabelled stores of tasks 1..N+1, sampled uniformly as in Algorithm 2 (the paper's method);
- `finetune`: task N+1's data only (the Fine-tuning baseline: sequential fine-tuning, which forgets).
After each addition the new policy is evaluated on every task seen so far, and the stage (policy checkpoint,
per-task scores, effective tasks, parameter count) is appended to `<run>/<method>/history.json`, which the
forgetting plot reads. The input normaliser of a state student is recomputed over the tasks seen so far (both
methods alike): it is a buffer, not a parameter. A stage killed midway resumes from its own distillation state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from polytask.learning.distill.config import DistillConfig
from polytask.learning.distill.data import TaskData, normalizer
from polytask.learning.distill.distill import distill, new_student
from polytask.learning.policies.evaluate import evaluate
from polytask.learning.policies.student import StudentPolicy, load_student
from polytask.learning.reporting.lifelong import Stage, next_stage, write_history

METHODS = ("polytask", "finetune")


def add_task(method_dir: str | Path, method: str, datasets: Mapping[str, TaskData], order: Sequence[str],
             goals: Mapping[str, np.ndarray], cfg: DistillConfig, steps: int, eval_episodes: int = 10,
             eval_seed: int = 1000, progress: bool = False,
             log: Callable[[str], None] = print,
             on_log: Callable[[dict[str, float]], None] | None = None,
             on_evaluate: Callable[[], None] | None = None) -> Stage:
    """Add the next task of `order` (the first not yet in the history) and return the new stage.

    `on_log` receives the distiller's logged rows; `on_evaluate` is called once training is over and the
    evaluation of every seen task begins (so a watcher can tell the two phases apart)."""
    if method not in METHODS:
        raise ValueError(f"lifelong method {method!r} unknown; expected one of {METHODS}")
    method_dir = Path(method_dir)
    history, k = next_stage(method_dir, order)
    new = order[k]
    seen = list(order[: k + 1])
    start = time.perf_counter()
    train_tasks = seen if method == "polytask" else [new]
    train_data = [datasets[t] for t in train_tasks]
    if history:
        student, _goals, _h, _t = load_student(history[-1]["checkpoint"])
    else:
        student = new_student(cfg, train_data, {t: goals[t] for t in train_tasks})
    before = student.num_parameters()
    if cfg.obs == "state":
        student.set_normalizer(*normalizer([datasets[t] for t in seen]))
    stage_dir = method_dir / f"stage_{k + 1:02d}"
    distiller, _res = distill(train_data, {t: goals[t] for t in train_tasks}, cfg, run_dir=stage_dir,
                              student=student, steps=steps, resume=True, progress=progress,
                              header_extra={"lifelong_method": method, "stage": k + 1}, on_log=on_log)
    if distiller.student.num_parameters() != before:
        raise RuntimeError(f"lifelong {method}: parameter count changed from {before} to "
                           f"{distiller.student.num_parameters()} at stage {k + 1}")
    # The stage's policy knows the goals of every task seen so far (fine-tuning too: it is asked about all).
    distiller.goals = {t: goals[t] for t in seen}
    distiller.tasks = seen
    ckpt = distiller.save_student(stage_dir / "student.safetensors")
    policy = StudentPolicy(distiller.student, {t: goals[t] for t in seen})
    if on_evaluate is not None:
        on_evaluate()
    scores = {}
    for t in seen:
        scores[t] = evaluate(policy, t, episodes=eval_episodes, seed=eval_seed,
                             render=cfg.obs == "pixels").mean_score
    stage = Stage(index=k + 1, task=new, tasks=seen, scores=scores, effective=float(sum(scores.values())),
                  parameters=before, checkpoint=str(ckpt), seconds=time.perf_counter() - start, train_steps=steps)
    write_history(method_dir, [*history, stage.to_dict()])
    log(f"[lifelong {method}] +{new}: {k + 1} tasks, effective {stage.effective:.2f}, params {before}, "
        f"{stage.seconds:.0f}s")
    return stage
