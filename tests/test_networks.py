"""Networks: paper sizes, goal conditioning, action tiling, spec serialisation, the BC log-prob equivalence."""

from __future__ import annotations

import math

import pytest
import torch

from polytask.learning.nets.drqv2 import (
    Actor,
    Encoder,
    ExpertNetworks,
    NetworkSpec,
    TruncatedNormal,
    count_parameters,
    goal_features,
    log_prob_fixed_std,
)

torch.set_num_threads(1)


def test_pixel_encoder_has_drqv2_shapes():
    spec = NetworkSpec("pixels", (3, 84, 84), 4, "image", frame_stack=3)
    enc = Encoder(spec)
    assert enc.conv_dim == 32 * 35 * 35
    convs = [m for m in enc.convnet if isinstance(m, torch.nn.Conv2d)]
    assert [c.stride[0] for c in convs] == [2, 1, 1, 1]
    assert all(c.out_channels == 32 and c.kernel_size == (3, 3) for c in convs)
    assert convs[0].in_channels == 9
    assert isinstance(enc.trunk[1], torch.nn.LayerNorm) and isinstance(enc.trunk[2], torch.nn.Tanh)
    out = enc(torch.randint(0, 256, (2, 9, 84, 84), dtype=torch.uint8))
    assert out.shape == (2, 512) and out.abs().max() <= 1.0


def test_input_scaling_is_x_over_255_minus_half():
    spec = NetworkSpec("pixels", (3, 20, 20), 2, "none", feature_dim=8, hidden=8)
    enc = Encoder(spec)
    x = torch.randint(0, 256, (1, 3, 20, 20), dtype=torch.uint8)
    want = enc.trunk(enc.convnet(x.float() / 255.0 - 0.5).flatten(1))
    assert torch.equal(enc(x), want)


def test_state_encoder_is_identity_and_actor_sees_goal():
    spec = NetworkSpec("state", (17,), 6, "sinusoid", goal_dim=16, hidden=32)
    nets = ExpertNetworks(spec)
    assert count_parameters(nets.encoder) == 0
    obs = torch.randn(5, 17)
    assert torch.equal(nets.encoder(obs), obs)
    a1 = nets.act_mean(obs, torch.zeros(5, 16))
    a2 = nets.act_mean(obs, torch.ones(5, 16))
    assert a1.shape == (5, 6) and a1.abs().max() < 1.0
    assert not torch.allclose(a1, a2), "the goal must change the action"


def test_critic_tiles_the_action_like_the_authors():
    pix = NetworkSpec("pixels", (3, 84, 84), 4, "image", frame_stack=3)
    assert pix.action_tile == 200
    st = NetworkSpec("state", (17,), 6, "sinusoid", goal_dim=16)
    assert st.action_tile == (17 + 16) // 6
    nets = ExpertNetworks(st)
    assert nets.critic.q1[0].in_features == 17 + 16 + 5 * 6


def test_image_goal_goes_through_the_same_encoder_tiled():
    spec = NetworkSpec("pixels", (3, 32, 32), 2, "image", frame_stack=3, hidden=16, feature_dim=16)
    enc = Encoder(spec)
    g = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    assert torch.equal(goal_features(enc, spec, g, g), enc(g.repeat(1, 3, 1, 1)))
    with pytest.raises(ValueError, match="goal"):
        goal_features(enc, spec, None, g)


def test_spec_json_roundtrip_and_errors_name_the_key():
    spec = NetworkSpec("pixels", (3, 84, 84), 4, "onehot", goal_dim=10, frame_stack=3)
    assert NetworkSpec.from_json(spec.to_json()) == spec
    with pytest.raises(ValueError, match="goal_modality"):
        NetworkSpec("pixels", (3, 84, 84), 4, "smell")
    with pytest.raises(ValueError, match="goal_dim"):
        NetworkSpec("state", (5,), 2, "onehot")
    with pytest.raises(ValueError, match="unknown"):
        NetworkSpec.from_dict({**spec.to_dict(), "dropout": 0.1})
    other = NetworkSpec("pixels", (3, 84, 84), 4, "image", frame_stack=3)
    assert any("goal_modality" in d for d in spec.differences(other))


def test_actor_is_usable_standalone_with_another_goal_modality():
    """A distilled student reuses Encoder + Actor with, e.g., a language goal vector."""
    spec = NetworkSpec("pixels", (3, 32, 32), 4, "language", goal_dim=384, hidden=16, feature_dim=16)
    enc, actor = Encoder(spec), Actor(spec)
    obs = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    out = actor(enc(obs), goal_features(enc, spec, torch.randn(3, 384), obs))
    assert out.shape == (3, 4)


def test_bc_logprob_is_50x_mse_plus_const():
    mu = torch.randn(64, 4, requires_grad=True)
    a = torch.rand(64, 4) * 2 - 1
    nll = -log_prob_fixed_std(mu, a, 0.1)
    mse = ((a - mu) ** 2).sum(-1)
    const = 4 * (math.log(0.1) + 0.5 * math.log(2 * math.pi))
    assert torch.allclose(nll, 50 * mse + const, atol=1e-4)
    (g1,) = torch.autograd.grad(nll.mean(), mu)
    (g2,) = torch.autograd.grad(mse.mean(), mu)
    assert torch.allclose(g1, 50 * g2, atol=1e-5)
    # and it is exactly torch's Normal log-prob
    ref = torch.distributions.Normal(mu, 0.1).log_prob(a).sum(-1)
    assert torch.allclose(-nll, ref, atol=1e-5)


def test_truncated_normal_clips_noise_and_keeps_mean_gradient():
    mu = torch.zeros(10000, 2, requires_grad=True)
    s = TruncatedNormal(mu, 1.0).sample(clip=0.3)
    assert s.abs().max() <= 0.3 + 1e-6
    s2 = TruncatedNormal(mu + 0.95, 1.0).sample(clip=0.3)
    assert s2.max() < 1.0
    (g,) = torch.autograd.grad(s2.sum(), mu)
    assert torch.all(g == 1.0)
