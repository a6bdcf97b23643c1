"""Checkpoints: safetensors + JSON header, refusal of pickles and mismatched architectures, exact optimizer/RNG."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
import torch

from polytask.learning.data.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_module,
    load_optimizer,
    module_tensors,
    optimizer_tensors,
    read_header,
    restore_rng,
    rng_tensors,
    save_checkpoint,
)
from polytask.learning.nets.drqv2 import ExpertNetworks, NetworkSpec

torch.set_num_threads(1)
SPEC = NetworkSpec("state", (10,), 4, "onehot", goal_dim=8, hidden=32)


def _nets_and_opt():
    torch.manual_seed(0)
    nets = ExpertNetworks(SPEC)
    opt = torch.optim.Adam(nets.parameters(), lr=1e-3)
    return nets, opt


def _step(nets, opt, seed):
    g = torch.Generator().manual_seed(seed)
    obs, goal = torch.randn(16, 10, generator=g), torch.randn(16, 8, generator=g)
    f, gf = nets.features(obs, goal)
    loss = nets.actor(f, gf).pow(2).sum() + sum(q.pow(2).sum() for q in nets.critic(f, gf, torch.ones(16, 4)))
    opt.zero_grad()
    loss.backward()
    opt.step()


def test_roundtrip_resumes_adam_exactly(tmp_path):
    nets, opt = _nets_and_opt()
    for s in range(3):
        _step(nets, opt, s)
    t_opt, m_opt = optimizer_tensors("opt", opt)
    path = save_checkpoint(tmp_path / "a.safetensors", {**module_tensors("net", nets), **t_opt},
                           {"network": SPEC.to_dict(), "opt": m_opt, "step": 3})
    tensors, header = load_checkpoint(path, expect={"network": SPEC, "step": 3})
    nets2, opt2 = _nets_and_opt()
    load_module(nets2, tensors, "net")
    load_optimizer(opt2, tensors, header["opt"], "opt")
    _step(nets, opt, 99)
    _step(nets2, opt2, 99)
    for (k, a), b in zip(nets.state_dict().items(), nets2.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert not list(tmp_path.glob(".tmp-*")), "atomic write left a temp file"


def test_rng_states_roundtrip(tmp_path):
    rng = np.random.default_rng(5)
    torch.manual_seed(3)
    random.seed(4)
    t, m = rng_tensors(rng)
    save_checkpoint(tmp_path / "r.safetensors", t, {"rng": m})
    want = (torch.rand(3), rng.random(3), random.random())
    torch.rand(10), rng.random(10), random.random()
    tensors, header = load_checkpoint(tmp_path / "r.safetensors")
    restore_rng(tensors, header["rng"], rng)
    got = (torch.rand(3), rng.random(3), random.random())
    assert torch.equal(want[0], got[0]) and np.array_equal(want[1], got[1]) and want[2] == got[2]


def test_pickle_and_torch_save_files_are_refused(tmp_path):
    evil = tmp_path / "evil.safetensors"
    with open(evil, "wb") as fh:
        pickle.dump({"actor/w": np.zeros(3)}, fh)
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(evil)
    zipped = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(3)}, zipped)
    with pytest.raises(CheckpointError, match="zip archive"):
        load_checkpoint(zipped)
    proto0 = tmp_path / "old.ckpt"
    proto0.write_bytes(pickle.dumps({"a": 1}, protocol=0))
    with pytest.raises(CheckpointError):
        load_checkpoint(proto0)


def test_damaged_and_foreign_files_are_refused(tmp_path):
    nets, _ = _nets_and_opt()
    path = save_checkpoint(tmp_path / "ok.safetensors", module_tensors("net", nets), {"network": SPEC.to_dict()})
    data = path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.safetensors"):
        load_checkpoint(cut)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="polytask header"):
        read_header(foreign)


def test_mismatched_architecture_or_modality_is_named(tmp_path):
    nets, _ = _nets_and_opt()
    path = save_checkpoint(tmp_path / "e.safetensors", module_tensors("net", nets),
                           {"network": SPEC.to_dict(), "goal_modality": "onehot", "kind": "expert"})
    other_goal = NetworkSpec("state", (10,), 4, "sinusoid", goal_dim=8, hidden=32)
    with pytest.raises(CheckpointError, match=r"network\.goal_modality is 'onehot'.*expected 'sinusoid'"):
        load_checkpoint(path, expect={"network": other_goal})
    bigger = NetworkSpec("state", (10,), 4, "onehot", goal_dim=8, hidden=64)
    with pytest.raises(CheckpointError, match=r"network\.hidden is 32 .*expected 64"):
        load_checkpoint(path, expect={"network": bigger})
    with pytest.raises(CheckpointError, match="goal_modality mismatch: 'onehot'"):
        load_checkpoint(path, expect={"goal_modality": "image"})
    with pytest.raises(CheckpointError, match="kind mismatch"):
        load_checkpoint(path, expect={"kind": "student"})
    # loading weights into a module of another shape names the key
    tensors, _ = load_checkpoint(path)
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_module(ExpertNetworks(bigger), tensors, "net")


def test_safetensors_whose_header_length_starts_with_pickle_byte_loads(tmp_path):
    """A header length whose low byte is 0x80 (pickle's protocol marker) is still a valid safetensors file."""
    import struct

    tensors = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}
    for pad in range(0, 300):
        path = save_checkpoint(tmp_path / f"c{pad}.safetensors", tensors, {"step": 1, "pad": "x" * pad})
        if path.read_bytes()[0] == 0x80:
            break
        path.unlink()
    else:
        pytest.skip("no padding produced a 0x80 first byte")
    assert struct.unpack("<Q", path.read_bytes()[:8])[0] % 256 == 0x80
    loaded, header = load_checkpoint(path)
    assert header["step"] == 1 and torch.equal(loaded["w"], tensors["w"])
