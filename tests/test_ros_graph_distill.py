"""The distill graph for real: the offline distiller node turns two tasks' stores into one evaluated policy.

Small budget (state student, two Meta-World tasks, scripted teachers, a few hundred steps): the unified
checkpoint must appear and load as a student of both tasks, the evaluation table must hold both tasks, and
`training/progress` must report distillation steps as they grow, a falling loss, and the effective number of
tasks equal to the table's sum.
"""

from __future__ import annotations

import csv
import json

import pytest
import yaml

pytestmark = pytest.mark.ros

TASKS = ("metaworld/button-press", "metaworld/drawer-close")
STEPS = 400


def test_distill_graph_produces_and_evaluates_a_unified_checkpoint(tmp_path):
    from polytask.launch.graphs import resolve
    from polytask.launcher import Launcher
    from polytask.learning.distill.collect import collect_noisy_store
    from polytask.learning.policies.student import load_student
    from polytask.ros.node_base import child_env
    from polytask.ros.testing import Probe, allocate_domain

    stores = []
    for task in TASKS:
        root = tmp_path / task.replace("/", "_")
        collect_noisy_store(task, root, transitions=300, seed=0)
        stores.append(str(root))
    cfg = tmp_path / "distill.yaml"
    cfg.write_text(yaml.safe_dump({"batch_size": 64, "lr": 1e-3, "log_every": 50, "checkpoint_every": 200,
                                   "student": {"hidden": 128, "layers": 2}}))
    out = tmp_path / "out"
    nodes = resolve("distill", [f"stores:={','.join(stores)}", f"out:={out}", f"steps:={STEPS}",
                                "eval_episodes:=2", f"config:={cfg}"])
    with allocate_domain(70, 99) as domain, open(tmp_path / "graph.log", "w") as log:
        launcher = Launcher(nodes, env=child_env(domain.id, extra={"OMP_NUM_THREADS": "1"}), output=log)
        launcher.start()
        probe = Probe(domain.id, name="distill_probe")
        try:
            progress = probe.subscribe("training_progress")

            def latest() -> dict:
                return json.loads(progress[-1][1].data) if progress else {}

            finished = probe.spin_until(lambda: latest().get("done", False)
                                        or "offline_distiller" not in launcher.alive(), 240) and latest().get("done")
            final = latest()
            seen = [json.loads(m.data) for _, m in progress]
        finally:
            probe.close()
            launcher.shutdown()
    log_tail = (tmp_path / "graph.log").read_text()[-3000:]
    assert finished, f"distillation did not finish: {final}; log:\n{log_tail}"
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
