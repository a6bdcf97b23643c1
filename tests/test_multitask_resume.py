"""Multi-task RL runs resume exactly: a run killed after its mid-run checkpoint and resumed repeats the uninterrupted
one bit for bit (updates, weights, CSVs), and Distral's and PCGrad's whole learner state survives save/load."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch

from polytask.learning.config import load_config
from polytask.learning.data.checkpoint import read_header
from polytask.learning.reporting.run_logging import TIMING_COLUMNS
from polytask.learning.rl.loop import LATEST, OnlineRL
from polytask.learning.rl.multitask import MultiTaskRLTrainer
from polytask.learning.rl.multitask_config import MultiTaskConfig

TASKS = ["metaworld/button-press-topdown", "metaworld/coffee-button"]  # = conftest.RL_PAIR (rl_pair_demos)
# Tiny state-based runs (63-step Meta-World episodes): a checkpoint after BC, one at step 126, the end at 250. An odd
# batch size makes the batch split over the tasks random, so its RNG must be restored too.
TINY = {"train.threads": 1, "train.progress": False, "network.obs": "state", "network.hidden": 32,
        "network.actor_layers": 2, "agent.batch_size": 33, "bc.pretrain_steps": 20, "bc.batch_size": 32,
        "train.seed_frames": 0, "agent.num_expl_steps": 0, "train.eval_episodes": 1, "train.eval_every": 120,
        "train.save_every": 120, "agent.stddev_schedule": "0.3", "train.steps": 250}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _rows(path: Path) -> list[dict[str, str]]:
    """A CSV's rows without the timing columns (seconds and rates, which no two runs share)."""
    with open(path, newline="") as fh:
        return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in csv.DictReader(fh)]


def _state(trainer: MultiTaskRLTrainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trainer.learner.state_tensors()[0].items()}


def test_mtrl_demo_killed_after_its_checkpoint_resumes_bit_for_bit(rl_pair_demos, tmp_path):
    """The uninterrupted run keeps a copy of its step-126 checkpoint; putting it back as latest is a kill right after
    that checkpoint whose process still wrote episodes and CSV rows up to step 250 (both must be undone)."""
    cfg = load_config(MultiTaskConfig, None, {**TINY, "train.method": "mtrl-demo", "train.tasks": TASKS,
                                              "train.demos": str(rl_pair_demos)})
    run_dir, kept = tmp_path / "run", tmp_path / "mid.safetensors"
    full = MultiTaskRLTrainer(cfg, run_dir)
    seen: dict[int, dict[str, float]] = {}
    full.on_update = lambda step, m: seen.setdefault(step, dict(m))
    save = full.save

    def save_and_keep_mid() -> Path:
        out = save()
        if 0 < full.step < TINY["train.steps"]:
            shutil.copy(run_dir / "checkpoints" / LATEST, kept)
        return out

    full.save = save_and_keep_mid  # type: ignore[method-assign]
    try:
        summary = full.run()
    finally:
        full.close()
    assert summary["step"] == 250 and summary["updates"] > 80
    want_state = _state(full)
    want_train, want_eval = _rows(run_dir / "train.csv"), _rows(run_dir / "eval.csv")
    n_replay = {t: len(list((run_dir / "replay" / t.replace("/", "-")).iterdir())) for t in TASKS}

    shutil.copy(kept, run_dir / "checkpoints" / LATEST)
    saved = read_header(kept)["step"]
    assert saved == 126
    resumed = MultiTaskRLTrainer.resume(run_dir)
    got: dict[int, dict[str, float]] = {}
    resumed.on_update = lambda step, m: got.setdefault(step, dict(m))
    try:
        assert resumed.step == saved and resumed.state.pretrained and resumed.state.started
        assert sum(len(b) for b in resumed.data.replay.values()) > 0  # the episodes before the checkpoint reloaded
        orphans = sorted(p.name for p in (run_dir / "replay-orphans").rglob("*") if p.is_file())
        assert len(orphans) == 2  # the episodes ending at 189 and 250, stored after the checkpoint
        assert [int(r["step"]) for r in _rows(run_dir / "train.csv")] == [63, 126]  # rows past 126 dropped
        assert [int(r["step"]) for r in _rows(run_dir / "eval.csv")] == [0, 126]
        again = resumed.run()
    finally:
        resumed.close()

    assert min(got) == saved + 2 and sorted(got) == [s for s in sorted(seen) if s > saved]
    for step, metrics in got.items():
        assert metrics == seen[step], step  # every update after the resume, loss for loss
    state = _state(resumed)
    assert state.keys() == want_state.keys()
    for k in state:
        assert torch.equal(state[k], want_state[k]), k
    assert _rows(run_dir / "train.csv") == want_train  # one history, as the uninterrupted run logged it
    assert _rows(run_dir / "eval.csv") == want_eval
    assert again["eval_final"] == summary["eval_final"] and again["updates"] == summary["updates"]
    assert {t: len(list((run_dir / "replay" / t.replace("/", "-")).iterdir())) for t in TASKS} == n_replay


