"""BC pretraining of encoder + actor on a task's demos (goal-conditioned MSE), before online finetuning.

The paper pretrains with plain behaviour cloning; the encoder is trained here (it is trained only through the
critic afterwards), with the same random-shift augmentation of observation and goal images as RL updates.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from polytask.learning.data.replay import ReplayBuffer
from polytask.learning.nets.drqv2 import goal_features
from polytask.learning.rl.agent import ExpertAgent


def pretrain_bc(agent: ExpertAgent, demos: ReplayBuffer, steps: int, batch_size: int, lr: float,
                log: Callable[[int, float], None] | None = None) -> list[float]:
    """`steps` Adam steps on MSE(μ(s, g), a_demo); returns the loss of every step."""
    params = [*agent.nets.encoder.parameters(), *agent.nets.actor.parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    losses: list[float] = []
    for i in range(steps):
        batch = demos.sample_bc(batch_size)
        obs = agent._aug(torch.as_tensor(batch["obs"], device=agent.device))
        target = torch.as_tensor(batch["action"], device=agent.device).float()
        goal = agent._aug(agent.batch_goal(batch, obs.shape[0]))  # per-sample goals of a multi-task batch
        obs_f = agent.nets.encoder(obs)
        goal_f = goal_features(agent.nets.encoder, agent.spec, goal, obs)
        loss = F.mse_loss(agent.nets.actor(obs_f, goal_f), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if log is not None:
            log(i, losses[-1])
    return losses
