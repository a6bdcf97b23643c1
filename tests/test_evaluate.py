"""Evaluation: scores come from the task's own rule, seeds make runs comparable, effective tasks sum correctly."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from polytask.learning.policies.evaluate import EvalResult, effective_tasks, evaluate, write_csv
from polytask.sim.task import Step, Task, TaskSpec


class PointReach(Task):
    """1-D point that must reach a target drawn from the reset seed; success when within 0.05."""

    def __init__(self, render: bool = False) -> None:
        super().__init__(TaskSpec(name="toy/reach", suite="toy", task_id=0, state_dim=2, action_dim=1, horizon=30,
                                  action_repeat=1, image_size=8), render=render)
        self.x = 0.0
        self.target = 0.0

    def _reset(self, seed):
        rng = np.random.default_rng(seed)
        self.x, self.target = 0.0, float(rng.uniform(-1, 1))
        return np.array([self.x, self.target])

    def _step(self, action):
        self.x += 0.1 * float(action[0])
        dist = abs(self.x - self.target)
        return np.array([self.x, self.target]), -dist, dist < 0.05, False, {}

    def _render(self):
        return np.zeros((8, 8, 3), np.uint8)


class Greedy:
    def reset(self, step: Step) -> None:
        self.first = step.state.copy()

    def act(self, step: Step) -> np.ndarray:
        return np.clip([(step.state[1] - step.state[0]) * 10], -1, 1)


class Still:
    def reset(self, step: Step) -> None:
        pass

    def act(self, step: Step) -> np.ndarray:
        return np.zeros(1)


def test_scores_follow_the_task_rule_and_seeds_repeat():
    task = PointReach()
    good = evaluate(Greedy(), "toy/reach", episodes=6, seed=3, task=task)
    bad = evaluate(Still(), "toy/reach", episodes=6, seed=3, task=task)
    assert good.episodes == 6 and good.success_rate == 1.0 and good.mean_score == 1.0
    assert bad.success_rate < 0.5  # targets drawn in [-1, 1]: standing still rarely lands within 0.05
    assert all(n == 30 for n in good.lengths)
    again = evaluate(Greedy(), "toy/reach", episodes=6, seed=3, task=task)
    assert again.returns == good.returns  # same seeds, same placements, same returns
    other = evaluate(Greedy(), "toy/reach", episodes=6, seed=100, task=task)
    assert other.returns != good.returns


def test_effective_tasks_sums_mean_scores(tmp_path):
    a = EvalResult(task="a", scores=[1, 1, 0, 1], successes=[True, True, False, True], returns=[0] * 4)
    b = EvalResult(task="b", scores=[0.25, 0.75], successes=[False, False], returns=[250, 750])  # DMC-style
    assert effective_tasks({"a": a, "b": b}) == pytest.approx(0.75 + 0.5)
    assert effective_tasks([a]) == pytest.approx(0.75)
    path = write_csv({"a": a, "b": b}, tmp_path / "eval.csv", extra={"method": "x"})
    rows = list(csv.DictReader(path.open()))
    assert [r["task"] for r in rows] == ["a", "b"] and float(rows[1]["score"]) == 0.5 and rows[0]["method"] == "x"


def test_task_object_must_match_name():
    with pytest.raises(ValueError, match="toy/reach"):
        evaluate(Greedy(), "toy/other", episodes=1, task=PointReach())
    with pytest.raises(ValueError, match="episodes"):
        evaluate(Greedy(), "toy/reach", episodes=0, task=PointReach())
