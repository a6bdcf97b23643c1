"""The one MLP builder (`networks.mlp_layers` / `networks.mlp`) keeps the parameter names and shapes that saved
checkpoints carry: experts and students (`actor.policy.0/2/4...`, `critic.q1...`) and progressive columns
(`columns.<c>.<layer>`). A rename here would make every stored checkpoint unloadable."""

from __future__ import annotations

from polytask.learning.nets.drqv2 import ExpertNetworks, NetworkSpec
from polytask.learning.nets.progressive import ProgressiveNet


def shapes(module, prefix):
    return {k: tuple(v.shape) for k, v in module.state_dict().items() if k.startswith(prefix)}


def test_actor_critic_and_progressive_keep_their_checkpoint_names():
    spec = NetworkSpec(obs_modality="state", obs_shape=(39,), action_dim=4, goal_modality="onehot", goal_dim=16,
                       hidden=32, actor_layers=2, critic_layers=1)
    net = ExpertNetworks(spec)
    assert shapes(net, "actor.") == {
        "actor.policy.0.weight": (32, 55), "actor.policy.0.bias": (32,),
        "actor.policy.2.weight": (32, 32), "actor.policy.2.bias": (32,),
        "actor.policy.4.weight": (4, 32), "actor.policy.4.bias": (4,)}
    critic_in = 16 + 39 + spec.action_tile * 4
    assert shapes(net, "critic.q1.") == {"critic.q1.0.weight": (32, critic_in), "critic.q1.0.bias": (32,),
                                         "critic.q1.2.weight": (1, 32), "critic.q1.2.bias": (1,)}
    prog = ProgressiveNet(obs_dim=39, action_dim=4, hidden=8, layers=2, columns=2)
    assert shapes(prog, "columns.1.") == {
        "columns.1.0.weight": (8, 39), "columns.1.0.bias": (8,), "columns.1.1.weight": (8, 8),
        "columns.1.1.bias": (8,), "columns.1.2.weight": (4, 8), "columns.1.2.bias": (4,)}
    assert shapes(prog, "laterals.1.") == {"laterals.1.0.weight": (8, 8), "laterals.1.1.weight": (4, 8)}
