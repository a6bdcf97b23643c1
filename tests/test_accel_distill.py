"""The distillation step's fast paths (learning/distill/fast_step.py) against the eager `Distiller.train_step`.

The data are synthetic relabelled rows (a fixed random teacher per task), so no simulator is needed; the
student, sampler, schedule and checkpoint code are the real ones.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polytask.learning.distill.config import DistillConfig, StudentConfig
from polytask.learning.distill.data import TaskData
from polytask.learning.distill.distill import distill

torch.set_num_threads(1)


def _tasks(pixels: bool, n: int = 400) -> tuple[list[TaskData], dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    data, goals = [], {}
    for k, name in enumerate(("synthetic/a", "synthetic/b")):
        states = rng.normal(size=(n, 8)).astype(np.float32)
        w = rng.normal(size=(8, 3)).astype(np.float32)
        actions = np.tanh(states @ w + k).astype(np.float32)
        frames = stack = None
        if pixels:
            frames = rng.integers(0, 256, (n, 20, 20, 3), dtype=np.uint8)
            stack = np.clip(np.arange(n)[:, None] + np.arange(-2, 1)[None, :], 0, None)
            goals[name] = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
        else:
            goals[name] = np.eye(4, dtype=np.float32)[k]
        data.append(TaskData(name, k, states, actions, episodes=4, frames=frames, stack_idx=stack))
    return data, goals


def _cfg(pixels: bool, mode: str, steps: int) -> DistillConfig:
    return DistillConfig(
        goal="image" if pixels else "onehot",
        obs="pixels" if pixels else "state",
        lr=1e-3,
        lr_schedule="cosine",
        warmup_steps=5,
        steps=steps,
        batch_size=32,
        grad_clip=1.0,
        log_every=10,
        checkpoint_every=10**6,
        compile=mode,
        student=StudentConfig(hidden=32, layers=2, feature_dim=16, frame_stack=3),
    )


def _distill(pixels: bool, mode: str, steps: int, tmp_path) -> tuple[dict[str, torch.Tensor], list[float]]:
    data, goals = _tasks(pixels)
    d, res = distill(data, goals, _cfg(pixels, mode, steps), run_dir=tmp_path / mode, resume=False)
    assert res.step == steps and np.isfinite(res.final_loss)
    return {k: v.clone() for k, v in d.student.state_dict().items()}, [r["loss"] for r in d.history]


@pytest.mark.parametrize("pixels", [False, True], ids=["state", "pixels"])
def test_graph_step_equals_eager_bit_for_bit(pixels, tmp_path):
    """Cosine schedule with warm-up, gradient clipping, two tasks: same student, same logged losses."""
    eager, eager_losses = _distill(pixels, "none", 40, tmp_path)
    fast, fast_losses = _distill(pixels, "graph", 40, tmp_path)
    for k in eager:
        assert torch.equal(eager[k], fast[k]), k
    assert fast_losses == pytest.approx(eager_losses, rel=1e-9)
    assert eager_losses[-1] < eager_losses[0]  # it learned something


@pytest.mark.slow  # a cold inductor compile of the student's forward and backward
def test_compile_step_equals_eager_within_tolerance(tmp_path):
    eager, eager_losses = _distill(False, "none", 30, tmp_path)
    fast, fast_losses = _distill(False, "compile", 30, tmp_path)
    for k in eager:
        assert torch.allclose(eager[k], fast[k], rtol=1e-4, atol=1e-5), k
    assert fast_losses == pytest.approx(eager_losses, rel=1e-4)


def test_graph_state_resumes_from_its_checkpoint(tmp_path):
    """The fast step's optimizer state (a tensor learning rate on CUDA) goes through the resumable checkpoint."""
    data, goals = _tasks(False)
    cfg = _cfg(False, "graph", 20)
    cfg.checkpoint_every = 10
    distill(data, goals, cfg, run_dir=tmp_path / "run", resume=False)
    d2, res = distill(data, goals, cfg, run_dir=tmp_path / "run", steps=30)
    assert res.resumed_from == 20 and d2.step == 30
    with pytest.raises(ValueError, match="pcgrad"):
        distill(data, goals, DistillConfig(pcgrad=True, compile="graph", steps=2, log_every=1), resume=False)
