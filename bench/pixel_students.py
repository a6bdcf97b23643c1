"""The pixel students of runs 3, 4 and 5 (bench/pixel_runs.py): exploratory pixel stores, relabelling, students.

- `students(job, "table1" | "curve", share)`: per task an exploratory pixel store (noisy scripted teachers,
  placements drawn at every reset), relabelled by the task's pixel expert where the job's work folder holds one,
  else by its scripted teacher on the privileged state; then one pixel student for all tasks (one-hot goals, and
  image goals for Table I) and pixel GCBC from 1 demo per task, same network, same evaluation. Steps are sized
  from the student's step rate measured on this machine; `curve` also evaluates during training.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pixel_common as pc
from pixel_common import EVAL_SEED, Job, slug


def collect(job: Job, tasks: Sequence[str], end: float) -> dict[str, Any]:
    """Exploratory pixel stores (noisy scripted teachers, placements at every reset), two rounds: the first
    measures the rate, the second extends each store as far as `end` (and `transitions`) allow."""
    p = job.p

    def fill(n: int) -> list[dict[str, Any]]:
        return pc.pool_map(_collect, [(t, str(job.work / "stores" / slug(t)), n) for t in tasks], p.collect_workers)

    first = max(130, p.transitions // 5)
    t0 = time.time()
    reports = fill(first)
    took = max(time.time() - t0, 1e-6)
    job.env_fps = first * -(-len(tasks) // max(1, p.collect_workers)) / took  # per process, start-up included
    target = int(min(p.transitions, first + first * max(0.0, end - time.time()) / took))
    if target > first:
        reports = fill(target)
    job.log(f"collect: {max(first, target)} transitions per task ({job.env_fps:.0f} rendered steps/s per process)")
    return {"per_task": {r["task"]: r for r in reports}, "target": max(first, target), "env_fps": job.env_fps}


def _collect(args: tuple[str, str, int]) -> dict[str, Any]:
    from polytask.learning.distill.collect import collect_noisy_store

    task, root, n = args
    r = collect_noisy_store(task, root, n, seed=0, render=True)
    return {"task": task, "transitions": r.transitions, "episodes": r.episodes, "noisy_success": r.success_rate}


def relabel(job: Job, stores: dict[str, Path], teachers: dict[str, str], out: Path) -> dict[str, Any]:
    from polytask.learning.data.episodes import EpisodeStore
    from polytask.learning.distill.pipeline import make_teacher
    from polytask.learning.distill.relabel import relabel_store

    done = {}
    for t, root in stores.items():
        r = relabel_store(
            EpisodeStore(root, create=False), out / slug(t), t, make_teacher(teachers[t], t, job.p.device)
        )
        done[t] = {
            "teacher": "expert" if teachers[t] != "scripted" else "scripted",
            "episodes": r.episodes,
            "transitions": r.transitions,
        }
    return done


def student_overrides(job: Job, goal: str) -> dict[str, Any]:
    p = job.p
    return {
        "obs": "pixels",
        "goal": goal,
        "lr": p.student_lr,
        "lr_schedule": "cosine",
        "batch_size": p.student_batch,
        "device": p.device,
        "compile": job.student_compile,
        "threads": job.threads,
        "checkpoint_every": 10**9,
        "student.hidden": p.student_hidden,
        "student.layers": p.student_layers,
        "student.feature_dim": p.student_feature,
        "student.frame_stack": 3,
        "student.goal_capacity": 16,
    }


def config(job: Job, goal: str, steps: int, log_every: int = 0):
    from polytask.learning.config import load_config
    from polytask.learning.distill.config import DistillConfig

    return load_config(
        DistillConfig,
        None,
        {
            **student_overrides(job, goal),
            "steps": steps,
            "warmup_steps": min(500, steps // 10),
            "log_every": log_every or max(1, steps // 20),
        },
    )


def step_rate(job: Job, data: Any, goals: dict[str, np.ndarray], goal: str) -> float:
    """Distillation steps/s of this student on this machine (a few steps after a warm-up, on one task's data)."""
    from polytask.learning.distill.distill import distill

    n = 10 if job.p.name == "toy" else 40
    try:
        distiller, _ = distill([data], {data.task: goals[data.task]}, config(job, goal, 5 + n), steps=5, resume=False)
    except Exception as err:  # the CUDA-graph step on a card it never ran on: the job's students go eager
        if job.student_compile == "none":
            raise
        job.log(f"students: compile {job.student_compile} failed ({type(err).__name__}: {err}); eager from here")
        job.notes.append(f"distillation compile {job.student_compile} failed: {type(err).__name__}: {err}")
        job.student_compile = "none"
        return step_rate(job, data, goals, goal)
    t0 = time.perf_counter()
    distiller.train(5 + n)
    return n / (time.perf_counter() - t0)


def evaluate_student(
    job: Job, student: Any, goals: dict[str, np.ndarray], tasks: Sequence[str], episodes: int
) -> dict[str, float]:
    from polytask.learning.policies.evaluate import evaluate
    from polytask.learning.policies.student import StudentPolicy

    policy = StudentPolicy(student, goals, device=job.p.device)
    return {t: evaluate(policy, t, episodes=episodes, seed=EVAL_SEED, task=job.eval_task(t)).mean_score for t in tasks}


def train_student(
    job: Job,
    name: str,
    datasets: Sequence[Any],
    goals: dict[str, np.ndarray],
    goal: str,
    steps: int,
    curve: bool = False,
) -> dict[str, Any]:
    """One pixel student (or GCBC, given demo rows) trained for `steps`, evaluated on its tasks. `curve` (run 5):
    also evaluated before training (the same episodes as the final evaluation) and at `curve_points` steps
    during it (`curve_episodes` per task)."""
    from polytask.learning.distill.distill import distill, new_student

    p, tasks = job.p, [d.task for d in datasets]
    every = max(1, steps // (p.curve_points + 1))
    at = {every * k for k in range(1, p.curve_points + 1)} - {steps} if curve else set()
    cfg = config(job, goal, steps, log_every=every if at else 0)
    student = new_student(cfg, datasets, goals)
    points: list[list[float]] = []

    def on_log(row: dict[str, float]) -> None:
        if int(row["step"]) in at:
            scores = evaluate_student(job, student, goals, tasks, p.curve_episodes)
            points.append([int(row["step"]), float(sum(scores.values())), float(row["loss"])])
            student.train()
            job.log(f"{name}: step {int(row['step'])}: effective {points[-1][1]:.2f}, loss {row['loss']:.4f}")

    if curve:
        start = evaluate_student(job, student, goals, tasks, p.eval_episodes)
        points.append([0, float(sum(start.values())), float("nan")])
        student.train()
    run_dir = job.work / "students" / name
    shutil.rmtree(run_dir, ignore_errors=True)
    distiller, res = distill(
        list(datasets),
        goals,
        cfg,
        run_dir=run_dir,
        student=student,
        resume=False,
        on_log=on_log,
        header_extra={"method": name},
    )
    ckpt = distiller.save_student()
    t0 = time.perf_counter()
    scores = evaluate_student(job, distiller.student, goals, tasks, p.eval_episodes)
    out = {
        "scores": scores,
        "effective": float(sum(scores.values())),
        "steps": res.step,
        "train_s": round(res.seconds, 1),
        "eval_s": round(time.perf_counter() - t0, 1),
        "samples_per_s": round(res.samples_per_s),
        "loss_first": distiller.history[0]["loss"],
        "loss_last": distiller.history[-1]["loss"],
        "parameters": distiller.student.num_parameters(),
        "checkpoint": str(ckpt),
    }
    if curve:
        out["start_scores"] = start
        out["curve"] = [*points, [res.step, out["effective"], float(res.final_loss)]]
        out["curve_episodes"] = p.curve_episodes
    job.log(
        f"{name}: effective {out['effective']:.2f} / {len(tasks)} after {res.step} steps "
        f"({res.seconds:.0f} s of training)"
    )
    return out


def eval_seconds(job: Job, tasks: Sequence[str], episodes: int) -> float:
    from polytask.sim import registry

    frames = sum(registry.spec(t).horizon for t in tasks) * episodes
    return 1.5 * frames / max(job.env_fps, 1.0)  # rendering + the student's inference at batch 1


def students(job: Job, name: str, share: float) -> dict[str, Any]:
    """Runs 3 (table1) and 5 (curve): stores, relabelling, the pixel students and pixel GCBC."""
    from polytask.learning import goals as G
    from polytask.learning.baselines import demo_datasets
    from polytask.learning.data.episodes import EpisodeStore
    from polytask.learning.distill.data import load_task
    from polytask.sim import registry

    p, curve = job.p, name == "curve"
    tasks = list(dict.fromkeys(t for g in p.table_tasks for t in registry.names(g)))
    end = job.budget.deadline(share)
    kinds = ["onehot"] if curve else ["onehot", "image"]
    # the 1 demo per task: GCBC's data and the image goals
    demos = job.demos(tasks) if "image" in kinds or p.gcbc_max_steps > 0 else None
    start = time.time()
    res: dict[str, Any] = {
        "tasks": tasks,
        "eval_episodes": p.eval_episodes,
        "collect": collect(job, tasks, start + 0.3 * (end - start)),
    }
    stores = {t: job.work / "stores" / slug(t) for t in tasks}
    teachers = {t: str(job.expert_checkpoint(t) or "scripted") for t in tasks}
    rel = job.work / "relabelled"
    shutil.rmtree(rel, ignore_errors=True)
    res["relabel"] = relabel(job, stores, teachers, rel)
    data = [load_task(rel / slug(t), t, pixels=True, frame_stack=3) for t in tasks]
    goal_sets = {"onehot": G.task_goals("onehot", tasks, 16)}
    if "image" in kinds:
        goal_sets["image"] = {t: G.goal_image_from_store(EpisodeStore(demos, create=False), t) for t in tasks}
    rates = {k: step_rate(job, data[0], goal_sets[k], k) for k in kinds}
    # evaluations still to come, in full evaluations: each student's, GCBC's, and the curve's start and points
    n_eval = len(kinds) + 1 + (1 + p.curve_points * p.curve_episodes / p.eval_episodes if curve else 0)
    train_s = max(0.0, end - time.time() - n_eval * eval_seconds(job, tasks, p.eval_episodes))
    # the students' shares of the training time; GCBC fits 1 demo per task and needs few steps
    split = {"onehot": 0.85, "gcbc": 0.15} if curve else {"onehot": 0.5, "image": 0.4, "gcbc": 0.1}
    steps = {k: int(np.clip(rates[k] * train_s * split[k], p.student_min_steps, p.student_max_steps)) for k in kinds}
    steps["gcbc"] = int(np.clip(rates["onehot"] * train_s * split["gcbc"], p.student_min_steps, p.gcbc_max_steps))
    res["rates_steps_per_s"], res["planned_steps"] = rates, steps
    job.log(f"students: {train_s:.0f} s of training left; steps {steps}; rates {rates}")
    for k in kinds:
        res[f"polytask_{k}"] = train_student(
            job, f"polytask-{k}", data, goal_sets[k], k, steps[k], curve=curve and k == "onehot"
        )
        job.report.runs[name] = {"status": "running", **res}  # what a job cut short still returns
        job.report.save()
    if p.gcbc_max_steps > 0:
        gcbc_data = list(demo_datasets(EpisodeStore(demos, create=False), tasks, 1, pixels=True).values())
        res["gcbc_onehot"] = train_student(job, "gcbc-onehot", gcbc_data, goal_sets["onehot"], "onehot", steps["gcbc"])
    if curve:
        res["curve_png"] = str(curve_plot(res, job.report.out / "curve.png"))
    else:
        s, g = res["polytask_onehot"]["effective"], res["gcbc_onehot"]["effective"]
        res["bar"] = "student >= 14.6 of 16 (one-hot); GCBC <= half of the student; image goals reported"
        res["bar_met"] = bool(s >= 14.6 and g <= s / 2)
    return res


def curve_plot(res: dict[str, Any], path: Path) -> Path:
    """Run 5's figure: effective tasks of the one-hot student over its steps (GCBC's final figure beside it) and
    the training loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from polytask.learning.data.atomic import atomic_path

    curve = np.asarray(res["polytask_onehot"]["curve"], dtype=float)
    fig, ax = plt.subplots(figsize=(6.0, 3.6), layout="constrained")
    ax.plot(curve[:, 0], curve[:, 1], marker="o", label="PolyTask pixel student (one-hot)")
    if "gcbc_onehot" in res:
        ax.axhline(res["gcbc_onehot"]["effective"], color="gray", ls="--", label="pixel GCBC, 1 demo (final)")
    ax.set_ylim(-0.1, len(res["tasks"]) + 0.1)
    ax.set_xlabel("distillation step")
    ax.set_ylabel(f"effective tasks (of {len(res['tasks'])})")
    loss = ax.twinx()
    loss.plot(curve[1:, 0], curve[1:, 2], color="tab:red", alpha=0.5, marker=".", label="loss (right)")
    loss.set_ylabel("MSE to the teacher")
    lines = ax.get_legend_handles_labels()
    more = loss.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="center right")
    ax.set_title("Meta-World from 84x84 frames, relabelled noisy stores", fontsize=9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def student_rows(res: dict[str, Any]) -> list[str]:
    cols = [k for k in ("polytask_onehot", "polytask_image", "gcbc_onehot") if k in res]
    names = {
        "polytask_onehot": "PolyTask (one-hot)",
        "polytask_image": "PolyTask (image goal)",
        "gcbc_onehot": "GCBC, 1 demo (one-hot)",
    }
    rows = [
        (
            t.split("/")[-1],
            res["relabel"][t]["teacher"],
            res["collect"]["per_task"][t]["transitions"],
            *[res[c]["scores"][t] for c in cols],
        )
        for t in res["tasks"]
    ]
    rows.append(("**effective tasks**", "", "", *[res[c]["effective"] for c in cols]))
    lines = pc.table(["task", "teacher", "store transitions", *[names[c] for c in cols]], rows)
    lines += [
        "",
        "| student | steps | training s | samples/s | loss first -> last | parameters |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {names[c]} | {res[c]['steps']} | {res[c]['train_s']} | {res[c]['samples_per_s']} | "
        f"{res[c]['loss_first']:.4f} -> {res[c]['loss_last']:.4f} | {res[c]['parameters']} |"
        for c in cols
    ]
    if "curve" in res["polytask_onehot"]:
        lines += [
            "",
            f"learning curve of the one-hot student (effective tasks; during training on "
            f"{res['polytask_onehot']['curve_episodes']} episodes per task, before and after training on "
            f"{res['eval_episodes']}):",
            "",
        ]
        lines += pc.table(["step", "effective tasks", "loss"], res["polytask_onehot"]["curve"])
    if "bar" in res:
        lines += ["", f"bar {res['bar']}: {'met' if res['bar_met'] else 'not met'}"]
    return lines


RENDER = {"table1": student_rows, "curve": student_rows}
