"""Importing the authors' demo pickles safely, and YAML config validation with file/key errors."""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from polytask.learning.config import ConfigError, load_config
from polytask.learning.data.episodes import EpisodeStore
from polytask.learning.data.import_authors import import_authors_demos
from polytask.learning.data.safe_pickle import UnsafePickleError, safe_load_pickle


def authors_pickle(path: Path, n: int = 2, t: int = 6) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, size=(n, t, 9, 84, 84), dtype=np.uint8)
    states = rng.normal(size=(n, t, 39)).astype(np.float32)
    actions = rng.uniform(-1, 1, size=(n, t, 4)).astype(np.float32)
    rewards = rng.normal(size=(n, t)).astype(np.float32)
    path.write_bytes(pickle.dumps([pixels, states, actions, rewards]))


def test_authors_pickle_imports_latest_frame_and_aligns_actions(tmp_path: Path) -> None:
    authors_pickle(tmp_path / "demos.pkl")
    store = EpisodeStore(tmp_path / "store")
    paths = import_authors_demos(tmp_path / "demos.pkl", "metaworld/door-open", 1, store)
    assert len(paths) == 2
    raw = pickle.loads((tmp_path / "demos.pkl").read_bytes())
    ep = store.episodes()[1]
    assert ep.pixels.shape == (6, 84, 84, 3) and len(ep) == 5
    np.testing.assert_array_equal(ep.pixels[2], raw[0][1, 2, 6:9].transpose(1, 2, 0))
    np.testing.assert_allclose(ep.action, raw[2][1, :5])
    np.testing.assert_array_equal(ep.goal_pixels, ep.pixels[-1])


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/polytask-pwned",))


def test_pickle_with_code_is_refused_before_running(tmp_path: Path) -> None:
    Path("/tmp/polytask-pwned").unlink(missing_ok=True)
    bad = tmp_path / "evil.pkl"
    bad.write_bytes(pickle.dumps([_Evil(), 1, 2, 3]))
    with pytest.raises(UnsafePickleError, match="refusing to load global"):
        safe_load_pickle(bad)
    assert not Path("/tmp/polytask-pwned").exists()


@dataclass
class Agent:
    lr: float = 1e-4
    n_step: int = 3
    use_bc: bool = True


@dataclass
class Cfg:
    name: str = "x"
    agent: Agent = field(default_factory=Agent)
    tasks: list[str] = field(default_factory=list)


def test_config_defaults_file_and_overrides(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("agent:\n  lr: 3\n  n_step: 1\ntasks: [a, b]\n")
    cfg = load_config(Cfg, f, overrides={"agent.use_bc": False})
    assert cfg.agent.lr == 3.0 and isinstance(cfg.agent.lr, float)
    assert (cfg.agent.n_step, cfg.agent.use_bc, cfg.tasks) == (1, False, ["a", "b"])
    assert load_config(Cfg).agent.lr == 1e-4


@pytest.mark.parametrize(("text", "message"), [
    ("agent:\n  lrr: 1\n", r"c.yaml: key 'agent.lrr' is unknown; known keys: lr, n_step, use_bc"),
    ("agent:\n  n_step: 2.5\n", r"c.yaml: key 'agent.n_step' must be an integer, got 2.5"),
    ("agent:\n  use_bc: 'yes'\n", r"key 'agent.use_bc' must be true/false"),
    ("agent: [1, 2]\n", r"key 'agent' must be a mapping"),
    ("agent: {lr: 1\n", r"c.yaml: malformed YAML"),
    ("- 1\n- 2\n", r"top level must be a mapping"),
    ("tasks: 3\n", r"key 'tasks' must be a list"),
])
def test_config_errors_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(Cfg, f)


def test_one_override_parser_for_every_flag_and_node_parameter():
    from polytask.learning.config import parse_overrides

    got = parse_overrides(["agent.lr=1e-3", " network.hidden = 512", "", "train.name=a=b", "x=[1, 2]"])
    assert got == {"agent.lr": 0.001, "network.hidden": 512, "train.name": "a=b", "x": [1, 2]}
    assert isinstance(got["agent.lr"], float)  # YAML 1.1 alone would leave '1e-3' as text
    with pytest.raises(ValueError, match=r"parameter 'overrides' item 'lr': expected KEY=VALUE"):
        parse_overrides(["lr"], "parameter 'overrides' item")
