"""Shared test set-up: headless rendering, offline models, ament index pointing at the venv."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("AMENT_PREFIX_PATH", str(Path(sys.prefix)))

REPO_ROOT = Path(__file__).resolve().parents[1]

import pytest  # noqa: E402  (after the environment above, which must precede any MuJoCo import)

# Two Meta-World tasks whose 5 scripted state demos the multi-task and lifelong RL tests share.
RL_PAIR = ["metaworld/button-press-topdown", "metaworld/coffee-button"]


@pytest.fixture
def one_torch_thread():
    """Tiny networks on a shared 2-core machine: a second torch thread only adds contention (measured 17x)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def listener():
    """A TCP port that accepts connections (the backend probes TCP before handing over to the SDK)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    yield srv.getsockname()[1]
    srv.close()


@pytest.fixture(scope="session")
def rl_pair_demos(tmp_path_factory) -> Path:
    """5 successful scripted demos (states only) of each task of RL_PAIR, recorded once per test session."""
    from training_inputs import scripted_demos

    return scripted_demos(tmp_path_factory.mktemp("rl_pair_demos"), RL_PAIR, 5)
