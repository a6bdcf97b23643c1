"""The expert agent on real recorded demos: BC pretraining, DrQ-v2 updates, augmentation, Eq. 1's BC term."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from polytask.learning.data.episodes import EpisodeStore
from polytask.learning.data.frames import goal_image_chw
from polytask.learning.data.replay import ReplayBuffer
from polytask.learning.nets.drqv2 import NetworkSpec
from polytask.learning.policies.demos import record_demos
from polytask.learning.rl.agent import ExpertAgent, parse_schedule, random_shift, schedule_value
from polytask.learning.rl.bc import pretrain_bc
from polytask.learning.rl.expert_config import AgentConfig

torch.set_num_threads(1)
TASK = "xarm/reach"


@pytest.fixture(scope="module")
def state_demos(tmp_path_factory):
    out = tmp_path_factory.mktemp("demos_state")
    report = record_demos(TASK, 4, out, render=False, progress=False)
    assert report.kept == 4
    return EpisodeStore(out).episodes(TASK)


@pytest.fixture(scope="module")
def pixel_demos(tmp_path_factory):
    out = tmp_path_factory.mktemp("demos_pixels")
    record_demos(TASK, 2, out, render=True, progress=False)
    return EpisodeStore(out).episodes(TASK)


def _state_agent(cfg: AgentConfig | None = None, seed: int = 0) -> ExpertAgent:
    torch.manual_seed(seed)
    spec = NetworkSpec("state", (10,), 4, "none", hidden=64, actor_layers=2)
    return ExpertAgent(spec, cfg or AgentConfig(batch_size=32))


def test_bc_pretraining_loss_falls_on_recorded_state_demos(state_demos):
    agent = _state_agent()
    demos = ReplayBuffer(10**6, pixels=False, seed=0)
    for ep in state_demos:
        demos.add(ep, persist=False)
    losses = pretrain_bc(agent, demos, steps=300, batch_size=64, lr=1e-3)
    assert np.mean(losses[-20:]) < 0.2 * np.mean(losses[:20]), (losses[:3], losses[-3:])


def test_bc_pretraining_with_pixels_and_image_goal(pixel_demos):
    ep = pixel_demos[0]
    assert ep.goal_pixels is not None, "recorded demos carry the goal image"
    spec = NetworkSpec("pixels", (3, 84, 84), 4, "image", frame_stack=3, hidden=32, feature_dim=32, actor_layers=2)
    torch.manual_seed(0)
    agent = ExpertAgent(spec, AgentConfig(), goal=goal_image_chw(ep.goal_pixels))
    demos = ReplayBuffer(10**6, pixels=True, frame_stack=3, seed=0)
    for e in pixel_demos:
        demos.add(e, persist=False)
    losses = pretrain_bc(agent, demos, steps=25, batch_size=12, lr=1e-3)
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5]), (losses[:3], losses[-3:])


def test_random_shift_is_replicate_pad_then_crop():
    torch.manual_seed(0)
    x = torch.randint(0, 256, (6, 9, 20, 20), dtype=torch.uint8)
    state = torch.get_rng_state()
    out = random_shift(x, 4)
    torch.set_rng_state(state)
    shift = torch.randint(0, 9, (6, 2))
    padded = F.pad(x.float(), (4, 4, 4, 4), mode="replicate")
    for i in range(6):
        dy, dx = shift[i].tolist()
        assert torch.equal(out[i].float(), padded[i, :, dy:dy + 20, dx:dx + 20])
    assert out.dtype == torch.uint8


def test_stddev_schedule_and_uniform_exploration():
    assert schedule_value("linear(1.0,0.1,500000)", 0) == 1.0
    assert schedule_value("linear(1.0,0.1,500000)", 250000) == pytest.approx(0.55)
    assert schedule_value("linear(1.0,0.1,500000)", 10**7) == pytest.approx(0.1)
    assert parse_schedule(0.1) == (0.1, 0.1, 1.0)
    with pytest.raises(ValueError, match="schedule"):
        parse_schedule("cosine(1,2)")
    agent = _state_agent(AgentConfig(num_expl_steps=100))
    obs = np.zeros(10, np.float32)
    early = np.stack([agent.act(obs, 5, eval_mode=False) for _ in range(200)])
    assert early.std(0).min() > 0.45, "uniform on [-1, 1] has std 0.58"
    mean = agent.act(obs, 5, eval_mode=True)
    assert np.array_equal(mean, agent.act(obs, 10**6, eval_mode=True))


def _batch(rng, n=32):
    return {"obs": rng.normal(size=(n, 10)).astype(np.float32), "action": rng.uniform(-1, 1, (n, 4)).astype(np.float32),
            "reward": rng.normal(size=(n, 1)).astype(np.float32), "discount": np.full((n, 1), 0.97, np.float32),
            "next_obs": rng.normal(size=(n, 10)).astype(np.float32)}


def test_update_moves_actor_critic_and_soft_targets_by_tau():
    agent = _state_agent()
    rng = np.random.default_rng(0)
    before_target = [p.clone() for p in agent.critic_target.parameters()]
    before_critic = [p.clone() for p in agent.nets.critic.parameters()]
    before_actor = [p.clone() for p in agent.nets.actor.parameters()]
    demo = {"obs": rng.normal(size=(32, 10)).astype(np.float32),
            "action": rng.uniform(-1, 1, (32, 4)).astype(np.float32)}
    m = agent.update(_batch(rng), demo, step=10)
    assert {"critic_loss", "actor_loss", "bc_loss", "rl_loss"} <= set(m) and np.isfinite(m["critic_loss"])
    # one Adam step moves every weight matrix of actor and critic (Adam's first step is lr-sized wherever the
    # gradient is not zero)
    for name, before, after in (("actor", before_actor, agent.nets.actor.parameters()),
                                ("critic", before_critic, agent.nets.critic.parameters())):
        moved = [not torch.equal(a, b) for a, b in zip(before, after, strict=True)]
        assert all(moved), f"{name}: {moved.count(False)} of {len(moved)} parameter tensors did not move"
    for p0, c0, p1, c1 in zip(before_target, before_critic, agent.critic_target.parameters(),
                              agent.nets.critic.parameters(), strict=True):
        assert not torch.equal(c1, c0)
        assert torch.allclose(p1, 0.99 * p0 + 0.01 * c1, atol=1e-6)  # the target trails the critic by tau
        assert not torch.allclose(p1, p0)


def test_encoder_is_trained_through_the_critic_only():
    spec = NetworkSpec("state", (10,), 4, "none", hidden=32, state_encoder="mlp", feature_dim=16)
    torch.manual_seed(0)
    agent = ExpertAgent(spec, AgentConfig())
    rng = np.random.default_rng(1)
    obs = torch.as_tensor(_batch(rng)["obs"])
    f = agent.nets.encoder(obs)
    g = torch.zeros(32, 0)
    agent.update_actor(f.detach(), g, None, step=0)
    assert all(p.grad is None for p in agent.nets.encoder.parameters())
    enc_before = [p.clone() for p in agent.nets.encoder.parameters()]
    agent.update(_batch(rng), None, step=0)
    assert any(not torch.equal(a, b) for a, b in zip(enc_before, agent.nets.encoder.parameters(), strict=True))


def test_bc_term_weights_follow_eq1():
    """With Q ignored, the actor gradient is α·λ·∇bc: log-prob form 50x the MSE form."""
    grads = {}
    for form in ("logprob", "mse"):
        agent = _state_agent(AgentConfig(bc_loss=form), seed=3)
        rng = np.random.default_rng(2)
        obs = torch.as_tensor(rng.normal(size=(16, 10)).astype(np.float32))
        act = torch.as_tensor(rng.uniform(-1, 1, (16, 4)).astype(np.float32))
        mu = agent.nets.actor(obs, torch.zeros(16, 0))
        loss = agent.cfg.bc_alpha * agent.cfg.bc_lambda * agent.bc_loss(mu, act)
        grads[form] = torch.autograd.grad(loss, agent.nets.actor.policy[-1].bias)[0]
    assert torch.allclose(grads["logprob"], 50 * grads["mse"], rtol=1e-4, atol=1e-6)


def test_pixel_update_with_augmented_goal(pixel_demos):
    spec = NetworkSpec("pixels", (3, 84, 84), 4, "image", frame_stack=3, hidden=32, feature_dim=32, actor_layers=2)
    torch.manual_seed(0)
    ep = pixel_demos[0]
    agent = ExpertAgent(spec, AgentConfig(batch_size=8), goal=goal_image_chw(ep.goal_pixels))
    buf = ReplayBuffer(1000, pixels=True, frame_stack=3, n_step=3, seed=0)
    buf.add(ep, persist=False)
    demo = buf.sample_bc(8)
    torch.manual_seed(5)
    m_fused = agent.update(buf.sample(8), demo, step=0)
    # the un-fused (separate encoder calls) path computes the same losses from the same random draws
    torch.manual_seed(0)
    ref = ExpertAgent(spec, AgentConfig(batch_size=8), goal=goal_image_chw(ep.goal_pixels), fused=False)
    buf.rng = np.random.default_rng(0)
    buf2 = ReplayBuffer(1000, pixels=True, frame_stack=3, n_step=3, seed=0)
    buf2.add(ep, persist=False)
    demo2 = buf2.sample_bc(8)
    torch.manual_seed(5)
    m_ref = ref.update(buf2.sample(8), demo2, step=0)
    for k in ("critic_loss", "actor_loss", "bc_loss"):
        assert m_fused[k] == pytest.approx(m_ref[k], rel=1e-4, abs=1e-5), k


def test_expert_policy_acts_like_the_agent_on_replayed_frames(pixel_demos):
    """Online stacking (ExpertPolicy) and replay stacking feed the actor the same input: same actions."""
    from polytask.learning.data.frames import frames_chw, stack_window
    from polytask.learning.policies.expert import ExpertPolicy
    from polytask.sim.task import Goal, Step

    ep = pixel_demos[0]
    spec = NetworkSpec("pixels", (3, 84, 84), 4, "image", frame_stack=3, hidden=32, feature_dim=32, actor_layers=2)
    torch.manual_seed(0)
    agent = ExpertAgent(spec, AgentConfig(), goal=goal_image_chw(ep.goal_pixels))
    policy = ExpertPolicy(agent.nets.encoder, agent.nets.actor, spec, agent.goal[0])
    frames = frames_chw(ep.pixels)
    goal = Goal(task_id=0, name=TASK)
    for t in range(6):
        step = Step(state=ep.state[t], pixels=ep.pixels[t], reward=0.0, success=False, terminal=False,
                    truncated=False, goal=goal)
        if t == 0:
            policy.reset(step)
        online = policy.act(step)
        replayed = agent.act(stack_window(frames, t, 3, pixels=True), step=10**6, eval_mode=True)
        assert np.allclose(online, replayed, atol=1e-5), t
