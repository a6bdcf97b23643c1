"""The expert's fast update paths (learning/rl/fast_update.py) against the eager `ExpertAgent.update`.

On this CPU the CUDA-graph path runs its static-buffer step uncaptured: everything but `torch.cuda.graph` itself
(which bench/gpu_suite.sh checks on the card). torch.compile runs for real (inductor, C++), so those tests take a
minute or two of compilation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from training_inputs import scripted_demos, tiny_expert_overrides

from polytask.learning.config import load_config
from polytask.learning.nets.drqv2 import NetworkSpec
from polytask.learning.rl.agent import ExpertAgent
from polytask.learning.rl.expert import ExpertTrainer
from polytask.learning.rl.expert_config import AgentConfig, ExpertConfig
from polytask.learning.rl.fast_update import METRICS, LazyMetrics
from polytask.learning.rl.multitask_agents import PCGradAgent
from polytask.learning.rl.synthetic import random_batches

torch.set_num_threads(1)
TASK = "xarm/reach"


def _spec_goal(pixels: bool) -> tuple[NetworkSpec, np.ndarray]:
    if pixels:
        spec = NetworkSpec("pixels", (3, 20, 20), 4, "image", frame_stack=3, hidden=32, feature_dim=16, actor_layers=2)
        return spec, np.random.default_rng(1).integers(0, 256, (3, 20, 20), dtype=np.uint8)
    return NetworkSpec("state", (10,), 4, "sinusoid", goal_dim=6, hidden=64, actor_layers=2), np.linspace(
        -1, 1, 6
    ).astype(np.float32)


def _pair(pixels: bool, mode: str, **extra) -> tuple[ExpertAgent, ExpertAgent, NetworkSpec]:
    spec, goal = _spec_goal(pixels)
    cfg = dict(batch_size=16, num_expl_steps=0, stddev_schedule="linear(1.0,0.1,100)", **extra)
    torch.manual_seed(0)
    eager = ExpertAgent(spec, AgentConfig(**cfg), goal=goal)
    torch.manual_seed(0)
    fast = ExpertAgent(spec, AgentConfig(**cfg, compile=mode), goal=goal)
    return eager, fast, spec


def _run(pixels: bool, mode: str, updates: int, bc_every: int) -> tuple[float, float, list[tuple[dict, dict]]]:
    """Same batches, same RNG state before each update; returns (max param diff, max target diff, metrics)."""
    eager, fast, spec = _pair(pixels, mode)
    rng = np.random.default_rng(0)
    torch.manual_seed(5)
    metrics = []
    for i in range(updates):
        batch, demo = random_batches(spec, 16, rng)
        demo = demo if i % bc_every == 0 else None
        state = torch.get_rng_state()
        m_eager = eager.update(batch, demo, i)
        after_eager = torch.get_rng_state()
        torch.set_rng_state(state)
        m_fast = fast.update(batch, demo, i)
        assert torch.equal(torch.get_rng_state(), after_eager), "the fast path drew other random numbers"
        metrics.append((m_eager, dict(m_fast)))
    diff = max(
        float((p - q).detach().abs().max())
        for p, q in zip(eager.nets.parameters(), fast.nets.parameters(), strict=True)
    )
    tdiff = max(
        float((p - q).abs().max())
        for p, q in zip(eager.critic_target.parameters(), fast.critic_target.parameters(), strict=True)
    )
    return diff, tdiff, metrics


@pytest.mark.parametrize("pixels", [False, True], ids=["state", "pixels"])
def test_graph_path_step_equals_the_eager_update_bit_for_bit(pixels):
    """50 updates, BC on two of three: same parameters, targets, metrics and random draws as eager code."""
    diff, tdiff, metrics = _run(pixels, "graph", 50, bc_every=3)
    assert diff == 0.0 and tdiff == 0.0
    for m_eager, m_fast in metrics:
        assert set(m_eager) == set(m_fast)
        for k in m_eager:
            assert m_fast[k] == pytest.approx(m_eager[k], rel=1e-6, abs=1e-7), k
    assert any("bc_loss" not in m for m, _ in metrics) and any("bc_loss" in m for m, _ in metrics)


def _weights(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_critic_warm_up_holds_the_actor_until_its_start_step_on_both_paths():
    """agent.actor_start_step = 6: updates at steps 0-5 train the critic only (the actor keeps its BC weights, its
    losses are still reported), from step 6 the actor learns too; the graph path does the same bit for bit."""
    eager, fast, spec = _pair(False, "graph", actor_start_step=6)
    rng = np.random.default_rng(0)
    actor0, critic0 = _weights(eager.nets.actor), _weights(eager.nets.critic)
    for i in range(10):
        batch, demo = random_batches(spec, 16, rng)
        state = torch.get_rng_state()
        m_eager = eager.update(batch, demo, i)
        torch.set_rng_state(state)
        m_fast = dict(fast.update(batch, demo, i))
        assert set(m_fast) == set(m_eager) and {"actor_loss", "bc_loss"} <= set(m_eager)
        assert m_fast["actor_loss"] == pytest.approx(m_eager["actor_loss"], rel=1e-6, abs=1e-7)
        if i == 5:  # the last warm-up update
            assert _same(_weights(eager.nets.actor), actor0) and _same(_weights(fast.nets.actor), actor0)
            assert not _same(_weights(eager.nets.critic), critic0)
    assert not _same(_weights(eager.nets.actor), actor0)
    assert _same(_weights(eager.nets.actor), _weights(fast.nets.actor))
    assert _same(_weights(eager.nets.critic), _weights(fast.nets.critic))
    with pytest.raises(ValueError, match="actor_start_step"):
        AgentConfig(actor_start_step=-1)


@pytest.mark.parametrize(
    "pixels", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["state", "pixels"]
)  # cold inductor compiles: ~1 min for the state nets, ~1.5 min more for the pixel nets on 2 cores
def test_compile_path_equals_the_eager_update_within_tolerance(pixels):
    """torch.compile (inductor) reorders float arithmetic, so equality is within tolerance, over 50 updates."""
    diff, tdiff, metrics = _run(pixels, "compile", 50, bc_every=1)
    assert diff < 1e-4 and tdiff < 1e-5, (diff, tdiff)
    last_eager, last_fast = metrics[-1]
    for k in last_eager:
        assert last_fast[k] == pytest.approx(last_eager[k], rel=1e-3, abs=1e-5), k
    assert last_eager["critic_loss"] != metrics[0][0]["critic_loss"]  # the networks did change


def test_lazy_metrics_read_once_and_drop_missing_terms():
    values = torch.arange(len(METRICS), dtype=torch.float32)
    m = LazyMetrics(values, drop=("bc_loss",))
    assert "bc_loss" not in m and len(m) == len(METRICS) - 1
    assert m["stddev"] == float(METRICS.index("stddev"))
    values.zero_()  # already read: the mapping keeps what it read
    assert dict(m)["batch_reward"] == float(METRICS.index("batch_reward"))


def test_agents_that_change_the_update_refuse_the_fast_paths():
    spec = NetworkSpec("state", (10,), 4, "onehot", goal_dim=3, hidden=16, actor_layers=1)
    with pytest.raises(ValueError, match="PCGradAgent changes that update"):
        PCGradAgent(spec, AgentConfig(compile="graph"), goal=np.eye(3, dtype=np.float32)[0])
    with pytest.raises(ValueError, match=r"agent\.compile"):
        AgentConfig(compile="jit")


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> Path:
    return scripted_demos(tmp_path_factory.mktemp("reach_demos_fast"), [TASK], 2)


def test_trainer_with_the_graph_path_trains_resumes_and_matches_eager(demos, tmp_path):
    """The whole trainer (replay sampling, logging of lazy metrics, checkpoints) on agent.compile=graph gives the
    eager run's weights exactly, and its checkpoint resumes under either setting."""
    ov = tiny_expert_overrides(
        TASK, demos, tmp_path, **{"bc.pretrain_steps": 10, "train.steps": 150, "train.save_every": 10**6}
    )
    runs = {}
    for mode in ("none", "graph"):
        trainer = ExpertTrainer(load_config(ExpertConfig, None, {**ov, "agent.compile": mode, "train.name": mode}))
        trainer.run()
        trainer.close()
        runs[mode] = trainer
        assert "critic_loss" in trainer.logger.read("train")[-1]
    a, b = (r.agent.state_tensors(with_optim=True)[0] for r in (runs["none"], runs["graph"]))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    resumed = ExpertTrainer.resume(runs["graph"].run_dir, {"train.steps": 170, "agent.compile": "none"})
    resumed.run()
    resumed.close()
    assert resumed.state.step == 170 and resumed.state.updates > runs["graph"].state.updates


