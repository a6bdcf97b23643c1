"""The expert trainer end to end on a real suite (xarm/reach, states): learning, exact kill-and-resume, CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from training_inputs import scripted_demos, tiny_expert_overrides

from polytask.learning.config import load_config
from polytask.learning.data.checkpoint import CheckpointError, read_header
from polytask.learning.data.episodes import EpisodeStore
from polytask.learning.policies.demos import record_demos
from polytask.learning.policies.evaluate import evaluate
from polytask.learning.policies.expert import load_policy
from polytask.learning.rl.expert import ExpertTrainer
from polytask.learning.rl.expert_config import ExpertConfig

TASK = "xarm/reach"


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> Path:
    return scripted_demos(tmp_path_factory.mktemp("reach_demos"), [TASK], 3)


def _tiny(demos: Path, runs: Path, **extra) -> dict:
    return tiny_expert_overrides(TASK, demos, runs, **extra)


def _weights(trainer: ExpertTrainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trainer.agent.state_tensors(with_optim=True)[0].items()}


def test_state_expert_improves_over_its_start(demos, tmp_path):
    """Pure RL from scratch (no BC pretraining) on env reward: eval return rises clearly within ~1200 steps."""
    ov = _tiny(demos, tmp_path, **{"bc.pretrain_steps": 0, "network.hidden": 128, "agent.batch_size": 128,
                                   "agent.lr": 1e-3, "train.steps": 1200, "train.seed_frames": 250,
                                   "agent.num_expl_steps": 250, "agent.update_every_steps": 1,
                                   "agent.stddev_schedule": "linear(0.5,0.1,1200)", "train.eval_every": 300,
                                   "train.eval_episodes": 5, "train.save_every": 10**6})
    trainer = ExpertTrainer(load_config(ExpertConfig, None, ov))
    summary = trainer.run()
    trainer.close()
    rows = trainer.logger.read("eval")
    returns = [float(r["return"]) for r in rows]
    start, late = returns[0], float(np.mean(returns[-2:]))
    assert late > start + 2.0, f"eval returns {returns}"
    assert summary["step"] == 1200
    run = trainer.run_dir
    for name in ("config.yaml", "train.csv", "eval.csv", "curves.png", "checkpoints/latest.safetensors",
                 "checkpoints/expert.safetensors"):
        assert (run / name).exists(), name
    assert any((run / "tb").iterdir())
    # the saved expert acts as a Policy and scores like the final evaluation
    policy = load_policy(run / "checkpoints" / "expert.safetensors")
    res = evaluate(policy, TASK, episodes=5, seed=1_000_000)
    assert res.mean_return == pytest.approx(returns[-1], rel=1e-4)
    with pytest.raises(CheckpointError, match="task mismatch"):
        load_policy(run / "checkpoints" / "expert.safetensors", task="xarm/push")
    # demos recorded from the expert (how DMC demos are made): the store holds the expert's mean actions
    rep = record_demos(TASK, 2, tmp_path / "expert_demos", render=False, policy=policy, source="expert",
                       keep_failed=True, max_attempts=2, progress=False)
    assert rep.attempted == 2
    eps = EpisodeStore(tmp_path / "expert_demos").episodes(TASK)
    assert len(eps) == 2 and all(e.source == "expert" for e in eps)


def test_kill_and_resume_reproduces_the_next_update_bit_for_bit(demos, tmp_path):
    runs = tmp_path / "runs"
    ov = _tiny(demos, runs, **{"train.save_every": 100, "train.name": "killed"})
    cmd = [sys.executable, "-m", "polytask.cli", "train-expert", "--steps", "100000"]
    for k, v in ov.items():
        cmd += ["--set", f"{k}={v}"]
    env = {**os.environ, "MUJOCO_GL": "egl", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = None
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            found = list(runs.glob("*-killed/checkpoints/latest.safetensors"))
            if found:
                try:
                    if read_header(found[0])["step"] >= 200:
                        ckpt = found[0]
                        time.sleep(0.5)  # let it run on past the checkpoint before the kill
                        break
                except CheckpointError:
                    pass
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert ckpt is not None, "no checkpoint at step >= 200 within the deadline"
    saved_step = read_header(ckpt)["step"]
    run_dir = ckpt.parent.parent

    resumed = ExpertTrainer.resume(run_dir, {"train.steps": saved_step + 60, "train.progress": False})
    assert resumed.state.step == saved_step
    resumed.run()
    resumed.close()
    first = resumed.first_update_metrics
    assert first is not None and first["step"] > saved_step

    # the uninterrupted run, in this process
    ref_ov = {**ov, "train.steps": saved_step + 60, "train.name": "reference"}
    reference = ExpertTrainer(load_config(ExpertConfig, None, ref_ov))
    seen: dict[int, dict] = {}
    reference.on_update = lambda step, m: seen.setdefault(step, dict(m))
    reference.run()
    reference.close()
    ref_first = seen[first["step"]]
    for k in ("critic_loss", "actor_loss", "bc_loss", "critic_q1"):
        assert first[k] == ref_first[k], (k, first[k], ref_first[k])
    a, b = _weights(resumed), _weights(reference)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the killed process's rows after the checkpoint are gone: one history per step
    steps = [int(r["step"]) for r in resumed.logger.read("train")]
    assert steps == sorted(steps) and len(steps) == len(set(steps))


@pytest.fixture(scope="module")
def pixel_demos(tmp_path_factory) -> Path:
    return scripted_demos(tmp_path_factory.mktemp("reach_pixel_demos"), [TASK], 2, render=True)


def test_cli_pixels_with_ot_rewards(pixel_demos, tmp_path):
    """The CLI on pixels with an image goal and OT rewards: scale gives the first episode a return of -10."""
    cmd = [sys.executable, "-m", "polytask.cli", "train-expert", "--task", TASK, "--demos", str(pixel_demos),
           "--reward", "ot", "--steps", "100", "--runs-dir", str(tmp_path), "--name", "cli", "--bc-steps", "3",
           "--no-progress"]
    for k, v in {"network.hidden": 16, "network.feature_dim": 16, "agent.batch_size": 4, "bc.batch_size": 4,
                 "train.seed_frames": 50, "train.eval_episodes": 1, "train.threads": 1}.items():
        cmd += ["--set", f"{k}={v}"]
    out = subprocess.run(cmd, env={**os.environ, "MUJOCO_GL": "egl"}, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert '"step": 100' in out.stdout
    run = next(tmp_path.glob("*-cli"))
    assert len(list((run / "videos").glob("*.mp4"))) == 2  # at the start and at the end
    episodes = EpisodeStore(run / "replay").episodes()
    assert len(episodes) == 2 and episodes[0].pixels is not None
    assert float(episodes[0].reward.sum()) == pytest.approx(-10.0, rel=1e-4)
    assert episodes[0].extra["env_return"] != pytest.approx(-10.0)
    header = read_header(run / "checkpoints" / "expert.safetensors")
    assert header["goal_modality"] == "image" and header["network"]["frame_stack"] == 3
    policy = load_policy(run / "checkpoints" / "expert.safetensors")
    res = evaluate(policy, TASK, episodes=1, seed=1_000_000, render=True)
    assert res.episodes == 1


def test_cli_names_a_missing_demo_store(tmp_path):
    bad = subprocess.run([sys.executable, "-m", "polytask.cli", "train-expert", "--task", TASK, "--demos",
                          str(tmp_path / "none")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "does not exist" in bad.stderr


def test_config_file_holds_the_paper_defaults_and_typos_are_named(tmp_path):
    from polytask.learning.config import ConfigError
    from polytask.learning.rl.expert import REPO_CONFIG

    assert load_config(ExpertConfig, REPO_CONFIG) == ExpertConfig()
    cfg = ExpertConfig()
    assert (cfg.agent.lr, cfg.agent.critic_tau, cfg.agent.bc_alpha, cfg.agent.bc_lambda) == (1e-4, 0.01, 0.3, 0.25)
    assert (cfg.replay.capacity, cfg.train.seed_frames, cfg.reward.target_update_steps) == (150000, 12000, 20000)
    bad = tmp_path / "bad.yaml"
    bad.write_text("agent:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*'agent\.lrr' is unknown"):
        load_config(ExpertConfig, bad)
    with pytest.raises(ConfigError, match=r"reward\.kind"):
        load_config(ExpertConfig, None, {"reward.kind": "sparse"})


def test_from_scratch_needs_no_demos_and_warm_start_seeds_the_next_variant(tmp_path):
    """DMC demonstrators learn from the env reward alone; a neighbouring variant starts from their weights."""
    from polytask.learning.config import ConfigError

    base = _tiny(Path(""), tmp_path, **{"train.demos": "", "train.steps": 120, "train.save_every": 10**6})
    with pytest.raises(ConfigError, match=r"bc\.pretrain_steps is 20.*agent\.bc_regularize is true"):
        ExpertTrainer(load_config(ExpertConfig, None, base))
    scratch = dict(base, **{"bc.pretrain_steps": 0, "agent.bc_regularize": False})
    with pytest.raises(ConfigError, match=r"reward\.kind is 'ot'"):
        ExpertTrainer(load_config(ExpertConfig, None, dict(scratch, **{"reward.kind": "ot"})))
    first = ExpertTrainer(load_config(ExpertConfig, None, dict(scratch, **{"train.name": "first"})))
    first.run()
    first.close()
    assert first.state.updates > 0 and len(first.replay) > 0
    trained = _weights(first)

    seeded = ExpertTrainer(load_config(ExpertConfig, None, dict(scratch, **{"train.name": "second",
                                                                          "train.seed": 7,
                                                                          "train.init_from": str(first.run_dir)})))
    fresh = ExpertTrainer(load_config(ExpertConfig, None, dict(scratch, **{"train.name": "third", "train.seed": 7})))
    got, init = _weights(seeded), _weights(fresh)
    for name in ("actor/", "critic/", "critic_target/", "encoder/"):
        keys = [k for k in trained if k.startswith(name)]
        assert all(torch.equal(got[k], trained[k]) for k in keys), name
    assert not all(torch.equal(init[k], trained[k]) for k in trained if k.startswith("actor/"))
    assert seeded.state.step == 0  # weights only: counters, optimisers and replay start afresh
    for t in (seeded, fresh):
        t.close()
    with pytest.raises(CheckpointError, match="hidden"):
        ExpertTrainer(load_config(ExpertConfig, None, dict(scratch, **{"train.name": "wide", "network.hidden": 64,
                                                                      "train.init_from": str(first.run_dir)})))
