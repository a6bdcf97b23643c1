"""The distillation job end to end: relabel every store with its teacher, distil one student, evaluate it.

Why here and not in the CLI: `polytask distill` and the ROS offline distiller run the same job, and a notebook or
cluster job should be able to run it with no ROS and no argument parsing. `run_distillation(job, progress)` is
that one job; the command maps its flags onto a `DistillJob`, the node maps its parameters, and both watch it
through the `progress(stage, fraction, details)` callback.

Stages, in order: `relabelling` (fraction: stores done), `distilling` (steps done; `details` carries the
distiller's log row: step, total, loss, lr, samples_per_s, tasks), `evaluating` (tasks evaluated), `done` (1.0).
With `lifelong`, `distilling` and `evaluating` alternate once per added task, their fractions counted over all
the tasks this job adds.

Outputs in `job.out`: `relabelled/<task>/` (resumable), `tasks.json`; multi-task: `student.safetensors`,
`distill_state.safetensors`, `distill_history.csv`, `eval.csv`; lifelong: `lifelong/<method>/stage_NN/` and
`lifelong/<method>/history.json`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polytask.learning import goals as G
from polytask.learning.config import load_config
from polytask.learning.data.atomic import write_text
from polytask.learning.data.episodes import EpisodeStore
from polytask.learning.distill import ddp
from polytask.learning.distill.config import DistillConfig
from polytask.learning.distill.data import load_task
from polytask.learning.distill.distill import DistillResult, distill
from polytask.learning.distill.lifelong import METHODS, add_task
from polytask.learning.distill.relabel import PolicyTeacher, ScriptedTeacher, Teacher, relabel_store
from polytask.learning.policies.evaluate import effective_tasks, evaluate, write_csv
from polytask.learning.policies.expert import load_policy
from polytask.learning.policies.student import StudentPolicy
from polytask.learning.reporting.lifelong import read_history
from polytask.sim import registry

STAGES = ("relabelling", "distilling", "evaluating", "done")
ProgressFn = Callable[[str, float, Mapping[str, Any]], None]


@dataclass(frozen=True)
class DistillJob:
    """Everything one distillation job needs; the defaults are `polytask distill`'s."""

    experts: Sequence[str]  # one teacher per store (checkpoint path or "scripted"), or a single one for all
    stores: Sequence[str | Path]  # episode stores to relabel, one task each
    out: str | Path  # run folder
    config: str | Path | None = None  # distillation YAML; None: Table V defaults
    overrides: Mapping[str, Any] = field(default_factory=dict)  # dotted config keys, applied after the YAML
    goal: str | None = None  # student goal modality; None: the config's
    goal_images: str | Path | None = None  # demo store whose successful demos' last frames are image goals
    steps: int | None = None  # gradient steps (per added task when lifelong); None: the config's
    lifelong: bool = False  # add the stores' tasks to the lifelong run in `out`, one stage per task
    method: str = "polytask"  # lifelong method: "polytask" or "finetune"
    eval_episodes: int = 10  # episodes per task; 0 skips evaluation (lifelong always evaluates at least 1)
    eval_seed: int = 1000
    resume: bool = True  # continue an existing distillation state in `out`
    show_progress: bool = False  # a tqdm bar on the terminal
    relabelled: str | Path | None = None  # the relabelled stores' root (default <out>/relabelled); jobs with the
    # same stores and teachers may share one

    def __post_init__(self) -> None:
        if not self.stores:
            raise ValueError("distill job: no stores given")
        if len(self.experts) not in (1, len(self.stores)):
            raise ValueError(f"--experts has {len(self.experts)} entries for {len(self.stores)} stores; give one "
                             "per store or a single one for all")
        if self.method not in METHODS:
            raise ValueError(f"distill job: method {self.method!r} unknown; expected one of {METHODS}")
        if self.eval_episodes < 0:
            raise ValueError(f"distill job: eval_episodes is {self.eval_episodes}, expected >= 0")
        if self.goal is not None and self.goal not in G.GOAL_KINDS:
            raise ValueError(f"distill job: goal {self.goal!r} unknown; expected one of {G.GOAL_KINDS}")

    def teachers(self) -> list[str]:
        return list(self.experts) * len(self.stores) if len(self.experts) == 1 else list(self.experts)


@dataclass
class DistillOutcome:
    """What the job produced: the final policy and, when evaluated, its per-task scores."""

    tasks: list[str]
    checkpoint: Path
    step: int
    parameters: int
    scores: dict[str, float]  # per task, as in the evaluation table (rounded to 4 places); empty if not evaluated
    effective_tasks: float | None  # sum of the mean scores (the paper's effective number of tasks)
    resumed_from: int = 0
    result: DistillResult | None = None  # the multi-task distillation's figures (loss, seconds, samples/s)


