"""K = 3 experts in one lockstep run with one batched update (rl/batched_run.py, `polytask train-experts --batched`)
against the same three runs trained alone, on a real suite (xarm pegs, states, scripted demos).

Each run keeps its own RNG state and the batched update draws each expert's noise in it, so the batched run
repeats the three single runs up to the summation order of the batched kernels: same episodes' counts and
updates, weights within float tolerance. Each checkpoint loads into the single-expert policy and acts as the
run's final evaluation did; the BC term falls under the batched update (learning); a stopped batched run resumes
exactly; runs that cannot step together are refused.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from training_inputs import scripted_demos, tiny_expert_overrides

from polytask.learning.config import load_config
from polytask.learning.policies.evaluate import evaluate
from polytask.learning.policies.expert import load_policy
from polytask.learning.rl.batched_run import BatchedExpertRun, train_batched_experts
from polytask.learning.rl.expert import ExpertTrainer
from polytask.learning.rl.expert_config import ExpertConfig

TASKS = ("xarm/peg-green", "xarm/peg-yellow", "xarm/peg-blue")  # 30 steps per episode each


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> Path:
    return scripted_demos(tmp_path_factory.mktemp("peg_demos"), (*TASKS, "xarm/reach"), 2)


def _cfg(task: str, demos: Path, runs: Path, **extra) -> ExpertConfig:
    """The tests' tiny state expert, with evaluations and saves inside the 180 steps and exploration noise on."""
    ov = {"bc.pretrain_steps": 5, "bc.batch_size": 16, "train.seed_frames": 30, "agent.num_expl_steps": 30,
          "train.eval_every": 60, "train.save_every": 60, "train.steps": 180, "train.name": task.split("/")[1]}
    return load_config(ExpertConfig, None, tiny_expert_overrides(task, demos, runs, **{**ov, **extra}))


def _weights(trainer: ExpertTrainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trainer.agent.state_tensors(with_optim=True)[0].items()}


def _batched(demos: Path, root: Path, **extra) -> tuple[BatchedExpertRun, list[dict]]:
    driver = BatchedExpertRun(
        [lambda t=t: ExpertTrainer.open(_cfg(t, demos, root, **extra), root / t.split("/")[1]) for t in TASKS]
    )
    try:
        return driver, driver.run()
    finally:
        driver.close()


def test_batched_run_equals_three_single_runs(demos, tmp_path):
    driver, summaries = _batched(demos, tmp_path / "batched")
    singles = []
    for t in TASKS:
        trainer = ExpertTrainer(_cfg(t, demos, tmp_path / "single"))
        try:
            singles.append((trainer, trainer.run()))
        finally:
            trainer.close()
    for k, (single, summary) in enumerate(singles):
        run = driver.runs[k]
        assert summaries[k]["step"] == summary["step"] == 180
        assert summaries[k]["updates"] == summary["updates"] == 75  # one every 2 steps after the first episode
        assert run.replay.episodes_added == single.replay.episodes_added == 6
        got, want = _weights(run), _weights(single)
        assert got.keys() == want.keys()
        for name in want:
            torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-4, msg=name)
        a, b = run.replay.store.episodes(TASKS[k]), single.replay.store.episodes(TASKS[k])
        np.testing.assert_allclose(a[-1].action, b[-1].action, atol=1e-4)
    # the experts learned different things (own task, demos and draws)
    key = next(k for k in _weights(driver.runs[0]) if k.startswith("actor/"))
    w = [_weights(r)[key] for r in driver.runs]
    assert float((w[0] - w[1]).abs().max()) > 1e-3
    # each checkpoint loads into the single-expert policy and acts as the run's final evaluation did
    for k, run in enumerate(driver.runs):
        policy = load_policy(run.policy_path, task=TASKS[k])
        res = evaluate(policy, TASKS[k], episodes=1, seed=1_000_000)
        assert res.mean_return == pytest.approx(summaries[k]["eval_final_row"]["return"], rel=1e-5)
    # learning under the batched update: the BC term of the actor falls (the demos' actions are being fitted)
    for run in driver.runs:
        bc = [float(r["bc_loss"]) for r in run.logger.read("train") if r.get("bc_loss") not in (None, "")]
        assert len(bc) >= 4 and np.mean(bc[-2:]) < bc[0], bc


def test_batched_run_resumes_exactly(demos, tmp_path):
    whole, _ = _batched(demos, tmp_path / "whole", **{"train.steps": 120})
    _batched(demos, tmp_path / "parts", **{"train.steps": 60})  # stops at step 60 with its checkpoints
    resumed = BatchedExpertRun(
        [lambda t=t: ExpertTrainer.resume(tmp_path / "parts" / t.split("/")[1], {"train.steps": 120}) for t in TASKS]
    )
    try:
        assert [r.state.step for r in resumed.runs] == [60, 60, 60]
        resumed.run()
    finally:
        resumed.close()
    for a, b in zip(whole.runs, resumed.runs, strict=True):
        wa, wb = _weights(a), _weights(b)
        for name in wa:
            assert torch.equal(wa[name], wb[name]), name


def test_batched_runs_that_cannot_step_together_are_refused(demos, tmp_path):
    with pytest.raises(ValueError, match=r"train.steps of xarm/peg-yellow is 90"):
        BatchedExpertRun(
            [
                lambda: ExpertTrainer(_cfg(TASKS[0], demos, tmp_path)),
                lambda: ExpertTrainer(_cfg(TASKS[1], demos, tmp_path, **{"train.steps": 90})),
            ]
        )
    scratch = {"train.demos": "", "bc.pretrain_steps": 0, "agent.bc_regularize": False}
    with pytest.raises(ValueError, match=r"xarm/reach runs 50 steps x 1 per episode"):
        train_batched_experts(
            [
                lambda: ExpertTrainer(_cfg(TASKS[0], demos, tmp_path, **scratch)),
                lambda: ExpertTrainer(_cfg("xarm/reach", demos, tmp_path, **scratch)),
            ]
        )


def test_cli_train_experts_batched(demos, tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "polytask.cli",
        "train-experts",
        "--tasks",
        "xarm/peg-*",
        "xarm/reach",  # the pegs (30 steps per episode) form one batch, reach (50 steps) another
        "--demos",
        str(demos),
        "--batched",
        "--runs-dir",
        str(tmp_path),
        "--steps",
        "60",
        "--bc-steps",
        "2",
        "--progress-every",
        "0",
        "--set",
        "network.obs=state",
        "network.hidden=32",
        "network.actor_layers=2",
        "agent.batch_size=16",
        "train.seed_frames=30",
        "train.eval_episodes=1",
        "train.eval_video=false",
        "bc.batch_size=16",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "batched in this process" in out.stdout
    assert "batched: 3 experts (30 steps x 1 per episode)" in out.stdout
    assert "batched: 1 experts (50 steps x 1 per episode)" in out.stdout
    sweep = next(tmp_path.glob("*-experts"))
    for t in (*TASKS, "xarm/reach"):
        run = sweep / t.replace("/", "-")
        assert (run / "checkpoints" / "expert.safetensors").exists()
        assert load_policy(run / "checkpoints" / "expert.safetensors", task=t) is not None
    assert len((sweep / "summary.csv").read_text().splitlines()) == 5
    assert sorted(j["task"] for j in json.loads((sweep / "jobs.json").read_text())["jobs"]) == sorted(
        (*TASKS, "xarm/reach")
    )
