"""The expert agent (learning/rl/agent.py) turned multi-task: PCGrad across tasks, and Distral's per-task agents.

- MTRL and MTRL-Demo need no new agent: `ExpertAgent.update` reads per-sample goals from the batch (key `goal`),
  so one goal-conditioned agent learns every task from a batch that mixes them.
- MTRL-PCGrad (`PCGradAgent`): the critic and actor losses are computed per task (rows of one task share one goal
  vector, which is how they are told apart) and their gradients are combined by PCGrad (learning/pcgrad.py, the
  same surgery as PolyTask-PCGrad) before one Adam step of each optimiser.
- Distral (`DistralAgent` + `Centroid`): one agent per task whose actor loss adds kl_coef · KL(π_i || π0) to Eq. 1;
  π0 (the "centroid", encoder + actor, goal-conditioned) is trained to match every task policy on that task's
  replay states. With Gaussian heads of one fixed std σ both KLs are ||μ_i − μ0||² / (2σ²) (`gaussian_kl`), so
  π0's objective Σ_i E_{π_i}[log π0] is exactly mean matching. π0 is the unified policy that gets evaluated.
  Differences from the paper by Teh et al.: DrQ-v2's DDPG critic instead of soft Q-learning, and no entropy bonus
  (a fixed-std Gaussian has constant entropy).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from polytask.learning.nets.drqv2 import Actor, Encoder, NetworkSpec, goal_features
from polytask.learning.pcgrad import set_pcgrad
from polytask.learning.rl.agent import ExpertAgent


def gaussian_kl(mu_p: Tensor, mu_q: Tensor, std: float) -> Tensor:
    """Per-sample KL(N(mu_p, σ²I) || N(mu_q, σ²I)) = ||mu_p − mu_q||² / (2σ²) (the log-std terms cancel)."""
    return (mu_p - mu_q).pow(2).sum(-1) / (2.0 * std * std)


def task_rows(goal: Tensor) -> list[Tensor]:
    """Row indices of each task in a mixed batch: rows with the same goal vector belong to the same task."""
    _, inverse = torch.unique(goal, dim=0, return_inverse=True)
    return [torch.nonzero(inverse == k).squeeze(1) for k in range(int(inverse.max()) + 1)]


class PCGradAgent(ExpertAgent):
    """MTRL-PCGrad: per-task losses, gradients combined by PCGrad, one optimiser step (vector goals only)."""

    def __init__(self, *args: Any, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.spec.goal_modality in ("image", "none"):
            raise ValueError(f"PCGrad tells tasks apart by their goal vectors; goal modality "
                             f"{self.spec.goal_modality!r} has none (use onehot, sinusoid or language)")
        self.rng = np.random.default_rng(seed)

    def _surgery(self, opt: torch.optim.Optimizer, losses: list[Tensor]) -> None:
        set_pcgrad(losses, [p for group in opt.param_groups for p in group["params"] if p.requires_grad], self.rng)
        opt.step()

    def update_critic(self, obs_f: Tensor, goal_f: Tensor, action: Tensor, reward: Tensor, discount: Tensor,
                      next_f: Tensor, step: int) -> dict[str, float]:
        parts = [self.critic_loss(obs_f[r], goal_f[r], action[r], reward[r], discount[r], next_f[r], step)
                 for r in task_rows(goal_f)]
        self._surgery(self.critic_opt, [loss for loss, _ in parts])
        return _mean_metrics([m for _, m in parts], tasks=len(parts))

    def update_actor(self, obs_f: Tensor, goal_f: Tensor, bc: tuple[Tensor, Tensor, Tensor] | None,
                     step: int) -> dict[str, float]:
        parts = []
        for r in task_rows(goal_f):
            bc_k = None
            if bc is not None:
                obs_bc_f, goal_bc_f, act_bc = bc
                mine = (goal_bc_f == goal_f[r[0]]).all(-1)  # this task's demo rows (same goal vector)
                if bool(mine.any()):
                    bc_k = (obs_bc_f[mine], goal_bc_f[mine], act_bc[mine])
            parts.append(self.actor_loss(obs_f[r], goal_f[r], bc_k, step))
        self._surgery(self.actor_opt, [loss for loss, _ in parts])
        return _mean_metrics([m for _, m in parts])


def _mean_metrics(parts: list[dict[str, float]], **extra: float) -> dict[str, float]:
    keys = {k for m in parts for k in m}
    return {**{k: float(np.mean([m[k] for m in parts if k in m])) for k in sorted(keys)}, **extra}


class Centroid:
    """Distral's π0: a goal-conditioned encoder + actor of the agents' architecture, trained by mean matching."""

    def __init__(self, spec: NetworkSpec, std: float, lr: float, device: str | torch.device = "cpu") -> None:
        self.spec, self.std, self.device = spec, std, torch.device(device)
        self.encoder = Encoder(spec).to(self.device)
        self.actor = Actor(spec).to(self.device)
        self.opt = torch.optim.Adam([*self.encoder.parameters(), *self.actor.parameters()], lr=lr)

    def mean(self, obs: Tensor, goal: Tensor | None) -> Tensor:
        return self.actor(self.encoder(obs), goal_features(self.encoder, self.spec, goal, obs))

    def update(self, obs: Tensor, goal: Tensor, target_mu: Tensor) -> dict[str, float]:
        """One Adam step on E[KL(π_i || π0)] over rows of every task (target_mu: each row's task policy mean)."""
        loss = gaussian_kl(target_mu.detach(), self.mean(obs, goal), self.std).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"centroid_loss": float(loss.detach())}


class DistralAgent(ExpertAgent):
    """One task's Distral policy: Eq. 1's actor loss plus kl_coef · KL(π_i || π0) on the replay batch's states."""

    def __init__(self, *args: Any, centroid: Centroid, kl_coef: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.centroid, self.kl_coef = centroid, kl_coef
        self._prior: Tensor | None = None

    def update(self, batch: dict[str, np.ndarray], demo: dict[str, np.ndarray] | None, step: int) -> dict[str, float]:
        # π0's mean on the batch's (unaugmented) states; the agent's own actor sees them after its random shift.
        with torch.no_grad():
            obs = self._to(batch["obs"])
            self._prior = self.centroid.mean(obs, self.batch_goal(batch, obs.shape[0]))
        try:
            return super().update(batch, demo, step)
        finally:
            self._prior = None

    def actor_loss(self, obs_f: Tensor, goal_f: Tensor, bc: tuple[Tensor, Tensor, Tensor] | None,
                   step: int) -> tuple[Tensor, dict[str, float]]:
        loss, out = super().actor_loss(obs_f, goal_f, bc, step)
        if self._prior is not None and self.kl_coef > 0:
            kl = gaussian_kl(self.nets.actor(obs_f, goal_f), self._prior, self.centroid.std).mean()
            loss = loss + self.kl_coef * kl
            out["distral_kl"] = float(kl.detach())
            out["actor_loss"] = float(loss.detach())
        return loss, out