@pytest.mark.parametrize(("method", "steps"), [("distral", 200), ("mtrl-pcgrad", 100)])
def test_learner_state_round_trips_through_the_checkpoint(method, steps, tmp_path):
    """Distral: π0, its Adam state and every task's agent; PCGrad: the agent and its projection-order RNG."""
    cfg = load_config(MultiTaskConfig, None, {**TINY, "train.method": method, "train.tasks": TASKS,
                                              "train.steps": steps, "train.save_every": 0})
    trainer = MultiTaskRLTrainer(cfg, tmp_path / method)  # Distral: 200 steps train each task's agent on its data
    try:
        trainer.train()
        trainer.save()
        want = _state(trainer)
    finally:
        trainer.close()
    if method == "distral":
        assert {k.split("/")[0] for k in want} == {"agent", "centroid"}
        assert any(k.startswith("centroid/opt/state/") for k in want)  # π0's Adam moments are in the checkpoint
        for t in TASKS:
            assert any(k.startswith(f"agent/{t}/optim/actor_opt/") for k in want), t
    fresh = MultiTaskRLTrainer(cfg, tmp_path / "fresh")
    try:
        init = _state(fresh)
    finally:
        fresh.close()
    changed = [k for k in want if k in init and not torch.equal(want[k], init[k])]
    assert changed  # training moved them (so equality after loading means something)

    resumed = MultiTaskRLTrainer.resume(tmp_path / method, {"train.steps": steps + 10})
    try:
        got = _state(resumed)
        assert got.keys() == want.keys()
        for k in want:
            assert torch.equal(got[k], want[k]), k
        if method == "mtrl-pcgrad":
            assert resumed.learner.agent.rng.bit_generator.state == trainer.learner.agent.rng.bit_generator.state
        resumed.train()  # and it trains on
        assert resumed.step == steps + 10 and resumed.updates > trainer.updates
    finally:
        resumed.close()


def test_resume_needs_a_checkpoint_and_the_same_network_and_the_cli_trains_on(tmp_path, capsys):
    from polytask.cli import main
    from polytask.learning.data.checkpoint import CheckpointError

    cfg = load_config(MultiTaskConfig, None, {**TINY, "train.method": "mtrl", "train.tasks": TASKS,
                                              "train.steps": 10, "train.save_every": 0})
    trainer = MultiTaskRLTrainer(cfg, tmp_path / "run")
    trainer.close()
    with pytest.raises(FileNotFoundError, match=r"no checkpoint checkpoints/latest\.safetensors"):
        MultiTaskRLTrainer.resume(tmp_path / "run")
    trainer = MultiTaskRLTrainer(cfg, tmp_path / "run")
    try:
        trainer.save()
    finally:
        trainer.close()
    with pytest.raises(CheckpointError, match=r"network\.hidden is 32 in the checkpoint, expected 64"):
        MultiTaskRLTrainer.resume(tmp_path / "run", {"network.hidden": 64})
    assert main(["train-multitask", "--resume", str(tmp_path / "run"), "--method", "mtrl"]) == 1
    assert "drop --method" in capsys.readouterr().err
    assert main(["train-multitask", "--resume", str(tmp_path / "run"), "--steps", "70"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["step"] == 70 and summary["method"] == "mtrl"
    assert read_header(tmp_path / "run" / "checkpoints" / LATEST)["step"] == 70


def test_a_killed_lifelong_stage_continues_from_its_checkpoint(rl_pair_demos, tmp_path, monkeypatch):
    """finetune-rl, one stage: killed (an exception) after its step-126 checkpoint, rerun on the same folder, it ends
    with the agent an uninterrupted stage ends with."""
    from polytask.learning.data.checkpoint import load_checkpoint
    from polytask.learning.reporting.lifelong import read_history
    from polytask.learning.rl.lifelong import AGENT_FILE, run_lifelong_rl

    ov = {k: v for k, v in TINY.items() if k != "train.steps"}

    lines: list[str] = []

    def stage(run_dir: Path) -> dict:
        return run_lifelong_rl("finetune-rl", TASKS, demos=str(rl_pair_demos), steps=250, overrides=ov,
                               run_dir=run_dir, add=1, log=lines.append)

    whole = stage(tmp_path / "whole")
    log_episode = OnlineRL._log_episode

    def die_after_the_checkpoint(self, name, episode):
        if self.step > 126:
            raise RuntimeError("killed")
        log_episode(self, name, episode)

    monkeypatch.setattr(OnlineRL, "_log_episode", die_after_the_checkpoint)
    with pytest.raises(RuntimeError, match="killed"):
        stage(tmp_path / "killed")
    monkeypatch.setattr(OnlineRL, "_log_episode", log_episode)
    assert read_header(tmp_path / "killed" / "stage_01" / "checkpoints" / LATEST)["step"] == 126
    again = stage(tmp_path / "killed")
    assert any("stage 1 (metaworld/button-press-topdown) resumes at step 126" in x for x in lines), lines
    assert len(list((tmp_path / "killed" / "stage_01" / "replay-orphans").rglob("*.npz"))) == 1  # not started over

    assert again["step"] == whole["step"] == 250 and again["eval_final"] == whole["eval_final"]
    h_whole, h_again = read_history(tmp_path / "whole")[0], read_history(tmp_path / "killed")[0]
    assert h_again["updates"] == h_whole["updates"] and h_again["bc_loss_last"] == h_whole["bc_loss_last"]
    a = load_checkpoint(tmp_path / "whole" / "stage_01" / "checkpoints" / AGENT_FILE)[0]
    b = load_checkpoint(tmp_path / "killed" / "stage_01" / "checkpoints" / AGENT_FILE)[0]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    steps = [int(r["step"]) for r in _rows(tmp_path / "killed" / "stage_01" / "train.csv")]
    assert steps == [63, 126, 189, 250]
