"""The batched Sinkhorn (learning/accel/sinkhorn.py) against POT's `ot.sinkhorn`, problem by problem.

Cases where POT stops early (problems converging at different iterations), where it does not converge in 100
iterations, where it hits numerical errors (a kernel that underflows), and padded marginals.
"""

from __future__ import annotations

import warnings

import numpy as np
import ot
import pytest
import torch

from polytask.learning.accel.sinkhorn import sinkhorn_batched
from polytask.learning.rl.ot_rewards import cosine_cost, ot_rewards_pot, ot_rewards_torch

torch.set_num_threads(1)


def _trajectory_costs(b: int, n: int, d: int, seed: int) -> np.ndarray:
    """Cosine costs of episode/demo feature trajectories around one shared path, noisier problem by problem."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, d))
    scale = np.linspace(0.5, 4.0, b)[:, None, None]
    x = scale * rng.normal(size=(b, n, d)) + 2 * base
    y = scale * rng.normal(size=(b, n, d)) + 2 * base
    return cosine_cost(torch.tensor(x), torch.tensor(y)).numpy()


def _pot(cost: np.ndarray, reg: float, iters: int) -> tuple[np.ndarray, list[int]]:
    plans, its = [], []
    n, m = cost.shape[1:]
    for c in cost:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p, log = ot.sinkhorn(np.full(n, 1 / n), np.full(m, 1 / m), c, reg, numItermax=iters, log=True)
        plans.append(p)
        its.append(int(log["niter"]))
    return np.stack(plans), its


@pytest.mark.parametrize(("reg", "distinct"), [(0.01, 2), (0.1, 4)], ids=["paper-reg", "early-stops"])
def test_64_episodes_of_125_steps_match_pot_rewards_within_1e9(reg, distinct):
    """Table IV's reg 0.01 (POT stops a problem at the first check or runs all 100 iterations) and reg 0.1 (it
    stops problems at many different checks): plans and rewards equal POT's."""
    cost = _trajectory_costs(64, 126, 64, seed=0)
    ref, its = _pot(cost, reg, 100)
    assert len(set(its)) >= distinct and max(its) == 99, sorted(set(its))
    uniform = torch.full((64, 126), 1 / 126, dtype=torch.float64)
    plan = sinkhorn_batched(torch.tensor(cost), uniform, uniform.clone(), reg=reg).numpy()
    np.testing.assert_allclose(plan, ref, rtol=0, atol=1e-12)
    rewards, rewards_ref = -(plan * cost).sum(-1), -(ref * cost).sum(-1)
    assert np.abs(rewards - rewards_ref).max() < 1e-9


def test_numerical_errors_keep_the_last_scaling_as_pot_does():
    """reg 1e-4 on costs near 1: the kernel underflows to 0 for some problems, which POT answers by keeping its
    previous scaling and stopping; the others solve normally in the same batch."""
    rng = np.random.default_rng(1)
    cost = rng.uniform(0.0, 0.004, (4, 12, 9))
    cost[1] = rng.uniform(0.9, 1.0, (12, 9))  # every entry of problem 1's kernel underflows at reg 1e-4
    ref, _ = _pot(cost, 1e-4, 50)
    a, b = torch.full((4, 12), 1 / 12, dtype=torch.float64), torch.full((4, 9), 1 / 9, dtype=torch.float64)
    with pytest.warns(UserWarning, match="numerical errors in 1 of 4"):
        plan = sinkhorn_batched(torch.tensor(cost), a, b, reg=1e-4, iters=50).numpy()
    assert np.isfinite(plan).all()
    np.testing.assert_allclose(plan, ref, rtol=1e-9, atol=1e-300)


def test_padded_demos_of_other_lengths_match_pot_one_by_one():
    rng = np.random.default_rng(2)
    episode = rng.normal(size=(40, 8))
    demos = [rng.normal(size=(m, 8)) for m in (25, 40, 57)]
    r_t, best_t, tot_t = ot_rewards_torch(torch.tensor(episode), [torch.tensor(d) for d in demos])
    r_p, best_p, tot_p = ot_rewards_pot(episode, demos)
    assert best_t == best_p
    np.testing.assert_allclose(tot_t, tot_p, rtol=0, atol=1e-10)
    np.testing.assert_allclose(r_t, r_p, rtol=0, atol=1e-12)
