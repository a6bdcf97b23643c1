"""The distill graph for real: the offline distiller node turns two tasks' stores into one evaluated policy.

Small budget (state student, two Meta-World tasks, scripted teachers, a few hundred steps): the unified
checkpoint must appear and load as a student of both tasks, the evaluation table must hold both tasks, and
`training/progress` must report distillation steps as they grow, a falling loss, and the effective number of
tasks equal to the table's sum.
"""

from __future__ import annotations

import csv

import pytest
from training_inputs import distill_inputs

pytestmark = pytest.mark.ros

TASKS = ("metaworld/button-press", "metaworld/drawer-close")
STEPS = 400


def test_distill_graph_produces_and_evaluates_a_unified_checkpoint(tmp_path):
    from polytask.launch.graphs import resolve
    from polytask.learning.policies.student import load_student
    from polytask.ros.testing import allocate_domain, run_job_graph

    stores, cfg = distill_inputs(tmp_path, TASKS, transitions=300, checkpoint_every=200, hidden=128)
    out = tmp_path / "out"
    nodes = resolve("distill", [f"stores:={','.join(stores)}", f"out:={out}", f"steps:={STEPS}",
                                "eval_episodes:=2", f"config:={cfg}"])
    with allocate_domain(70, 99) as domain:
        run = run_job_graph(nodes, domain.id, "offline_distiller", tmp_path / "graph.log", probe_name="distill_probe")
    final, seen = run.final, run.progress
    assert run.done, f"distillation did not finish: {final}; log:\n{run.log[-3000:]}"
    assert final["stage"] == "done" and final["error"] == "", final
    steps = sorted({s["step"] for s in seen if s.get("stage") == "distilling"})
    assert len(steps) >= 2 and steps[-1] <= STEPS, f"no running progress: {steps}"
    assert final["step"] == STEPS
    assert final["loss"] < final["first_loss"], (final["first_loss"], final["loss"])

    _student, goals, header, _ = load_student(final["checkpoint"])
    assert sorted(goals) == sorted(TASKS) and header["step"] == STEPS
    with open(out / "eval.csv", newline="") as fh:
        rows = {r["task"]: float(r["score"]) for r in csv.DictReader(fh)}
    assert sorted(rows) == sorted(TASKS)
    assert final["effective_tasks"] == pytest.approx(sum(rows.values()), abs=1e-3)
    assert final["eval"] == pytest.approx(rows)
