"""The episode store: schema validation, atomic writes, crash safety, corrupt-file handling, resume."""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polytask.learning.data.episodes import Episode, EpisodeError, EpisodeStore, load_episode, save_episode


def make_episode(t: int = 12, pixels: bool = True, task: str = "xarm/reach", seed: int = 0) -> Episode:
    rng = np.random.default_rng(seed)
    return Episode(
        task=task, task_id=1,
        state=rng.normal(size=(t + 1, 5)).astype(np.float32),
        pixels=rng.integers(0, 255, size=(t + 1, 8, 8, 3), dtype=np.uint8) if pixels else None,
        action=rng.uniform(-1, 1, size=(t, 4)).astype(np.float32),
        reward=rng.normal(size=t).astype(np.float32),
        success=np.arange(t) > t // 2, episode_success=True, score=1.0,
    )


def test_round_trip_keeps_every_array_and_meta(tmp_path: Path) -> None:
    store = EpisodeStore(tmp_path / "s")
    ep = make_episode()
    path = store.append(ep)
    back = load_episode(path)
    for key in ("state", "pixels", "action", "reward", "success"):
        np.testing.assert_array_equal(getattr(back, key), getattr(ep, key))
    assert (back.task, back.task_id, back.episode_success, back.score) == ("xarm/reach", 1, True, 1.0)


def test_validation_names_key_and_expected_shape(tmp_path: Path) -> None:
    ep = make_episode()
    ep.action = ep.action[:, :3].copy()
    ep.state = ep.state[:5]
    with pytest.raises(EpisodeError, match=r"key 'state' has shape \(5, 5\), expected \(13, \*\)"):
        save_episode(ep, tmp_path / "x.npz")
    ep = make_episode()
    ep.action = ep.action.astype(np.float64)
    with pytest.raises(EpisodeError, match="key 'action' has dtype float64"):
        save_episode(ep, tmp_path / "x.npz")
    ep = make_episode()
    ep.reward[3] = np.nan
    with pytest.raises(EpisodeError, match="'reward' contains NaN"):
        save_episode(ep, tmp_path / "x.npz")
    assert not list(tmp_path.iterdir()), "a refused episode must leave no file behind"


def test_corrupt_file_is_skipped_with_a_warning_naming_it(tmp_path: Path, caplog) -> None:
    store = EpisodeStore(tmp_path)
    good = [store.append(make_episode(seed=i)) for i in range(3)]
    data = good[1].read_bytes()
    good[1].write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING):
        kept = [p for p, _ in store.iter_episodes()]
    assert kept == [good[0], good[2]]
    assert good[1].name in caplog.text


def test_pickled_payload_in_a_store_file_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    store = EpisodeStore(tmp_path / "s")
    path = store.append(make_episode())
    evil = {"state": np.array([f"open('{marker}', 'w')"], dtype=object)}
    with open(path, "wb") as fh:
        np.savez(fh, **evil)
    with pytest.raises(EpisodeError):
        load_episode(path)
    assert not marker.exists()


def test_numbering_resumes_after_restart_and_temp_files_are_invisible(tmp_path: Path) -> None:
    store = EpisodeStore(tmp_path)
    store.append(make_episode())
    store.append(make_episode())
    (tmp_path / ".tmp-abc.npz").write_bytes(b"partial")
    again = EpisodeStore(tmp_path)
    third = again.append(make_episode())
    assert third.name.startswith("000002_")
    assert len(again) == 3
    assert again.clean_temp_files() == [tmp_path / ".tmp-abc.npz"]


WRITER = textwrap.dedent("""
    import sys, numpy as np
    sys.path.insert(0, {tests!r})
    from test_episode_store import make_episode
    from polytask.learning.data.episodes import EpisodeStore
    store = EpisodeStore({root!r})
    print("ready", flush=True)
    i = 0
    while True:
        store.append(make_episode(t=40 + i % 7, seed=i))
        i += 1
""")


def _kill_storm(root: Path, kills: int, seed: int) -> int:
    rng = random.Random(seed)
    code = WRITER.format(tests=str(Path(__file__).parent), root=str(root))
    for _ in range(kills):
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"  # imports done (seconds on a busy machine), writing now
        time.sleep(rng.uniform(0.1, 0.9))  # a few episodes; the kill lands mid-write often
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    leftovers = len(list(root.glob(".tmp-*")))  # writes cut by a kill: must never be listed as episodes
    print(f"kill storm: {kills} kills, {leftovers} interrupted writes left as temp files")
    store = EpisodeStore(root)
    paths = store.paths()
    for path in paths:  # every finished episode loads and validates
        ep = load_episode(path)
        assert len(ep) >= 40
    assert all(not p.name.startswith(".tmp-") for p in paths)
    indices = [int(p.name[:6]) for p in paths]
    assert indices == list(range(len(indices))), "numbering continues across crashes without gaps"
    return len(paths)


def test_sigkill_while_writing_loses_no_finished_episode(tmp_path: Path) -> None:
    assert _kill_storm(tmp_path, kills=6, seed=1) > 0


@pytest.mark.slow
def test_sigkill_storm_50_kills(tmp_path: Path) -> None:
    assert _kill_storm(tmp_path, kills=50, seed=7) > 50


def test_disk_full_gives_clear_error_and_keeps_earlier_episodes(tmp_path: Path) -> None:
    """A real kernel write failure (RLIMIT_FSIZE -> EFBIG) in a child process while appending episodes."""
    code = textwrap.dedent(f"""
        import resource, signal, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_episode_store import make_episode
        from polytask.learning.data.episodes import EpisodeStore, EpisodeWriteError
        store = EpisodeStore({str(tmp_path)!r})
        for i in range(3):
            store.append(make_episode(seed=i))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))
        try:
            store.append(make_episode(t=400, seed=9))
        except EpisodeWriteError as err:
            print("ERROR:", err)
            sys.exit(3)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert "could not write episode" in proc.stdout and "intact" in proc.stdout
    store = EpisodeStore(tmp_path)
    assert len(store.episodes()) == 3
    assert not list(tmp_path.glob(".tmp-*"))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=4000), flip=st.integers(min_value=0, max_value=4000))
def test_truncated_or_flipped_files_raise_episode_error_only(tmp_path: Path, cut: int, flip: int) -> None:
    path = tmp_path / "000000_t_5.npz"
    save_episode(make_episode(t=5), path)
    data = bytearray(path.read_bytes())
    data = data[: min(cut, len(data))] if cut < len(data) else data
    if data and flip < len(data):
        data[flip] ^= 0xFF
    path.write_bytes(bytes(data))
    try:
        ep = load_episode(path)
    except EpisodeError as err:
        assert str(path) in str(err)
    else:
        ep.validate()


@settings(max_examples=30, deadline=None)
@given(blob=st.binary(min_size=0, max_size=600))
def test_random_bytes_raise_episode_error_only(blob: bytes) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "000000_x_1.npz"
        path.write_bytes(blob)
        with pytest.raises(EpisodeError):
            load_episode(path)


def test_store_folder_must_exist_when_not_creating(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        EpisodeStore(tmp_path / "missing", create=False)
    assert os.path.exists(tmp_path)
