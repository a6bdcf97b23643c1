"""One loader per checkpoint kind: callers (eval, record-demos, the policy server) never branch on the kind."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polytask.learning.data.checkpoint import CheckpointError, save_checkpoint
from polytask.learning.nets.progressive import ProgressiveNet
from polytask.learning.policies.loaders import LOADERS, load_any_policy
from polytask.learning.policies.progressive import save_progressive
from polytask.sim import registry


def test_progressive_checkpoint_acts_by_task_and_refuses_others(tmp_path):
    net = ProgressiveNet(obs_dim=39, action_dim=4, hidden=16, layers=2)
    net.add_column()
    path = save_progressive(tmp_path / "p.safetensors", net, {"metaworld/door-open": 0}, step=1)
    loaded = load_any_policy(path)
    assert (loaded.kind, loaded.tasks, loaded.pixels, loaded.unified) == ("progressive", ["metaworld/door-open"],
                                                                        False, True)
    task = registry.make("metaworld/door-open", render=False)
    try:
        step = task.reset(seed=0)
        loaded.policy.reset(step)
        action = loaded.policy.act(step)
    finally:
        task.close()
    assert action.shape == (4,) and np.all(np.abs(action) <= 1.0)
    loaded.check_task("metaworld/door-open", str(path))
    with pytest.raises(ValueError, match="not taught task 'metaworld/hammer'"):
        loaded.check_task("metaworld/hammer", str(path))


def test_a_checkpoint_that_is_not_a_policy_is_named(tmp_path):
    path = save_checkpoint(tmp_path / "x.safetensors", {"w": torch.zeros(2)}, {"kind": "replay-state"})
    with pytest.raises(CheckpointError, match=r"kind 'replay-state' is not a policy; known kinds: expert"):
        load_any_policy(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_any_policy(tmp_path / "missing.safetensors")
    assert set(LOADERS) == {"expert", "student", "multitask-rl", "progressive", "progressive-rl"}
