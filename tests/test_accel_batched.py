"""K experts in one batched update (learning/rl/batched.py) against K separate single-expert updates.

Each expert k gets its own batch, demo batch, goal and random draws; the reference runs the single-expert step
(`fast_update.update_core`, itself held bit-equal to `ExpertAgent.update` by test_accel_expert.py) on expert
k's slice of the same draws. Batched convolutions and matmuls sum in another order, so equality is within float
tolerance. After `write_back`, each agent's checkpoint loads into the single-expert policy and acts as it does.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from polytask.learning.data.checkpoint import save_checkpoint
from polytask.learning.nets.drqv2 import NetworkSpec
from polytask.learning.policies.expert import KIND, load_policy
from polytask.learning.rl import fast_update as eu
from polytask.learning.rl.agent import ExpertAgent
from polytask.learning.rl.batched import BatchedExperts
from polytask.learning.rl.expert_config import AgentConfig
from polytask.learning.rl.synthetic import random_batches
from polytask.sim.task import Goal, Step

torch.set_num_threads(1)
K = 3


def _setup(pixels: bool) -> tuple[NetworkSpec, list[np.ndarray]]:
    if pixels:
        spec = NetworkSpec("pixels", (3, 20, 20), 4, "image", frame_stack=3, hidden=32, feature_dim=16, actor_layers=2)
        return spec, [np.random.default_rng(k).integers(0, 256, (3, 20, 20), dtype=np.uint8) for k in range(K)]
    spec = NetworkSpec("state", (10,), 4, "sinusoid", goal_dim=6, hidden=64, actor_layers=2)
    return spec, [np.linspace(-1, 1, 6).astype(np.float32) * (k + 1) for k in range(K)]


def _agents(spec: NetworkSpec, goals: list[np.ndarray]) -> list[ExpertAgent]:
    out = []
    for k in range(K):
        torch.manual_seed(k)  # different initial weights per expert
        out.append(ExpertAgent(spec, AgentConfig(batch_size=16, stddev_schedule="linear(1.0,0.1,10)"), goal=goals[k]))
    return out


def _max_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max(float((p - q).detach().abs().max()) for p, q in zip(a.parameters(), b.parameters(), strict=True))


@pytest.mark.parametrize("pixels", [False, True], ids=["state", "pixels"])
def test_batched_update_equals_k_separate_updates(pixels, tmp_path):
    spec, goals = _setup(pixels)
    agents = _agents(spec, goals)
    refs = [copy.deepcopy(a) for a in agents]
    batched = BatchedExperts(agents, seed=3)
    rng = np.random.default_rng(0)
    for i in range(4):
        data = [random_batches(spec, 16, rng) for _ in range(K)]
        demos = [d for _, d in data] if i != 2 else None  # one update without the BC term
        metrics = batched.update([b for b, _ in data], demos, i)
        assert batched.static is not None
        noise = {k: v for k, v in batched.static.items() if k.startswith(("shift_", "eps_"))}
        for k, ref in enumerate(refs):
            demo = demos[k] if demos is not None else None
            plan = eu.Plan.of(ref, data[k][0], demo)
            t = {key: torch.from_numpy(v) for key, v in eu.input_arrays(data[k][0], demo).items()}
            t.update({key: v[k] for key, v in noise.items()})
            t["std"] = torch.tensor(ref.stddev(i), dtype=torch.float32)
            expect = eu.update_core(ref, t, plan)
            torch.testing.assert_close(metrics[k], expect, rtol=1e-5, atol=1e-5)
    # the experts' noise differs (each its own draws), and so do their learned weights
    assert not torch.equal(noise["eps_pi"][0], noise["eps_pi"][1])
    batched.write_back()
    for k in range(K):
        assert _max_diff(agents[k].nets, refs[k].nets) < 1e-5
        assert _max_diff(agents[k].critic_target, refs[k].critic_target) < 1e-6
        st = agents[k].actor_opt.state[next(iter(agents[k].nets.actor.parameters()))]
        assert int(st["step"]) == 4 and st["step"].device.type == "cpu"
    assert _max_diff(agents[0].nets.actor, agents[1].nets.actor) > 1e-3

    # each expert's checkpoint loads into the single-expert policy and acts as its agent does
    k = 2
    tensors, _ = agents[k].state_tensors(with_optim=False)
    path = save_checkpoint(
        tmp_path / "expert.safetensors", tensors, {"kind": KIND, "network": spec.to_dict(), "task": f"synthetic/{k}"}
    )
    policy = load_policy(path)
    obs0 = random_batches(spec, 1, rng)[0]["obs"][0]
    frame = obs0[-3:].transpose(1, 2, 0) if pixels else obs0
    step = Step(
        state=np.zeros(10, np.float32) if pixels else frame,
        pixels=frame if pixels else None,
        reward=0.0,
        success=False,
        terminal=False,
        truncated=False,
        goal=Goal(task_id=k, name=f"synthetic/{k}"),
    )
    policy.reset(step)
    got = policy.act(step)
    x = torch.as_tensor(policy.stacker.current())[None]
    want = agents[k].nets.actor(agents[k].nets.encoder(x), policy._goal_f)[0].detach().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_batched_critic_warm_up_holds_every_actor_until_its_start_step():
    """With agent.actor_start_step the stacked update trains the critics only before that step (each actor keeps
    its weights, as a single expert's warm-up does), then the actors too; steps straddling it are refused."""
    spec, goals = _setup(False)
    agents = []
    for k in range(K):
        torch.manual_seed(k)
        agents.append(ExpertAgent(spec, AgentConfig(batch_size=16, actor_start_step=2), goal=goals[k]))
    batched = BatchedExperts(agents, seed=3)
    actor0 = {n: v.clone() for n, v in batched.params["actor"].items()}
    critic0 = {n: v.clone() for n, v in batched.params["critic"].items()}
    rng = np.random.default_rng(0)

    def update(steps):
        data = [random_batches(spec, 16, rng) for _ in range(K)]
        return batched.update([b for b, _ in data], [d for _, d in data], steps)

    update(0)
    update([1, 1, 1])
    assert all(torch.equal(v, actor0[n]) for n, v in batched.params["actor"].items())
    assert any(not torch.equal(v, critic0[n]) for n, v in batched.params["critic"].items())
    with pytest.raises(ValueError, match="straddle"):
        update([1, 2, 2])
    update(2)
    assert all(not torch.equal(v, actor0[n]) for n, v in batched.params["actor"].items())


def test_batched_experts_refuse_agents_they_cannot_stack():
    spec, goals = _setup(False)
    agents = _agents(spec, goals)
    other = ExpertAgent(
        NetworkSpec("state", (10,), 4, "sinusoid", goal_dim=6, hidden=32, actor_layers=2),
        AgentConfig(batch_size=16),
        goal=goals[0],
    )
    with pytest.raises(ValueError, match=r"another architecture.*hidden"):
        BatchedExperts([*agents, other])
    rng = np.random.default_rng(0)
    data = [random_batches(spec, 16, rng) for _ in range(K)]
    for a in agents:  # one update each: their Adam states are now at step 1
        a.update(*data[0], 0)
    agents[0].update(*data[1], 1)
    with pytest.raises(ValueError, match="different steps"):
        BatchedExperts(agents)
    with pytest.raises(ValueError, match="3 agents, got 2 batches"):
        BatchedExperts([*agents[1:], copy.deepcopy(agents[1])]).update([b for b, _ in data[:2]], None, 0)
