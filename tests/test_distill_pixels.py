"""The pixel student path at toy scale on CPU: rendered store -> relabel -> frame-stacked batches -> student.

The real pixel run needs a GPU; this checks that the same code fits a handful of rendered episodes (the loss
falls by an order of magnitude) and that the checkpoint, acting frame by frame as it would online (its own frame
stack), reproduces the teacher's actions on those frames far better than an untrained student.
"""

from __future__ import annotations

import numpy as np
import torch

from polytask.learning import goals as G
from polytask.learning.data.episodes import EpisodeStore
from polytask.learning.distill.config import DistillConfig, StudentConfig
from polytask.learning.distill.data import MemorySampler, load_task
from polytask.learning.distill.distill import distill
from polytask.learning.distill.relabel import ScriptedTeacher, relabel_store
from polytask.learning.nets.student import StudentNet
from polytask.learning.policies.base import ScriptedPolicy
from polytask.learning.policies.rollout import rollout
from polytask.learning.policies.student import StudentPolicy, load_student_policy
from polytask.sim import registry
from polytask.sim.task import Step

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
    trained = load_student_policy(distiller.save_student())
    untrained = StudentPolicy(StudentNet(distiller.student.spec), goals)
    episode = EpisodeStore(tmp_path / "rel").episodes(TASK)[0]

    def action_error(policy) -> float:
        """Mean squared error to the teacher's action, acting through the episode's frames in order."""
        steps = [Step(state=episode.state[t], pixels=episode.pixels[t], reward=0.0, success=False, terminal=False,
                      truncated=False, goal=task.goal) for t in range(len(episode.state))]
        policy.reset(steps[0])
        acts = np.stack([policy.act(s) for s in steps])
        return float(((acts - episode.expert_action) ** 2).sum(-1).mean())

    assert action_error(trained) < 0.3 * action_error(untrained)
