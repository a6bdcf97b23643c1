"""Replay: n-step targets, frame stacking shared with online acting, bounded memory, reload from the store."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from polytask.learning.data.episodes import Episode, EpisodeStore
from polytask.learning.data.frames import FrameStacker, frames_chw, stack_window
from polytask.learning.data.replay import ReplayBuffer


def _episode(t: int, seed: int = 0, pixels: bool = False, size: int = 8, terminal: bool = False) -> Episode:
    rng = np.random.default_rng(seed)
    return Episode(
        task="xarm/reach", state=np.arange(t + 1, dtype=np.float32)[:, None].repeat(3, 1) + 1000 * seed,
        action=rng.uniform(-1, 1, (t, 4)).astype(np.float32), reward=np.arange(t, dtype=np.float32) + 1,
        success=np.zeros(t, bool),
        pixels=rng.integers(0, 256, (t + 1, size, size, 3), dtype=np.uint8) if pixels else None,
        source="replay", extra={"terminal": terminal})


def test_n_step_reward_discount_and_next_obs():
    buf = ReplayBuffer(1000, pixels=False, n_step=3, gamma=0.5, seed=0)
    buf.add(_episode(10), persist=False)
    b = buf.sample(256)
    t = b["obs"][:, 0].astype(int)  # state value == step index
    n_eff = np.minimum(3, 10 - t)
    want = np.array([sum(0.5 ** i * (tt + i + 1) for i in range(n)) for tt, n in zip(t, n_eff, strict=True)])
    assert np.allclose(b["reward"][:, 0], want)
    assert np.allclose(b["discount"][:, 0], 0.5 ** n_eff)
    assert np.array_equal(b["next_obs"][:, 0].astype(int), t + n_eff)
    assert set(t) == set(range(10)), "every step, including the last n-1, is sampled"


def test_terminal_episode_does_not_bootstrap_past_its_end():
    buf = ReplayBuffer(1000, pixels=False, n_step=3, gamma=0.9, seed=0)
    buf.add(_episode(6, terminal=True), persist=False)
    b = buf.sample(200)
    t = b["obs"][:, 0].astype(int)
    assert np.all(b["discount"][t >= 3, 0] == 0.0)
    assert np.allclose(b["discount"][t < 3, 0], 0.9 ** 3)


def test_replay_stacking_equals_online_stacking():
    ep = _episode(7, pixels=True)
    stacker = FrameStacker(3, pixels=True)
    online = [stacker.reset(ep.pixels[0])] + [stacker.push(f) for f in ep.pixels[1:]]
    replayed = stack_window(frames_chw(ep.pixels), np.arange(8), 3, pixels=True)
    assert replayed.shape == (8, 9, 8, 8)
    for t in range(8):
        assert np.array_equal(online[t], replayed[t]), t
    # oldest first, first frame repeated at the start
    assert np.array_equal(replayed[0][:3], replayed[0][6:])
    assert np.array_equal(replayed[5][6:], np.moveaxis(ep.pixels[5], -1, 0))
    assert np.array_equal(replayed[5][:3], np.moveaxis(ep.pixels[3], -1, 0))


def test_capacity_evicts_oldest_and_reload_restores_the_same_memory(tmp_path):
    store = EpisodeStore(tmp_path / "replay")
    buf = ReplayBuffer(25, pixels=False, n_step=2, seed=3, store=store)
    for i in range(6):
        buf.add(_episode(10, seed=i))
    assert len(buf) == 20 and buf.num_episodes == 2  # a third episode would exceed 25 transitions
    kept = [e.obs[0, 0] for e in buf._episodes]
    assert kept == [4000.0, 5000.0]
    again = ReplayBuffer(25, pixels=False, n_step=2, seed=3, store=EpisodeStore(tmp_path / "replay"))
    again.reload()
    assert [e.obs[0, 0] for e in again._episodes] == kept
    again.load_state(buf.state())
    a, b = buf.sample(32), again.sample(32)
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    # a resumed run ignores episodes written after its checkpoint
    partial = ReplayBuffer(25, pixels=False, n_step=2, store=EpisodeStore(tmp_path / "replay"))
    partial.reload(max_episodes=4)
    assert [e.obs[0, 0] for e in partial._episodes] == [2000.0, 3000.0]


def test_pixel_episode_required_for_pixel_replay():
    buf = ReplayBuffer(100, pixels=True)
    with pytest.raises(ValueError, match="no pixels"):
        buf.add(_episode(5), persist=False)


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


@pytest.mark.slow
def test_memory_stays_bounded_by_capacity_over_a_long_fill():
    """84x84 pixel episodes, 20x the capacity passing through: RSS must track the capacity, not the total."""
    capacity = 3000  # transitions -> ~64 MB of frames
    buf = ReplayBuffer(capacity, pixels=True, frame_stack=3, n_step=3, seed=0)
    gc.collect()
    base = _rss_mb()
    peak = 0.0
    for i in range(600):  # 600 episodes x 100 steps = 60000 transitions
        buf.add(_episode(100, seed=i, pixels=True, size=84), persist=False)
        if i % 20 == 0:
            buf.sample(256)
            peak = max(peak, _rss_mb() - base)
    bound_mb = (capacity + 100) * (84 * 84 * 3) / 2**20 + (capacity // 100 + 1) * 84 * 84 * 3 / 2**20
    print(f"replay RSS: 60000 transitions through capacity {capacity}: buffer {buf.nbytes() / 2**20:.0f} MB, "
          f"peak RSS growth {peak:.0f} MB (bound {bound_mb * 1.5 + 80:.0f} MB)")
    assert buf.nbytes() / 2**20 < bound_mb * 1.05
    assert peak < bound_mb * 1.5 + 80, f"RSS grew {peak:.0f} MB for a {bound_mb:.0f} MB buffer"
