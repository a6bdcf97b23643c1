"""The distillation job as a library call (what `polytask distill` and the offline distiller node both run):
its progress callback reports the stages in order with fractions that end at 1.0, its outcome agrees with the
files it wrote, and running the same job again resumes instead of redoing anything."""

from __future__ import annotations

import csv

import pytest
import torch

from polytask.learning.distill.collect import collect_noisy_stores
from polytask.learning.distill.pipeline import DistillJob, run_distillation
from polytask.learning.policies.student import load_student

TASKS = ("metaworld/drawer-close", "metaworld/button-press")
STEPS = 40
SMALL = {"student.hidden": 32, "student.layers": 2, "lr": 1e-3, "log_every": 10, "checkpoint_every": 20}
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    return collect_noisy_stores(TASKS, tmp_path_factory.mktemp("pipeline"), 300)


def record():
    events = []
    return events, lambda stage, fraction, details: events.append((stage, fraction, dict(details)))


def check_fractions(events):
    """Within each stage the fraction never falls and stays in [0, 1]; the job ends with ("done", 1.0)."""
    last: dict[str, float] = {}
    for stage, fraction, _ in events:
        assert 0.0 <= fraction <= 1.0 + 1e-9, (stage, fraction)
        assert fraction >= last.get(stage, 0.0) - 1e-9, (stage, fraction, last)
        last[stage] = fraction
    assert events[-1][:2] == ("done", 1.0)


def test_progress_arrives_in_stage_order_and_the_rerun_resumes(stores, tmp_path):
    out = tmp_path / "run"
    job = DistillJob(experts=["scripted"], stores=stores, out=out, overrides=SMALL, steps=STEPS, eval_episodes=1)
    events, progress = record()
    outcome = run_distillation(job, progress=progress, log=lambda _: None)
    stages = [s for s, _, _ in events]
    assert list(dict.fromkeys(stages)) == ["relabelling", "distilling", "evaluating", "done"]
    assert stages == sorted(stages, key=["relabelling", "distilling", "evaluating", "done"].index)  # no going back
    check_fractions(events)
    for stage in ("relabelling", "distilling", "evaluating"):
        assert max(f for s, f, _ in events if s == stage) == pytest.approx(1.0)
    rows = [d for s, _, d in events if s == "distilling" and "loss" in d]
    assert [r["step"] for r in rows] == list(range(10, STEPS + 1, 10))
    assert all(r["total"] == STEPS and r["tasks"] == list(TASKS) for r in rows)

    _student, goals, header, _ = load_student(outcome.checkpoint)
    assert sorted(goals) == sorted(TASKS) and header["step"] == STEPS == outcome.step
    with open(out / "eval.csv", newline="") as fh:
        table = {r["task"]: float(r["score"]) for r in csv.DictReader(fh)}
    assert outcome.scores == table and sorted(table) == sorted(TASKS)

    events, progress = record()
    again = run_distillation(job, progress=progress, log=lambda _: None)
    assert again.resumed_from == STEPS and again.step == STEPS  # finished state found: nothing trained again
    assert not [d for s, _, d in events if s == "distilling" and "loss" in d]
    check_fractions(events)


def test_lifelong_job_alternates_distilling_and_evaluating_per_added_task(stores, tmp_path):
    job = DistillJob(experts=["scripted"], stores=stores, out=tmp_path / "ll", overrides=SMALL, steps=STEPS,
                     eval_episodes=1, lifelong=True)
    events, progress = record()
    outcome = run_distillation(job, progress=progress, log=lambda _: None)
    phases = [s for i, (s, _, _) in enumerate(events) if i == 0 or events[i - 1][0] != s]
    assert phases == ["relabelling", "distilling", "evaluating", "distilling", "evaluating", "done"]
    check_fractions(events)
    starts = [f for s, f, d in events if s == "distilling" and "loss" not in d]
    assert starts == [0.0, 0.5]  # counted over the two tasks this job adds
    assert outcome.tasks == list(TASKS) and sorted(outcome.scores) == sorted(TASKS)
    assert outcome.checkpoint.name == "student.safetensors" and outcome.checkpoint.parent.name == "stage_02"
