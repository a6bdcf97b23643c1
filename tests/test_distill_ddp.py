"""Data-parallel distillation: `polytask distill --nproc 2` (torchrun, gloo on CPU) learns like one process with
the same global batch, keeps its replicas identical, resumes, and writes a student that `polytask eval` loads."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from polytask import cli
from polytask.learning.data.checkpoint import read_header
from polytask.learning.data.episodes import EpisodeStore
from polytask.learning.distill.collect import collect_noisy_stores
from polytask.learning.distill.data import load_task
from polytask.learning.distill.ddp import DistContext
from polytask.learning.distill.pipeline import DistillJob, run_distillation
from polytask.learning.distill.relabel import ScriptedTeacher, relabel_store
from polytask.learning.policies.student import load_student
from polytask.sim import registry

TASKS = ("metaworld/drawer-close", "metaworld/button-press")
STEPS, HALF = 200, 120
SMALL = {
    "student.hidden": 64,
    "student.layers": 2,
    "lr": 1e-3,
    "batch_size": 64,
    "log_every": 20,
    "checkpoint_every": 40,
    "seed": 3,
}


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> list[Path]:
    return collect_noisy_stores(TASKS, tmp_path_factory.mktemp("ddp_stores"), 300)


def _history(out: Path) -> list[tuple[int, float]]:
    with open(out / "distill_history.csv", newline="") as fh:
        return [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(fh)]


def _distill_cli(stores: list[Path], out: Path, steps: int, nproc: int, episodes: int) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "polytask.cli",
        "distill",
        "--experts",
        "scripted",
        "--stores",
        *map(str, stores),
        "--out",
        str(out),
        "--steps",
        str(steps),
        "--eval-episodes",
        str(episodes),
        "--no-progress",
        "--nproc",
        str(nproc),
        "--set",
        *[f"{k}={v}" for k, v in SMALL.items()],
    ]
    return subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)


def test_two_gloo_processes_learn_like_one_with_the_same_global_batch(stores, tmp_path, capsys):
    torch.set_num_threads(1)
    one = tmp_path / "one"
    run_distillation(
        DistillJob(experts=["scripted"], stores=stores, out=one, overrides=SMALL, steps=STEPS, eval_episodes=0),
        log=lambda _: None,
    )

    two = tmp_path / "two"
    first = _distill_cli(stores, two, HALF, 2, 0)  # stopped half-way, then the same command resumes to STEPS
    assert first.returncode == 0, first.stderr[-3000:]
    state = read_header(two / "distill_state.safetensors")
    assert state["step"] == HALF and state["world_size"] == 2 and state["rank_batch"] == SMALL["batch_size"] // 2
    second = _distill_cli(stores, two, STEPS, 2, 1)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"resumed from step {HALF}" in second.stdout
    assert second.stdout.count("student:") == 1  # only rank 0 reports and writes

    h1, h2 = _history(one), _history(two)
    assert [s for s, _ in h1] == [s for s, _ in h2] == list(range(20, STEPS + 1, 20))
    l1, l2 = np.array([v for _, v in h1]), np.array([v for _, v in h2])
    assert l1[-1] < 0.5 * l1[0] and l2[-1] < 0.5 * l2[0], (l1, l2)  # both learned
    # same curve within the noise of sampling different rows: every logged point, and the late average
    assert np.all(np.abs(l2 - l1) <= 0.25 * l1), np.c_[l1, l2]
    assert abs(l2[-5:].mean() - l1[-5:].mean()) <= 0.1 * l1[-5:].mean(), np.c_[l1, l2]

    s1, _, _, _ = load_student(one / "student.safetensors")
    s2, goals2, header, _ = load_student(two / "student.safetensors")
    assert header["world_size"] == 2 and header["replica_spread"] == 0.0  # DDP kept both replicas identical
    assert header["step"] == STEPS and sorted(goals2) == sorted(TASKS)
    # the normaliser of the two shares together is the single-process one
    torch.testing.assert_close(s2.obs_mean, s1.obs_mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(s2.obs_std, s1.obs_std, rtol=1e-3, atol=1e-4)  # one process: var in float32

    assert (
        cli.main(
            [
                "eval",
                "--policy",
                str(two / "student.safetensors"),
                "--episodes",
                "1",
                "--no-progress",
                "--out",
                str(tmp_path / "eval.csv"),
            ]
        )
        == 0
    )
    assert "effective tasks:" in capsys.readouterr().out
    with open(tmp_path / "eval.csv", newline="") as fh:
        assert sorted(r["task"] for r in csv.DictReader(fh)) == sorted(TASKS)
    with open(two / "eval.csv", newline="") as fh:  # rank 0's own evaluation at the end of the run
        assert sorted(r["task"] for r in csv.DictReader(fh)) == sorted(TASKS)


def test_rank_shares_split_the_kept_episodes(stores, tmp_path):
    """Each rank reads a disjoint share; together they are exactly the single-process data."""
    task = TASKS[0]
    root = tmp_path / "relabelled"
    relabel_store(EpisodeStore(stores[0], create=False), root, task, ScriptedTeacher(registry.make(task, render=False)))
    whole = load_task(root, task, cap=250)
    parts = [load_task(root, task, cap=250, share=DistContext(rank=r, world=2)) for r in range(2)]
    assert sum(len(p) for p in parts) == len(whole) and all(len(p) > 0 for p in parts)
    rows = {tuple(r) for p in parts for r in np.round(p.states, 6)}
    assert rows == {tuple(r) for r in np.round(whole.states, 6)}
    assert not {tuple(r) for r in parts[0].states} & {tuple(r) for r in parts[1].states}
    with pytest.raises(ValueError, match="cannot be shared by 40 processes"):
        load_task(root, task, cap=250, share=DistContext(rank=39, world=40))
