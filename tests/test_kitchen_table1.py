"""Kitchen's Table I bench (bench/kitchen_table1.py): the exploratory episodes it distils from carry, at every
visited state, the scripted teacher's clean action, while the actions taken are the noisy ones."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def bench():
    spec = importlib.util.spec_from_file_location("kitchen_table1", ROOT / "bench" / "kitchen_table1.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_collect_labels_every_state_with_the_clean_teacher(tmp_path, one_torch_thread):
    from polytask.learning.distill.data import load_task
    from polytask.sim import registry

    kt = bench()
    task = "kitchen/slide-cabinet"
    run = kt.KitchenTable(kt.parse(["--root", str(tmp_path), "--tasks", task, "--episodes-per-task", "2"]))
    assert run.tasks == [task]
    run.collect()
    data = load_task(tmp_path / "labelled" / "kitchen_slide-cabinet", task)
    assert data.episodes == 2 and len(data) == 2 * (registry.spec(task).horizon + 1)
    eps = sorted((tmp_path / "labelled" / "kitchen_slide-cabinet").glob("*.npz"))
    from polytask.learning.data.episodes import load_episode

    clean, noisy = (load_episode(p) for p in eps)  # noise levels cycle from 0.0
    assert clean.extra["noise_std"] == 0.0 and noisy.extra["noise_std"] > 0
    np.testing.assert_array_equal(clean.action, clean.expert_action[:-1])  # noise 0: the label is the action
    assert np.abs(noisy.action - noisy.expert_action[:-1]).mean() > 0.02  # noisy actions, clean labels
    assert clean.episode_success and np.all(np.abs(noisy.expert_action) <= 1.0)


def test_import_demos_cuts_kitchen_play_files_into_snippets(tmp_path, one_torch_thread):
    """What a user with play data runs: `polytask import-demos --kitchen-play FILE|DIR --out STORE`."""
    from polytask.cli import main
    from polytask.learning.data.episodes import EpisodeStore
    from polytask.learning.data.play_files import save_play
    from polytask.sim.kitchen_play import record_play

    save_play(record_play(["slide cabinet", "light switch"], seed=0), tmp_path / "play" / "chain.npz")
    assert main(["import-demos", "--kitchen-play", str(tmp_path / "play"), "--out", str(tmp_path / "store")]) == 0
    eps = EpisodeStore(tmp_path / "store", create=False).episodes()
    assert [ep.task for ep in eps] == ["kitchen/slide-cabinet", "kitchen/light-switch"]
    assert all(ep.episode_success and ep.source == "play" for ep in eps)
    with pytest.raises(SystemExit, match="--task is not used"):
        main(
            [
                "import-demos",
                "--kitchen-play",
                str(tmp_path / "play"),
                "--task",
                "kitchen/kettle",
                "--out",
                str(tmp_path / "x"),
            ]
        )


class StandStill:
    """A 'student' that never moves the arm: the teacher's first waypoint runs out of steps."""

    def __init__(self, spec) -> None:
        from polytask.learning.policies.base import PolicyInputs

        self.inputs = PolicyInputs(action_dim=spec.action_dim, state_dim=spec.state_dim)

    def reset(self, step) -> None:
        pass

    def act(self, step) -> np.ndarray:
        return np.zeros(self.inputs.action_dim, np.float32)


def test_dagger_labels_what_the_student_visits_and_stops_where_the_teacher_gave_up(one_torch_thread):
    """The student acts, the teacher labels every visited state; once the teacher's plan runs out of steps short
    of a waypoint (the hand never got there) the episode is cut: later labels would follow the plan on time."""
    from polytask.sim import registry

    kt = bench()
    task = registry.make("kitchen/slide-cabinet", render=False)
    try:
        policy = kt.DaggerPolicy(task, StandStill(task.spec), beta=0.0, rng=np.random.default_rng(0))
        ep = kt.labelled_rollout(task, policy, seed=0)
        assert len(ep) == task.spec.horizon and np.all(ep.action == 0.0)  # the student's actions were played
        assert ep.expert_action.shape == (len(ep) + 1, 9) and np.abs(ep.expert_action[:-1]).max() > 0.1
        first_budget = task.scripted_expert.waypoints[0].max_steps
        assert task.scripted_expert.gave_up_at == first_budget  # the approach was never reached
        cut = kt.before_teacher_gave_up(ep, task)
        assert len(cut) == first_budget - 1 and cut.extra["steps_played"] == task.spec.horizon
        assert cut.state.shape[0] == cut.expert_action.shape[0] == first_budget
        cut.validate("cut episode")
        # the teacher itself, acting, reaches every waypoint of its plan: nothing to cut
        ep = kt.labelled_rollout(task, kt.LabellingTeacher(task, 0.0, np.random.default_rng(0)), seed=0)
        assert task.scripted_expert.gave_up_at is None and kt.before_teacher_gave_up(ep, task) is ep
        assert ep.episode_success
    finally:
        task.close()