def make_teacher(expert: str, task_name: str, device: str) -> Teacher:
    """`scripted` -> the task's scripted expert; otherwise an expert checkpoint loaded as a policy."""
    task = registry.make(task_name, render=False)
    if expert == "scripted":
        return ScriptedTeacher(task)
    if not Path(expert).is_file():
        raise FileNotFoundError(f"--experts: {expert!r} is neither 'scripted' nor a checkpoint file")
    return PolicyTeacher(load_policy(expert, device=device, task=task_name), task.goal)


def student_goal_width(cfg: DistillConfig) -> int:
    """The configured width of the student's vector goal (0: the goal module's rule)."""
    return {"onehot": cfg.student.goal_capacity, "sinusoid": cfg.student.sinusoid_dim}.get(cfg.goal, 0)


def student_goals(cfg: DistillConfig, tasks: Sequence[str], goal_images: str | Path | None) -> dict[str, np.ndarray]:
    """One goal per task in the config's modality; vector goals are sized for the whole suite, so a lifelong run
    that adds tasks never changes the goal width."""
    if cfg.goal == "image":
        if not goal_images:
            raise ValueError("--goal image needs --goal-images <demo store> (last frame of a successful demo)")
        demo_store = EpisodeStore(goal_images, create=False)
        return {t: G.goal_image_from_store(demo_store, t) for t in tasks}
    return G.task_goals(cfg.goal, tasks, student_goal_width(cfg))


