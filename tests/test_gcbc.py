"""GCBC's data and learning: demos follow each suite's success rule, and the student fits the demo actions."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from polytask.learning import goals as G
from polytask.learning.baselines import demo_datasets, gcbc
from polytask.learning.data.episodes import EpisodeStore
from polytask.learning.distill.config import DistillConfig, StudentConfig
from polytask.learning.distill.distill import action_error
from polytask.learning.policies.demos import record_demos

MW = "metaworld/drawer-close"
DMC = "dmc/cheetah-run-torso-2"


class Constant:
    """A policy that holds one action: fails Meta-World tasks, runs a DMC episode to its horizon."""

    def __init__(self, action: np.ndarray) -> None:
        self.action = action.astype(np.float32)

    def reset(self, step) -> None:
        pass

    def act(self, step) -> np.ndarray:
        return self.action


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> EpisodeStore:
    root = tmp_path_factory.mktemp("gcbc_demos")
    assert record_demos(MW, 1, root, render=False, progress=False).kept == 1  # scripted, successful
    failed = record_demos(MW, 1, root, render=False, progress=False, policy=Constant(np.zeros(4)),
                          keep_failed=True, max_attempts=1, seed=50)
    assert failed.kept == 1 and failed.successes == 0
    assert record_demos(DMC, 2, root, render=False, progress=False, policy=Constant(np.full(6, 0.3))).kept == 2
    return EpisodeStore(root)


def test_demos_are_the_successful_ones_where_the_suite_has_a_success_rule(store):
    eps = store.episodes(MW)
    good = next(e for e in eps if e.episode_success)
    data = demo_datasets(store, [MW, DMC], demos_per_task=1)
    np.testing.assert_array_equal(data[MW].actions, good.action)
    np.testing.assert_array_equal(data[MW].states, good.state[:-1])
    assert demo_datasets(store, [DMC], demos_per_task=2)[DMC].states.shape == (1000, 17)  # DMC: all episodes
    with pytest.raises(ValueError, match=r"1 successful demos of 'metaworld/drawer-close', need 2"):
        demo_datasets(store, [MW], demos_per_task=2)
    with pytest.raises(ValueError, match=r"2 demos of 'dmc/cheetah-run-torso-2', need 3"):
        demo_datasets(store, [DMC], demos_per_task=3)


def test_gcbc_fits_the_demo_actions(store, tmp_path):
    data = demo_datasets(store, [MW], demos_per_task=1)
    goals = G.task_goals("onehot", [MW])
    cfg = replace(DistillConfig(), student=StudentConfig(hidden=64, layers=2), lr=1e-3, batch_size=64)
    first, _ = gcbc(data, goals, cfg, run_dir=tmp_path / "zero", steps=1)
    before = action_error(first.student, goals, list(data.values()))[MW]
    trained, _ = gcbc(data, goals, cfg, run_dir=tmp_path / "gcbc", steps=400)
    after = action_error(trained.student, goals, list(data.values()))[MW]
    assert after < 0.2 * before, (before, after)
