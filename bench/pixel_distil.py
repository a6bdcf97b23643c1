"""Run 4 (bench/pixel_runs.py distil): run 1's pixel experts distilled into one pixel student.

`polytask distill`'s job (`run_distillation`) with each expert as the teacher of its own replay store (the experts'
run folders in the job's work folder: run 1 in the same job), a one-hot pixel student of Table I's network, steps
sized from the measured step rate, evaluated on the experts' evaluation seeds against the experts' final scores.
"""

from __future__ import annotations

import shutil
import time
from typing import Any

import numpy as np
import pixel_common as pc
from pixel_common import EVAL_SEED, Job, slug
from pixel_students import eval_seconds, relabel, step_rate, student_overrides


def distil(job: Job, share: float) -> dict[str, Any]:
    """Run 4: `polytask distill`'s job over run 1's experts and their replay stores (pixels, one-hot goals)."""
    from polytask.learning.distill.data import load_task
    from polytask.learning.distill.pipeline import DistillJob, run_distillation

    p = job.p
    experts = {t: c for t in p.expert_tasks if (c := job.expert_checkpoint(t)) is not None}
    if not experts:
        raise RuntimeError(f"distil needs run 1's experts in {job.work}/experts (run `experts` first, same job)")
    end = job.budget.deadline(share)
    replay = {t: job.work / "experts" / slug(t) / "replay" for t in experts}
    out = job.work / "distil"
    shutil.rmtree(out, ignore_errors=True)
    res: dict[str, Any] = {"relabel": relabel(job, replay, {t: str(c) for t, c in experts.items()}, out / "relabelled")}
    from polytask.learning import goals as G

    first = next(iter(experts))
    rate = step_rate(
        job,
        load_task(out / "relabelled" / slug(first), first, pixels=True),
        G.task_goals("onehot", list(experts), 16),
        "onehot",
    )
    train_s = max(0.0, end - time.time() - 1.5 * eval_seconds(job, list(experts), p.eval_episodes) - 10)
    steps = int(np.clip(rate * train_s, p.student_min_steps, p.student_max_steps))
    outcome = run_distillation(
        DistillJob(
            experts=[str(c) for c in experts.values()],
            stores=[str(r) for r in replay.values()],
            out=out,
            overrides={**student_overrides(job, "onehot"), "warmup_steps": min(500, steps // 10)},
            steps=steps,
            eval_episodes=p.eval_episodes,
            eval_seed=EVAL_SEED,
            resume=False,
        ),
        log=job.log,
    )
    rl_runs = job.report.runs.get("experts", {}).get("runs", [])
    expert_scores = {r["task"]: r["success"] for r in rl_runs if r.get("status") == "ok"}
    mean_expert = float(np.mean([expert_scores[t] for t in experts])) if set(experts) <= set(expert_scores) else None
    mean_student = float(np.mean([outcome.scores[t] for t in experts]))
    res.update(
        tasks=list(experts),
        scores=outcome.scores,
        experts=expert_scores,
        steps=outcome.step,
        student_mean=mean_student,
        experts_mean=mean_expert,
        parameters=outcome.parameters,
        loss_last=outcome.result.final_loss if outcome.result else None,
        bar="student mean >= experts' mean - 0.05",
        bar_met=None if mean_expert is None else bool(mean_student >= mean_expert - 0.05),
    )
    return res


def distil_rows(res: dict[str, Any]) -> list[str]:
    rows = [
        (t.split("/")[-1], res["relabel"][t]["transitions"], res["experts"].get(t, "-"), res["scores"][t])
        for t in res["tasks"]
    ]
    rows.append(("**mean**", "", res["experts_mean"] if res["experts_mean"] is not None else "-", res["student_mean"]))
    return [
        *pc.table(["task", "replay transitions relabelled", "expert (run 1)", "PolyTask student"], rows),
        "",
        f"{res['steps']} distillation steps; bar {res['bar']}: "
        f"{'met' if res['bar_met'] else 'not met' if res['bar_met'] is not None else 'no expert scores'}",
    ]


RENDER = {"distil": distil_rows}
