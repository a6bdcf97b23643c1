"""One goal module: a task's goal vector is a function of its spec, with one width rule, whichever learner asks."""

from __future__ import annotations

import numpy as np
import pytest

from polytask.learning import goals as G
from polytask.learning.config import load_config
from polytask.learning.distill.config import DistillConfig
from polytask.learning.distill.pipeline import student_goals
from polytask.learning.rl.lifelong import stage_goals as lifelong_goals
from polytask.learning.rl.multitask_config import MultiTaskConfig
from polytask.sim import registry

PAIR = ["metaworld/coffee-button", "metaworld/button-press-topdown"]


def test_a_tasks_goal_is_keyed_on_its_spec_and_the_same_for_every_learner():
    specs = [registry.spec(t) for t in PAIR]
    goals = G.vector_goals("onehot", specs)
    assert all(g.shape == (len(registry.names("metaworld/*")),) for g in goals.values())  # the suite's width
    for s in specs:
        assert int(np.argmax(goals[s.name])) == s.task_id  # the suite's id, not the position in this list
    assert G.task_goals("onehot", PAIR[::-1]).keys() == set(PAIR)
    for t in PAIR:  # multi-task/lifelong RL and the distilled student: the very same vectors
        np.testing.assert_array_equal(lifelong_goals(load_config(MultiTaskConfig), [t])[t], goals[t])
        np.testing.assert_array_equal(student_goals(DistillConfig(goal="onehot"), [t], None)[t], goals[t])


def test_sinusoid_interleaves_sin_and_cos_and_width_is_configurable():
    v = G.sinusoid(3, 8)
    freq = np.exp(-np.log(10000.0) * 2 * np.arange(4) / 8)
    np.testing.assert_allclose(v[0::2], np.sin(3 * freq), rtol=1e-6)
    np.testing.assert_allclose(v[1::2], np.cos(3 * freq), rtol=1e-6)
    specs = [registry.spec(t) for t in PAIR]
    assert G.goal_width("sinusoid", specs) == G.SINUSOID_DIM
    assert {g.shape for g in G.vector_goals("sinusoid", specs, 16).values()} == {(16,)}
    assert {g.shape for g in G.vector_goals("onehot", specs, 20).values()} == {(20,)}


def test_widths_that_cannot_hold_the_goal_are_refused():
    specs = [registry.spec("metaworld/drawer-open"), registry.spec("kitchen/microwave")]
    with pytest.raises(ValueError, match="several suites"):
        G.vector_goals("onehot", specs)
    with pytest.raises(ValueError, match="does not fit a width of 4"):
        G.vector_goals("onehot", [registry.spec("metaworld/drawer-open")], 4)
    with pytest.raises(ValueError, match="cannot be configured"):
        G.goal_width("language", specs[:1], 64)


def test_metadata_is_read_without_building_a_simulator(monkeypatch):
    entry = registry.entry("metaworld/door-open")

    def no_simulator(**_kw):
        raise AssertionError("registry.spec built a simulator")

    monkeypatch.setitem(registry._REGISTRY, entry.name, type(entry)(entry.name, entry.suite, no_simulator,
                                                                     entry.description, entry.spec))
    spec = registry.spec("metaworld/door-open")
    assert (spec.state_dim, spec.action_dim, spec.horizon, spec.task_id) == (39, 4, 63, 1)
