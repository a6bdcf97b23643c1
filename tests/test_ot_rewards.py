"""OT rewards: torch Sinkhorn against POT, ranking of trajectories, reward scale, target encoder. Several demos of
different lengths at once against POT one by one: test_ot_batched.py."""

from __future__ import annotations

import numpy as np
import ot
import pytest
import torch

from polytask.learning.nets.drqv2 import Encoder, NetworkSpec
from polytask.learning.rl.ot_rewards import (
    OTRewarder,
    cosine_cost,
    ot_rewards_pot,
    ot_rewards_torch,
    sinkhorn_torch,
)

torch.set_num_threads(1)


def _hand_made_pair():
    """A 2-D demo moving along a quarter circle and an episode that lags behind it."""
    ang = np.linspace(0.0, np.pi / 2, 12)
    demo = np.stack([np.cos(ang), np.sin(ang)], 1) + 0.5
    lag = np.linspace(0.0, np.pi / 3, 10)
    episode = np.stack([np.cos(lag), np.sin(lag)], 1) + 0.5
    return episode, demo


def test_plan_and_rewards_match_a_direct_pot_computation():
    episode, demo = _hand_made_pair()
    # direct POT: the authors' call
    x = episode / np.linalg.norm(episode, axis=1, keepdims=True)
    y = demo / np.linalg.norm(demo, axis=1, keepdims=True)
    cost = 1.0 - x @ y.T
    plan_pot = ot.sinkhorn(np.full(10, 0.1), np.full(12, 1 / 12), cost, 0.01, numItermax=100)
    reward_pot = -(plan_pot * cost).sum(1)

    c_t = cosine_cost(torch.tensor(episode), torch.tensor(demo))
    assert np.abs(c_t.numpy() - cost).max() < 1e-12
    plan_t = sinkhorn_torch(c_t[None], torch.full((1, 10), 0.1), torch.full((1, 12), 1 / 12), 0.01, 100)[0]
    assert np.abs(plan_t.numpy() - plan_pot).max() < 1e-5
    rewards, best, _ = ot_rewards_torch(torch.tensor(episode), [torch.tensor(demo)])
    assert best == 0
    assert np.abs(rewards - reward_pot).max() < 1e-5
    r_ref, _, _ = ot_rewards_pot(episode, [demo])
    assert np.abs(r_ref - reward_pot).max() < 1e-12


def test_close_trajectory_ranks_above_far_one_and_best_demo_is_kept():
    t = np.linspace(0, 1, 25)[:, None]
    demo = np.concatenate([t, 1 - t, 0.2 + 0 * t], 1)
    rng = np.random.default_rng(1)
    close = demo + 0.02 * rng.normal(size=demo.shape)
    far = np.concatenate([1 - t, t, 0.9 + 0 * t], 1)
    r_close, _, _ = ot_rewards_torch(torch.tensor(close), [torch.tensor(demo)])
    r_far, _, _ = ot_rewards_torch(torch.tensor(far), [torch.tensor(demo)])
    assert r_close.sum() > r_far.sum() + 0.1
    # with two demos, the one the episode follows is chosen
    _, best, totals = ot_rewards_torch(torch.tensor(close), [torch.tensor(far), torch.tensor(demo)])
    assert best == 1 and totals[1] > totals[0]


def test_rewarder_scales_first_episode_to_minus_ten_and_uses_its_target_encoder():
    spec = NetworkSpec("state", (3,), 2, "none", state_encoder="mlp", feature_dim=16, hidden=16)
    torch.manual_seed(0)
    enc = Encoder(spec)
    t = np.linspace(0, 1, 21, dtype=np.float32)[:, None]
    demo = np.concatenate([t, 1 - t, t * t], 1).astype(np.float32)
    rw = OTRewarder(enc, [demo], frame_stack=1, pixels=False, scale_factor=10.0)
    episode = (demo[::-1] + 0.1).copy()
    first = rw.episode_rewards(episode)
    assert first.shape == (20,)
    assert first.sum() == pytest.approx(-10.0, rel=1e-5)
    scale = rw.scale
    # the scale stays fixed afterwards; an episode near the demo earns more
    near = rw.episode_rewards(demo + 0.01)
    assert rw.scale == scale and near.sum() > first.sum()
    # online encoder changes do not move rewards until refresh()
    with torch.no_grad():
        for p in enc.parameters():
            p.add_(torch.randn_like(p))
    again = rw.episode_rewards(demo + 0.01)
    assert np.array_equal(again, near)
    rw.refresh(enc)
    assert not np.array_equal(rw.episode_rewards(demo + 0.01), near)
