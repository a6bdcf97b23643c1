"""OT on states: the cost and feature registries (rl/ot_rewards.py) and the expert's standardising state encoder
(nets/drqv2.py). The xArm layout is [ee xyz, tool, achieved xyz, goal xyz]."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polytask.learning.data.checkpoint import load_module, module_tensors
from polytask.learning.nets.drqv2 import Encoder, NetworkSpec
from polytask.learning.rl.ot_rewards import (
    OTRewarder,
    ot_rewards_pot,
    ot_rewards_torch,
    plan_cost,
    sqeuclidean_cost,
    xarm_relative,
)

torch.set_num_threads(1)


def _xarm_demo(goal: np.ndarray, n: int = 20) -> np.ndarray:
    """An arm carrying a point from 20 cm behind the goal onto it, the tool closing on the way."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    achieved = goal + (1.0 - t) * np.array([-0.2, 0.1, 0.15])
    ee = achieved + np.array([0.0, 0.0, 0.05])
    return np.concatenate([ee, t, achieved, np.repeat(goal[None], n, 0)], 1).astype(np.float32)


def _rewarder(demo: np.ndarray, **kw: object) -> OTRewarder:
    enc = Encoder(NetworkSpec("state", (10,), 4, "none"))
    return OTRewarder(enc, [demo], frame_stack=1, pixels=False, scale=1.0, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("cost,standardise", [("euclidean", False), ("sqeuclidean", True), ("saturating", False)])
def test_relative_features_make_the_same_motion_elsewhere_as_good_as_the_demo(cost: str, standardise: bool):
    demo = _xarm_demo(np.array([0.1, 0.05, 0.0]))
    moved = _xarm_demo(np.array([-0.05, -0.1, 0.0]))  # the same task at another placement
    wrong = moved.copy()
    wrong[:, 4:7] = demo[:, 4:7]  # the demo's motion, which misses the moved goal
    wrong[:, 0:3] = demo[:, 0:3]
    assert np.allclose(xarm_relative(torch.tensor(moved)).numpy(), xarm_relative(torch.tensor(demo)).numpy(),
                       atol=1e-6)
    rel = _rewarder(demo, features="xarm_relative", cost=cost, standardise=standardise)
    self_r, moved_r, wrong_r = (rel.episode_rewards(x).sum() for x in (demo, moved, wrong))
    assert moved_r == pytest.approx(self_r, abs=1e-6)
    assert wrong_r < moved_r - (0.5 if standardise else 0.05)  # copying the demo's absolute motion is punished
    # the raw state with the cosine (the default) prefers the demo's absolute motion to the right one
    raw = _rewarder(demo)
    assert raw.episode_rewards(wrong).sum() > raw.episode_rewards(moved).sum()


def test_squared_distance_counts_lengths_where_the_cosine_does_not():
    t = np.linspace(0.2, 1.0, 15)[:, None]
    demo = np.concatenate([t, 0.5 + 0 * t, 1 - t], 1)
    longer = 2.0 * demo  # every row parallel to the demo's
    r_cos, _, _ = ot_rewards_torch(torch.tensor(longer), [torch.tensor(demo)])
    r_sq, _, _ = ot_rewards_torch(torch.tensor(longer), [torch.tensor(demo)], cost_kind="sqeuclidean")
    r_self, _, _ = ot_rewards_torch(torch.tensor(demo), [torch.tensor(demo)], cost_kind="sqeuclidean")
    r_eu, _, _ = ot_rewards_torch(torch.tensor(longer), [torch.tensor(demo)], cost_kind="euclidean")
    assert r_eu.sum() < -0.5
    assert abs(r_cos.sum()) < 0.05  # the cosine sees no difference
    assert r_sq.sum() < r_self.sum() - 0.5
    # the torch path and the POT path agree on the new cost
    r_pot, _, _ = ot_rewards_pot(longer, [demo], cost_kind="sqeuclidean")
    assert np.abs(r_pot - r_sq).max() < 1e-5


def test_saturating_cost_is_linear_near_a_match_and_bounded_far_from_one():
    """d / (d + 5 cm): a 2 mm miss costs twice a 1 mm one, as with the Euclidean distance, but a feature 1 m off
    (a grain on the floor moves the pour's centroid that far) costs barely more than one 30 cm off."""
    demo = _xarm_demo(np.array([0.1, 0.05, 0.0]))

    def off(metres: float) -> np.ndarray:
        ep = demo.copy()
        ep[:, 4] += metres  # the achieved point off along x (so are ee - achieved and achieved - goal)
        return ep

    def total(cost: str, ep: np.ndarray) -> float:
        return float(_rewarder(demo, features="xarm_relative", cost=cost).episode_rewards(ep).sum())

    assert total("saturating", off(0.002)) / total("saturating", off(0.001)) == pytest.approx(2.0, rel=0.05)
    assert total("euclidean", off(1.0)) / total("euclidean", off(0.3)) == pytest.approx(1.0 / 0.3, rel=0.05)
    assert 1.0 < total("saturating", off(1.0)) / total("saturating", off(0.3)) < 1.2
    assert total("saturating", off(1.0)) > -demo.shape[0]  # each step's cost is below 1
    r_pot, _, _ = ot_rewards_pot(off(0.1), [demo], cost_kind="saturating")
    r_torch, _, _ = ot_rewards_torch(torch.tensor(off(0.1)), [torch.tensor(demo)], cost_kind="saturating")
    assert np.abs(r_pot - r_torch).max() < 1e-5


def test_plan_of_a_large_cost_is_finite_and_scale_free():
    rng = np.random.default_rng(0)
    x, y = torch.tensor(rng.normal(size=(12, 4))), torch.tensor(rng.normal(size=(9, 4)))
    r1, _, _ = ot_rewards_torch(x, [y], cost_kind="sqeuclidean")
    r100, _, _ = ot_rewards_torch(10.0 * x, [10.0 * y], cost_kind="sqeuclidean")  # costs up to ~1e3
    assert np.all(np.isfinite(r100)) and r1.sum() < 0
    assert np.allclose(r100, 100.0 * r1, rtol=1e-6)  # same plan; rewards in the cost's own units
    c = sqeuclidean_cost(x, y)
    assert float(plan_cost(c, "sqeuclidean").max()) == pytest.approx(2.0)
    assert torch.equal(plan_cost(c, "cosine"), c)


def test_pixel_rewarder_refuses_state_features():
    spec = NetworkSpec("pixels", (3, 32, 32), 4, "none", hidden=16, feature_dim=16)
    with pytest.raises(ValueError, match="read states"):
        OTRewarder(Encoder(spec), [np.zeros((3, 3, 32, 32), np.uint8)], 1, True, features="xarm_relative")


def test_standardising_encoder_is_frozen_to_its_data_and_travels_with_the_checkpoint():
    spec = NetworkSpec("state", (10,), 4, "none", state_encoder="standardise")
    rng = np.random.default_rng(2)
    states = (rng.normal(size=(200, 10)) * 0.05 + 0.3).astype(np.float32)
    states[:, 3] = 1.0  # a constant slot (the peg's closed gripper): floored std, not a division by zero
    enc = Encoder(spec)
    assert torch.equal(enc(torch.tensor(states)), torch.tensor(states))  # unit buffers until set
    enc.set_normalizer(states)
    out = enc(torch.tensor(states))
    assert torch.all(torch.isfinite(out))
    keep = [i for i in range(10) if i != 3]
    assert torch.allclose(out[:, keep].mean(0), torch.zeros(9), atol=1e-4)
    assert torch.allclose(out[:, keep].std(0, unbiased=False), torch.ones(9), atol=1e-3)
    assert torch.all(out[:, 3] == 0)
    assert not any(p.requires_grad for p in enc.buffers())
    other = Encoder(spec)
    load_module(other, module_tensors("encoder", enc), "encoder")
    assert torch.equal(other(torch.tensor(states)), out)
    with pytest.raises(ValueError, match="not 'standardise'"):
        Encoder(NetworkSpec("state", (10,), 4, "none")).set_normalizer(states)
