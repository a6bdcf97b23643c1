"""The pixel GPU runs (bench/pixel_runs.sh, bench/pixel_runs.py) end to end at toy sizes on this CPU.

What a GPU job would do, with small numbers: the experts' runs write their replay stores and checkpoints (which
load and act), BC pretraining lowers its loss, the distillation relabels exactly the experts' replay with the
experts, Table I's stores are relabelled by the pixel experts where the job holds them and by the scripted teachers
elsewhere, every student's loss falls, and the job's output folder holds only the three files a GPU job returns,
with the docs rows printed last. (Run 5's curve at CI size, with a learning check: tests/test_pixel_bc_learns.py.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
TOY_TASKS = ["metaworld/button-press-topdown", "metaworld/drawer-close"]


def _check_student(res: dict, tasks: list[str]) -> None:
    assert sorted(res["scores"]) == sorted(tasks)
    assert all(0.0 <= s <= 1.0 for s in res["scores"].values())
    assert res["effective"] == sum(res["scores"].values())
    assert res["loss_last"] < res["loss_first"], res  # the student learned something from its rows


def test_pixel_gpu_job_toy(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "JOB_S": "400"}
    done = subprocess.run(
        [
            "bash",
            str(ROOT / "bench" / "pixel_runs.sh"),
            str(out),
            "--toy",
            "experts",
            "ot",
            "distil",
            "table1",
            "--",
            "--work",
            str(work),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-3000:]
    res = json.loads((out / "pixel_runs.json").read_text())
    runs = res["runs"]
    assert [runs[r]["status"] for r in ("experts", "ot", "distil", "table1")] == ["ok"] * 4

    # runs 1 and 2: one process per expert, each with its replay store and a checkpoint that loads and acts
    from polytask.learning.policies.expert import load_policy
    from polytask.sim import registry

    experts = runs["experts"]["runs"]
    assert [r["task"] for r in experts] == TOY_TASKS
    assert [(r["seed"], r["reward"]) for r in runs["ot"]["runs"]] == [(1, "ot"), (2, "ot")]
    for r in experts + runs["ot"]["runs"]:
        assert r["status"] == "ok", r
        assert r["replay_transitions"] == r["steps"] > 0  # every agent step is in the replay store
        assert r["bc_loss_last"] < r["bc_loss_first"]
        assert 0.0 <= r["success"] <= 1.0 and 0.0 <= r["bc_start"] <= 1.0
    task = registry.make(TOY_TASKS[0], render=True)
    try:
        policy = load_policy(experts[0]["checkpoint"], task=TOY_TASKS[0])
        step = task.reset(seed=3)
        policy.reset(step)
        action = policy.act(step)
    finally:
        task.close()
    assert action.shape == (4,) and np.all(np.abs(action) <= 1.0)

    # run 4: the experts relabel their own replay; the student is evaluated on their tasks against them
    dist = runs["distil"]
    assert dist["tasks"] == TOY_TASKS
    for r in experts:
        assert dist["relabel"][r["task"]] == {
            "teacher": "expert",
            "episodes": r["replay_episodes"],
            "transitions": r["replay_transitions"],
        }
    assert dist["experts"] == {r["task"]: r["success"] for r in experts}
    assert dist["student_mean"] == np.mean([dist["scores"][t] for t in TOY_TASKS])

    # run 3: the pixel experts of this job are these tasks' teachers; three students on one evaluation
    t1 = runs["table1"]
    assert t1["tasks"] == TOY_TASKS and {r["teacher"] for r in t1["relabel"].values()} == {"expert"}
    for key in ("polytask_onehot", "polytask_image", "gcbc_onehot"):
        _check_student(t1[key], TOY_TASKS)
    assert all(r["transitions"] >= t1["collect"]["target"] for r in t1["collect"]["per_task"].values())
    assert t1["polytask_onehot"]["steps"] == t1["planned_steps"]["onehot"]

    # what comes back from a GPU job: three files, the rows printed last
    assert sorted(p.name for p in out.iterdir()) == ["pixel_runs.json", "pixel_runs.log", "rows.md"]
    rows = (out / "rows.md").read_text()
    for title in ("Run 1: pixel Meta-World experts", "Run 2: OT-only", "Run 3: Table I on pixels", "Run 4:"):
        assert title in rows
    assert "button-press-topdown" in rows and "bench/pixel_runs.py experts ot distil table1" in rows
    assert rows.strip() in done.stdout