def test_warm_up_then_restore_leaves_the_first_update_as_eager():
    """What a capture does around `torch.cuda.graph`: warm-up updates on the static buffers, then `StateSnapshot`
    writes parameters, targets and Adam states back in place (fresh Adam state: zeroed). The update after that
    must be the eager first update, bit for bit (only the capture call itself needs the GPU)."""
    from polytask.learning.accel.cuda_graph import StateSnapshot

    eager, fast, spec = _pair(True, "graph")
    batch, demo = random_batches(spec, 16, np.random.default_rng(0))
    snap = StateSnapshot([fast.nets, fast.critic_target], [fast.critic_opt, fast.actor_opt])
    torch.manual_seed(9)
    for i in range(3):  # the warm-up: real updates, creating Adam's state lazily
        fast.update(batch, demo, i)
    assert fast.actor_opt.state and fast.critic_opt.state
    snap.restore()
    for opt in (fast.critic_opt, fast.actor_opt):
        for st in opt.state.values():
            assert float(st["step"]) == 0.0 and not st["exp_avg"].any() and not st["exp_avg_sq"].any()
    torch.manual_seed(3)
    got = dict(fast.update(batch, demo, 0))
    torch.manual_seed(3)
    want = eager.update(batch, demo, 0)
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=1e-6, abs=1e-7), k
    for p, q in zip(eager.nets.parameters(), fast.nets.parameters(), strict=True):
        assert torch.equal(p, q)
    for p, q in zip(eager.critic_target.parameters(), fast.critic_target.parameters(), strict=True):
        assert torch.equal(p, q)