def run_distillation(job: DistillJob, progress: ProgressFn | None = None,
                     log: Callable[[str], None] = print) -> DistillOutcome:
    """Run `job` (resumably: the same job again continues where a killed one stopped) and return its outcome."""
    report = progress or (lambda stage, fraction, details: None)
    overrides = dict(job.overrides)
    if job.goal:
        overrides["goal"] = job.goal
    cfg = load_config(DistillConfig, job.config, overrides)
    out = Path(job.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    # Under torchrun (several ranks): rank 0 relabels, reports and writes; every rank trains on its share.
    if job.lifelong and ddp.from_env().active:
        raise ValueError("--lifelong distils on one process; run it without --nproc / torchrun")
    ctx, device = ddp.setup(cfg.device)
    if ctx.active:
        cfg = dataclasses.replace(cfg, device=device)
        if not ctx.main:
            report, log = (lambda stage, fraction, details: None), (lambda _: None)
            job = dataclasses.replace(job, show_progress=False)
    try:
        tasks = ddp.broadcast(_task_list(job, cfg, out, report, log) if ctx.main else None, ctx)
        goals = student_goals(cfg, tasks, job.goal_images)
        if job.lifelong:
            outcome = _lifelong(job, cfg, out, tasks, goals, report, log)
        else:
            outcome = _multitask(job, cfg, out, tasks, goals, report, log)
    finally:
        if ctx.active:
            ddp.teardown()
    report("done", 1.0, {})
    return outcome


def _task_list(job: DistillJob, cfg: DistillConfig, out: Path, report: ProgressFn,
               log: Callable[[str], None]) -> list[str]:
    """Relabel the stores, then the run's tasks in order (written to tasks.json)."""
    new_tasks = _relabel_all(job, cfg, out, report, log)
    known_path = out / "tasks.json"
    known = json.loads(known_path.read_text()) if known_path.exists() else []
    # lifelong: the tasks already in the run keep their place, the new ones follow in the order given
    tasks = list(known) + [t for t in new_tasks if t not in known] if job.lifelong else list(dict.fromkeys(new_tasks))
    write_text(known_path, json.dumps(tasks))
    return tasks


def _relabel_all(job: DistillJob, cfg: DistillConfig, out: Path, report: ProgressFn,
                 log: Callable[[str], None]) -> list[str]:
    """Relabel every task of every store into `out/relabelled/<task>` (resumable); the tasks in store order."""
    report("relabelling", 0.0, {})
    new_tasks = []
    for i, (expert, root) in enumerate(zip(job.teachers(), job.stores, strict=True)):
        store = EpisodeStore(root, create=False)
        tasks = store.tasks()
        if not tasks:
            raise ValueError(f"store {root}: no readable episodes")
        for task in tasks:
            rep = relabel_store(store, _relabelled(job, out, task), task, make_teacher(expert, task, cfg.device),
                                cap=cfg.buffer_per_task)
            log(f"relabelled {task}: {rep.episodes}/{rep.source_episodes} episodes, {rep.transitions} "
                f"transitions ({rep.written} new)")
            new_tasks.append(task)
        report("relabelling", (i + 1) / len(job.stores), {"tasks": list(new_tasks)})
    return new_tasks


def _relabelled(job: DistillJob, out: Path, task: str) -> Path:
    return Path(job.relabelled or out / "relabelled") / task.replace("/", "_")


def _load_data(job: DistillJob, cfg: DistillConfig, out: Path, tasks: Sequence[str]) -> dict[str, Any]:
    return {t: load_task(_relabelled(job, out, t), t, cap=cfg.buffer_per_task, pixels=cfg.obs == "pixels",
                         frame_stack=cfg.student.frame_stack, share=ddp.current()) for t in tasks}


def _row_details(row: Mapping[str, float], total: int, tasks: Sequence[str]) -> dict[str, Any]:
    return {**row, "step": int(row["step"]), "total": int(total), "tasks": list(tasks)}


def _multitask(job: DistillJob, cfg: DistillConfig, out: Path, tasks: list[str], goals: dict[str, np.ndarray],
               report: ProgressFn, log: Callable[[str], None]) -> DistillOutcome:
    data = _load_data(job, cfg, out, tasks)
    total = job.steps if job.steps is not None else cfg.steps
    report("distilling", 0.0, {"step": 0, "total": total, "tasks": list(tasks)})
    distiller, res = distill(list(data.values()), goals, cfg, run_dir=out, steps=job.steps, resume=job.resume,
                             progress=job.show_progress, header_extra={"method": "polytask"},
                             on_log=lambda row: report("distilling", row["step"] / total,
                                                       _row_details(row, total, tasks)))
    ckpt = distiller.save_student() if distiller.dist.main else out / "student.safetensors"
    if distiller.dist.active:  # training is over: all ranks leave together; rank 0 evaluates outside the group
        ddp.teardown(wait=True)
    if not distiller.dist.main:  # the other ranks of a data-parallel job are done: rank 0 writes and evaluates
        return DistillOutcome(tasks=list(tasks), checkpoint=out / "student.safetensors", step=res.step,
                              parameters=distiller.student.num_parameters(), scores={}, effective_tasks=None,
                              resumed_from=res.resumed_from)
    if res.resumed_from:
        log(f"resumed from step {res.resumed_from}")
    log(f"student: {ckpt} ({distiller.student.num_parameters()} parameters, step {res.step}, "
        f"{res.samples_per_s:.0f} samples/s)")
    outcome = DistillOutcome(tasks=list(tasks), checkpoint=ckpt, step=res.step,
                             parameters=distiller.student.num_parameters(), scores={}, effective_tasks=None,
                             resumed_from=res.resumed_from, result=res)
    if job.eval_episodes > 0:
        report("evaluating", 0.0, {"step": res.step})
        policy = StudentPolicy(distiller.student, goals)
        results = {}
        for i, t in enumerate(tasks):
            results[t] = evaluate(policy, t, episodes=job.eval_episodes, seed=job.eval_seed,
                                  render=cfg.obs == "pixels")
            report("evaluating", (i + 1) / len(tasks), {"task": t, "score": results[t].mean_score})
        write_csv(results, out / "eval.csv")
        for t, r in results.items():
            log(f"  {t:45s} {r.mean_score:.2f}")
        outcome.effective_tasks = effective_tasks(results)
        outcome.scores = {t: float(r.row()["score"]) for t, r in results.items()}
        log(f"effective tasks: {outcome.effective_tasks:.2f} / {len(tasks)}")
    return outcome


def _lifelong(job: DistillJob, cfg: DistillConfig, out: Path, tasks: list[str], goals: dict[str, np.ndarray],
              report: ProgressFn, log: Callable[[str], None]) -> DistillOutcome:
    data = _load_data(job, cfg, out, tasks)
    method_dir = out / "lifelong" / job.method
    steps = job.steps or cfg.steps
    first = len(read_history(method_dir))
    to_add = max(1, len(tasks) - first)
    while (k := len(read_history(method_dir))) < len(tasks):
        done, seen = k - first, tasks[: k + 1]

        def on_log(row: Mapping[str, float], done: int = done, seen: list[str] = seen) -> None:
            report("distilling", (done + row["step"] / steps) / to_add,
                   {**_row_details(row, steps, seen), "task": seen[-1]})

        def on_evaluate(done: int = done, seen: list[str] = seen) -> None:
            report("evaluating", done / to_add, {"task": seen[-1], "tasks": list(seen)})

        report("distilling", done / to_add, {"step": 0, "total": steps, "tasks": list(seen), "task": seen[-1]})
        add_task(method_dir, job.method, data, tasks, goals, cfg, steps=steps,
                 eval_episodes=max(1, job.eval_episodes), eval_seed=job.eval_seed, progress=job.show_progress,
                 log=log, on_log=on_log, on_evaluate=on_evaluate)
    hist = read_history(method_dir)
    last = hist[-1]
    log(f"lifelong {job.method}: {len(hist)} tasks, effective tasks {last['effective']:.2f}, "
        f"parameters {last['parameters']}")
    return DistillOutcome(tasks=list(last["tasks"]), checkpoint=Path(last["checkpoint"]),
                          step=int(last["train_steps"]), parameters=int(last["parameters"]),
                          scores={t: round(float(s), 4) for t, s in last["scores"].items()},
                          effective_tasks=float(last["effective"]))
