"""Kitchen play data: a trajectory chained from scripted subtasks is cut back into labelled snippets; the loaders
read relay-policy-learning pickles and D4RL arrays safely; snippets become valid Episodes at the agent's rate."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from polytask.learning.data.episodes import EpisodeStore
from polytask.learning.data.kitchen_import import import_play, record_play_snippets, resample_indices
from polytask.learning.data.play_files import load_play_dir, load_play_file, save_play
from polytask.sim.kitchen_elements import strict_complete
from polytask.sim.kitchen_play import (
    PlayFormatError,
    PlayTrajectory,
    completion_events,
    record_play,
    render_qpos,
    segment,
)


@pytest.fixture(scope="module")
def play():
    """Slide cabinet, then light switch, in one scripted episode (state only: ~5 s)."""
    traj = record_play(["slide cabinet", "light switch"], seed=0, init_noise=0.05)
    assert traj.extra["achieved"] == ["slide cabinet", "light switch"]
    return traj


def test_segmenter_recovers_both_subtasks_with_labels(play):
    snippets = segment(play)
    assert [s.task for s in snippets] == ["kitchen/slide-cabinet", "kitchen/light-switch"]
    first, second = snippets
    assert first.start == 0 and second.start == first.end and second.end <= len(play)
    # each snippet ends on the first observation where its element is strictly complete
    for s in snippets:
        assert strict_complete(s.qpos[-1], s.element)
        assert not strict_complete(s.qpos[-2], s.element)
        assert s.side_effects == []
        assert s.actions.shape == (s.end - s.start, 9) and s.states.shape == (s.end - s.start + 1, 59)
    # the light switch was untouched while the cabinet opened, and the cabinet stays open afterwards
    assert not strict_complete(first.qpos[-1], "light switch")
    assert strict_complete(second.qpos[-1], "slide cabinet")


def test_loose_segmentation_cuts_earlier(play):
    strict = {e: t for t, e in completion_events(play.qpos, "strict")}
    loose = {e: t for t, e in completion_events(play.qpos, "loose")}
    assert set(strict) == set(loose) == {"slide cabinet", "light switch"}
    assert loose["slide cabinet"] < strict["slide cabinet"]


def test_snippets_become_valid_episodes_in_a_store(play, tmp_path):
    store = EpisodeStore(tmp_path / "store")
    episodes = import_play([play], store)
    assert [e.task for e in episodes] == ["kitchen/slide-cabinet", "kitchen/light-switch"]
    snippets = segment(play)
    for ep, snip in zip(episodes, snippets, strict=True):
        assert len(ep) == len(snip)  # recorded at the agent's rate: no resampling
        assert ep.source == "play" and ep.episode_success and ep.score == 1.0
        assert ep.success[-1] and not ep.success[:-1].any()
        np.testing.assert_allclose(ep.state, snip.states.astype(np.float32))
    loaded = store.episodes()
    assert [e.task for e in loaded] == ["kitchen/slide-cabinet", "kitchen/light-switch"]
    assert loaded[1].extra["element"] == "light switch"


def _relay_dict(play: PlayTrajectory) -> dict:
    """A relay-policy-learning style demo: observations = qpos(30) + goal(30), one action per env step."""
    obs = np.concatenate([play.qpos, np.zeros((play.qpos.shape[0], 30))], axis=1)
    acts = np.concatenate([play.actions, np.zeros((1, 9))])  # row-aligned: the last row's action is unused
    return {"observations": obs, "actions": acts, "init_qpos": play.qpos[0]}


def test_relay_pickle_loads_and_resamples_to_agent_rate(play, tmp_path):
    path = tmp_path / "demo_path.pkl"
    path.write_bytes(pickle.dumps(_relay_dict(play)))
    (traj,) = load_play_file(path)
    assert traj.env_steps_per_action == 1 and len(traj) == len(play)
    np.testing.assert_allclose(traj.qpos, play.qpos)
    assert [s.element for s in segment(traj)] == ["slide cabinet", "light switch"]
    episodes = import_play([traj])
    snip = segment(traj)[0]
    assert len(episodes[0]) == len(resample_indices(len(snip), 2)) - 1 == (len(snip) + 1) // 2
    np.testing.assert_allclose(episodes[0].action[0], play.actions[0:2].mean(axis=0), atol=1e-6)
    # states rebuilt from qpos: positions exact, velocities finite
    np.testing.assert_allclose(episodes[0].state[:, :9], play.qpos[resample_indices(len(snip), 2), :9], atol=1e-6)


def test_pickle_with_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"observations": Evil(), "actions": np.zeros((2, 9))}))
    with pytest.raises(PlayFormatError, match="refusing to load"):
        load_play_file(path)
    assert not marker.exists()


def test_d4rl_npz_is_split_at_terminals_and_timeouts(play, tmp_path):
    relay = _relay_dict(play)
    obs = np.concatenate([relay["observations"]] * 2)
    acts = np.concatenate([relay["actions"]] * 2)
    n = relay["observations"].shape[0]
    terminals = np.zeros(2 * n, bool)
    timeouts = np.zeros(2 * n, bool)
    terminals[n - 1] = True
    timeouts[2 * n - 1] = True
    np.savez(tmp_path / "kitchen_mixed.npz", observations=obs, actions=acts, terminals=terminals, timeouts=timeouts)
    save_play(play, tmp_path / "ours.npz")
    trajs = load_play_dir(tmp_path)
    sources = sorted(t.source.rsplit("/", 1)[-1] for t in trajs)
    assert sources == ["kitchen_mixed.npz#0", "kitchen_mixed.npz#1", "ours.npz"]
    for t in trajs:
        assert [s.element for s in segment(t)] == ["slide cabinet", "light switch"]
    ours = next(t for t in trajs if t.source.endswith("ours.npz"))
    assert ours.env_steps_per_action == 2 and ours.states is not None


def test_bad_files_name_the_problem(tmp_path):
    np.savez(tmp_path / "short.npz", observations=np.zeros((5, 12)), actions=np.zeros((5, 9)))
    with pytest.raises(PlayFormatError, match="12 columns"):
        load_play_file(tmp_path / "short.npz")
    np.savez(tmp_path / "noact.npz", observations=np.zeros((5, 60)))
    with pytest.raises(PlayFormatError, match="missing key 'actions'"):
        load_play_file(tmp_path / "noact.npz")
    with pytest.raises(PlayFormatError, match="qpos has 3 rows"):
        PlayTrajectory(qpos=np.zeros((3, 30)), actions=np.zeros((5, 9)))
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(PlayFormatError, match="unknown play file type"):
        load_play_file(tmp_path / "x.txt")


def test_kinematic_playback_renders_the_recorded_states(play):
    from polytask.sim import registry

    task = registry.make("kitchen/slide-cabinet", render=True)
    try:
        frames = render_qpos(task, play.qpos[[0, 40]])
    finally:
        task.close()
    assert frames.shape == (2, 84, 84, 3) and frames.dtype == np.uint8
    assert np.abs(frames[0].astype(int) - frames[1]).mean() > 0.5  # arm and cabinet moved


def test_record_play_snippets_labels_every_snippet_with_its_element(tmp_path):
    store = EpisodeStore(tmp_path / "snips")
    episodes = record_play_snippets(1, store, chain_length=2, seed=3)
    assert len(episodes) == 2 and len(store) == 2
    tasks = {e.task for e in episodes}
    assert len(tasks) == 2 and tasks <= {f"kitchen/{n}" for n in ("bottom-burner", "top-burner", "light-switch",
                                                                    "slide-cabinet", "microwave", "kettle")}
    for ep in episodes:
        element = ep.extra["element"]
        assert ep.task.endswith(element.replace(" ", "-")) and ep.success[-1]
