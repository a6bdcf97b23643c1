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


def test_pixel_demo_rows_pair_each_action_with_its_frames(tmp_path):
    """Pixel GCBC's rows: action t of a demo pairs with the stack of frames t-2..t (the first frame repeated at the
    start), never with the frame after the last action, and the sampler cuts (B, 9, 84, 84) batches from them."""
    from polytask.learning.distill.data import MemorySampler

    assert record_demos(MW, 2, tmp_path, render=True, progress=False).kept == 2
    demos = EpisodeStore(tmp_path).episodes(MW)
    data = demo_datasets(EpisodeStore(tmp_path), [MW], 2, pixels=True, frame_stack=3)[MW]
    lengths = [len(ep.action) for ep in demos]
    assert len(data) == sum(lengths) and data.stack_idx.shape == (sum(lengths), 3)
    assert data.frames.shape == (sum(lengths) + 2, 84, 84, 3)  # T+1 frames per demo
    second = lengths[0] + 1  # the second demo's first frame
    assert data.stack_idx[0].tolist() == [0, 0, 0] and data.stack_idx[2].tolist() == [0, 1, 2]
    assert data.stack_idx[lengths[0] - 1].tolist() == [lengths[0] - 3, lengths[0] - 2, lengths[0] - 1]
    assert data.stack_idx[lengths[0]].tolist() == [second] * 3
    np.testing.assert_array_equal(data.frames[data.stack_idx[-1, -1]], demos[1].pixels[-2])
    np.testing.assert_array_equal(data.actions[-1], demos[1].action[-1])
    obs, act = MemorySampler([data]).sample(0, 4)
    assert obs.shape == (4, 9, 84, 84) and act.shape == (4, 4)
    with pytest.raises(ValueError, match="no pixels"):
        record_demos(MW, 1, tmp_path / "states", render=False, progress=False)
        demo_datasets(EpisodeStore(tmp_path / "states"), [MW], 1, pixels=True)
