"""The robot protocol (bench/xarm_protocol.py) end to end at toy size on three xArm tasks, as a user runs it.

Two invocations: the first trains one task's expert and stops; the second runs everything for all three (the two
missing experts in two worker processes) and must take that expert over untouched (the per-stage cache a killed
run continues from). Learning is checked where it is cheap: the experts' BC pretraining and both distillations
drive their losses down, the multi-task student reproduces its teachers' actions on their replay far better than
it did before training, single-task BC from 2 demos closes a drawer that doing nothing never closes, and the
lifelong student keeps one size while the tasks arrive in the paper's order."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from polytask.sim import registry

ROOT = Path(__file__).resolve().parent.parent
TASKS = ["xarm/drawer-close-right", "xarm/drawer-close-left"]  # given out of order: the paper's order wins
TOY = [
    "--expert-steps",
    "240",
    "--bc-pretrain-steps",
    "300",
    "--expert-hidden",
    "64",
    "--expert-batch",
    "64",
    "--set",
    "train.seed_frames=60",
    "train.eval_every=0",
    "train.save_every=100",
    "--bc-steps",
    "300",
    "--distill-steps",
    "400",
    "--lifelong-steps",
    "200",
    "--eval-episodes",
    "5",
    "--student-hidden",
    "64",
]


def run(root: Path, *extra: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MUJOCO_GL": "egl"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "xarm_protocol.py"), "--root", str(root), *TOY, *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def losses(path: Path) -> list[float]:
    with open(path, newline="") as fh:
        return [float(r["loss"]) for r in csv.DictReader(fh)]


def test_protocol_end_to_end_and_resumed(tmp_path):
    first = run(tmp_path, "--tasks", "xarm/drawer-close-left", "--stages", "demos", "experts")
    assert "expert xarm/drawer-close-left: started" in first
    before = json.loads((tmp_path / "results.json").read_text())["experts"]["xarm/drawer-close-left"]

    out = run(tmp_path, "--tasks", *TASKS, "xarm/peg-green", "--workers", "2")
    res = json.loads((tmp_path / "results.json").read_text())
    order = ["xarm/peg-green", "xarm/drawer-close-left", "xarm/drawer-close-right"]
    assert res["report"]["tasks"] == order
    # the first invocation's expert is taken over, not trained again; the other two train in two workers
    assert res["experts"]["xarm/drawer-close-left"] == before
    assert "expert xarm/drawer-close-left: started" not in out and "expert xarm/drawer-close-right: started" in out
    assert "experts in 2 workers: xarm/peg-green | xarm/drawer-close-right" in out
    worker_pids = {r["pid"] for r in res["runs"] if r["args"]["stages"] == ["experts"]}
    assert len(worker_pids) == 2 and all("seconds" in r for r in res["runs"])
    assert len(list((tmp_path / "experts").iterdir())) == 3
    # every method on every task, on the same number of evaluation episodes
    for section in ("bc", "experts"):
        assert all(res[section][t]["episodes"] == 5 for t in order)
    for name in ("multitask", "lifelong"):
        assert sorted(res[name]["scores"]) == sorted(order)
    # demos: 2 per task, read by expert and BC alike (BC trains on exactly their rows)
    assert all(res["bc"][t]["rows"] == sum(len(ep) for ep in demo_eps(tmp_path, t)) for t in order)
    for t in order:
        e = res["experts"][t]
        assert e["steps"] == 240 and e["bc_loss_last"] < 0.5 * e["bc_loss_first"], e
        assert e["train_episodes"] >= 240 // registry.spec(t).horizon and all(v is not None for v in e.values())
    assert res["bc"]["xarm/drawer-close-left"]["successes"] >= 1, res["bc"]  # doing nothing: 0 (test_xarm_tasks)
    # multi-task distillation: the loss falls, and the student imitates its teachers on their replay
    mt = losses(tmp_path / "multitask" / "distill_history.csv")
    assert mt[-1] < 0.5 * mt[0], mt
    # lifelong: one stage per task in the paper's order, one parameter count, each stage's loss falls
    hist = json.loads((tmp_path / "lifelong" / "lifelong" / "polytask" / "history.json").read_text())
    assert [s["task"] for s in hist] == order and len(set(res["lifelong"]["parameters_per_stage"])) == 1
    for k in (1, 2, 3):
        ll = losses(tmp_path / "lifelong" / "lifelong" / "polytask" / f"stage_{k:02d}" / "distill_history.csv")
        assert ll[-1] < ll[0], (k, ll)
    table = (tmp_path / "table.md").read_text()
    assert "| `xarm/drawer-close-left` |" in table and "PolyTask lifelong" in table and "experts" in table


def demo_eps(root: Path, task: str) -> list:
    from polytask.learning.data.episodes import EpisodeStore

    eps = EpisodeStore(root / "demos", create=False).episodes(task)
    assert len(eps) == 2 and all(ep.episode_success for ep in eps)
    return eps


def test_processes_with_disjoint_tasks_share_one_root(tmp_path):
    """Two protocol processes on one root (one expert stage per core): each loaded results.json before the other
    wrote, yet after both record their rows every row is there, and each run's entry keeps its own wall time."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("xarm_protocol", ROOT / "bench" / "xarm_protocol.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    a = bench.Protocol(bench.parse(["--root", str(tmp_path), "--tasks", TASKS[0], "--stages"]))
    b = bench.Protocol(bench.parse(["--root", str(tmp_path), "--tasks", TASKS[1], "--stages"]))
    a.main()
    b.main()  # both runs' entries, though b loaded results.json before a's entry existed
    a.record("experts", TASKS[0], {"score": 0.5})
    b.record("experts", TASKS[1], {"score": 0.7})  # b's in-memory copy is stale: the merge reloads it
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["experts"] == {TASKS[0]: {"score": 0.5}, TASKS[1]: {"score": 0.7}}
    assert [r["args"]["tasks"] for r in saved["runs"]] == [[TASKS[0]], [TASKS[1]]]
    assert all("seconds" in r for r in saved["runs"])
