"""DMC cheetah-run torso variants: all 10 built and stepped, the generated morphology, and the score rule checked
against dm_control's own cheetah-run (variant 0 is the stock cheetah)."""

from __future__ import annotations

import numpy as np
import pytest

from polytask.sim import registry
from polytask.sim.dmc_suite import TORSO_HALF_LENGTHS

VARIANTS = [f"dmc/cheetah-run-torso-{i}" for i in range(10)]


def test_registry_lists_ten_variants():
    assert registry.names("dmc/*") == VARIANTS
    assert TORSO_HALF_LENGTHS == (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4)


def test_every_variant_steps_with_state_and_pixels():
    rng = np.random.default_rng(0)
    final_states = []
    for i, name in enumerate(VARIANTS):
        task = registry.make(name, render=True)
        try:
            assert task.spec.task_id == i and task.spec.suite == "dmc"
            assert (task.spec.state_dim, task.spec.action_dim) == (17, 6)
            assert (task.spec.action_repeat, task.spec.horizon) == (2, 500)
            step = task.reset(seed=0)
            assert step.state.shape == (17,) and step.pixels.shape == (84, 84, 3) and step.pixels.dtype == np.uint8
            assert step.pixels.std() > 5
            first = step.pixels
            for _ in range(5):
                step = task.step(rng.uniform(-1, 1, 6))
            assert np.all(np.isfinite(step.state)) and not np.array_equal(step.pixels, first)
            final_states.append(step.state)
        finally:
            task.close()
    # different bodies, different dynamics: no two variants end in the same state
    assert len({tuple(np.round(s, 4)) for s in final_states}) == 10


@pytest.mark.parametrize("variant", [0, 4, 9])
def test_compiled_torso_head_and_thighs_follow_length(variant):
    length = TORSO_HALF_LENGTHS[variant]
    task = registry.make(VARIANTS[variant], render=False)
    try:
        named = task.physics.named.model
        assert named.geom_size["torso"][1] == pytest.approx(length)  # capsule half-length
        np.testing.assert_allclose(named.geom_pos["torso"], [0, 0, 0], atol=1e-9)
        np.testing.assert_allclose(named.body_pos["bthigh"], [-length, 0, 0])
        np.testing.assert_allclose(named.body_pos["fthigh"], [length, 0, 0])
        np.testing.assert_allclose(named.geom_pos["head"], [length + 0.1, 0, 0.1])
        assert task.physics.model.nq == 9 and task.physics.model.nu == 6
    finally:
        task.close()


def test_variant_zero_is_dm_control_cheetah_run_and_score_is_return_over_1000():
    """Same seed and actions as dm_control's stock cheetah-run: identical return; score = return / 1000."""
    from dm_control import suite

    actions = np.random.default_rng(1).uniform(-1, 1, size=(500, 6))
    task = registry.make(VARIANTS[0], render=False)
    step = task.reset(seed=7)
    for k, action in enumerate(actions):
        assert not step.done, f"episode ended early at agent step {k}"
        step = task.step(action)
    assert step.truncated and not step.terminal and task.t == 500  # 1000 simulator steps, action repeat 2

    env = suite.load("cheetah", "run", task_kwargs={"random": 7})
    ts = env.reset()
    stock_return = 0.0
    for action in actions:
        for _ in range(2):
            ts = env.step(action)
            stock_return += ts.reward
    assert ts.last()  # dm_control's own 1000-step episode ends exactly where ours does
    assert task.episode_return == pytest.approx(stock_return, rel=1e-6)
    assert task.score() == pytest.approx(stock_return / 1000, rel=1e-6)
    assert 0.0 <= task.score() <= 1.0
    np.testing.assert_allclose(step.state, np.concatenate([ts.observation["position"],
                                                           ts.observation["velocity"]]), rtol=1e-5, atol=1e-5)
    task.close()


def test_same_seed_same_start_and_other_seed_differs():
    task = registry.make(VARIANTS[3], render=False)
    try:
        a, b, c = task.reset(seed=5).state, task.reset(seed=5).state, task.reset(seed=6).state
        np.testing.assert_array_equal(a, b)
        assert not np.allclose(a, c)
    finally:
        task.close()


def test_demos_from_a_policy_keep_every_episode_since_dmc_has_no_success_rule(tmp_path):
    """DMC is scored by return: an expert's rollouts are its demos, none is dropped as 'failed'."""
    from polytask.learning.data.episodes import EpisodeStore
    from polytask.learning.policies.demos import record_demos

    class Sine:
        def reset(self, step) -> None:
            self.t = 0

        def act(self, step) -> np.ndarray:
            self.t += 1
            return np.full(6, np.sin(0.3 * self.t), dtype=np.float32)

    rep = record_demos("dmc/cheetah-run-torso-3", 2, tmp_path, render=False, policy=Sine(), source="expert",
                       progress=False)
    assert not rep.has_success and rep.kept == 2 and rep.attempted == 2 and rep.successes == 0
    eps = EpisodeStore(tmp_path).episodes("dmc/cheetah-run-torso-3")
    assert [e.score for e in eps] == pytest.approx(rep.scores)
    assert all(len(e.action) == 500 for e in eps)
