"""The pixel student path at toy scale on CPU: rendered store -> relabel -> frame-stacked batches -> student.

The real pixel run needs a GPU; this checks that the same code fits a handful of rendered episodes (the loss
falls by an order of magnitude) and acts in a rendered task from a checkpoint.
"""

from __future__ import annotations

import torch

from polytask.learning import goals as G
from polytask.learning.data.episodes import EpisodeStore
from polytask.learning.distill.config import DistillConfig, StudentConfig
from polytask.learning.distill.data import MemorySampler, load_task
from polytask.learning.distill.distill import distill
from polytask.learning.distill.relabel import ScriptedTeacher, relabel_store
from polytask.learning.policies.base import ScriptedPolicy
from polytask.learning.policies.evaluate import evaluate
from polytask.learning.policies.rollout import rollout
from polytask.learning.policies.student import load_student_policy
from polytask.sim import registry

TASK = "metaworld/button-press"


def test_pixel_student_fits_rendered_episodes_and_acts(tmp_path):
    torch.set_num_threads(1)
    task = registry.make(TASK, render=True)
    raw = EpisodeStore(tmp_path / "raw")
    for seed in range(2):
        raw.append(rollout(task, ScriptedPolicy(task), seed=seed, source="replay"))
    relabel_store(raw, tmp_path / "rel", TASK, ScriptedTeacher(task))
    data = load_task(tmp_path / "rel", TASK, pixels=True, frame_stack=3)
    assert data.frames.shape[1:] == (84, 84, 3) and data.stack_idx.shape == (len(data), 3)
    obs, act = MemorySampler([data]).sample(0, 8)
    assert obs.shape == (8, 9, 84, 84) and obs.dtype == torch.uint8 and act.shape == (8, 4)
    # the first observation of an episode repeats its first frame (no frames from the previous episode)
    assert (data.stack_idx[0] == 0).all()
    goals = {TASK: G.onehot(registry.spec(TASK).task_id, 16)}
    cfg = DistillConfig(obs="pixels", lr=1e-3, batch_size=16, steps=150, log_every=25, checkpoint_every=1000,
                        student=StudentConfig(hidden=64, layers=2, feature_dim=32, frame_stack=3))
    distiller, _ = distill([data], goals, cfg, run_dir=tmp_path / "run")
    losses = [row["loss"] for row in distiller.history]
    assert losses[-1] < 0.3 * losses[0], losses
    policy = load_student_policy(distiller.save_student())
    result = evaluate(policy, TASK, episodes=1, seed=0, render=True, task=task)
    assert result.lengths == [task.spec.horizon]
