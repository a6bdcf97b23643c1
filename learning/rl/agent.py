"""The expert learner: DrQ-v2 (n-step DDPG, clipped double-Q, soft target critics) with the BC regulariser of Eq. 1.

Actor objective (paper Eq. 1), minimised:
    L_actor = -(1-λ) · E_replay[min_k Q_k(s, g, a~π)]  +  α·λ · E_demo[ bc(a_e, μ(s_e, g_e)) ]
with α = 0.3, λ = 0.25. Two forms of `bc` are offered:
- "logprob" (default, what the authors' code ran and what produced the published numbers):
      bc = -log N(a_e; μ, σ=0.1) = ||a_e - μ||² / (2·0.1²) + d·log(0.1·√(2π)) = 50·||a_e - μ||² + const,
  i.e. the literal MSE scaled 50x (the constant has no gradient);
- "mse": bc = ||a_e - μ||², Eq. 1 as printed.
Critic: y = Σ_{i<n} γ^i r_{t+i} + γ^n · min_k Q̄_k(s_{t+n}, g, a'), a' ~ π(s_{t+n}) with the scheduled std, noise
clipped at 0.3; both Q heads regress y. The encoder is trained only through the critic loss (the actor and the BC
term see detached features), as in DrQ-v2 and the authors' code. Observations, next observations and goal images
are randomly shifted (pad 4) per sample.

A batch (and a demo batch) may carry per-sample goals under key `goal`: that is how the multi-task RL baselines
(learning/rl/multitask.py) reuse this agent with tasks mixed in one batch; `critic_loss`/`actor_loss` return the
losses unstepped so a variant can combine them (PCGrad) or add a term (Distral).

Random draws all come from torch's global generator (exploration noise, augmentation shifts), so the trainer
restores one RNG state for an exact resume.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from polytask.learning.data.checkpoint import load_module, load_optimizer, module_tensors, optimizer_tensors
from polytask.learning.nets.drqv2 import (
    Critic,
    ExpertNetworks,
    NetworkSpec,
    TruncatedNormal,
    goal_features,
    log_prob_fixed_std,
)
from polytask.learning.rl.expert_config import AgentConfig

_LINEAR = re.compile(r"^linear\(\s*([-+0-9.eE]+)\s*,\s*([-+0-9.eE]+)\s*,\s*([0-9.eE+]+)\s*\)$")


def parse_schedule(text: str) -> tuple[float, float, float]:
    """DrQ-v2 schedule string -> (init, final, duration). A constant c is (c, c, 1)."""
    s = str(text).strip()
    m = _LINEAR.match(s)
    if m:
        init, final, dur = float(m.group(1)), float(m.group(2)), float(m.group(3))
        if dur <= 0:
            raise ValueError(f"stddev schedule {text!r}: duration must be > 0")
        return init, final, dur
    try:
        c = float(s)
    except ValueError as err:
        raise ValueError(f"stddev schedule {text!r} not understood; expected a number or 'linear(init,final,steps)'"
                         ) from err
    return c, c, 1.0


def schedule_value(text: str, step: int) -> float:
    init, final, dur = parse_schedule(text)
    mix = float(np.clip(step / dur, 0.0, 1.0))
    return (1.0 - mix) * init + mix * final


def random_shift(x: Tensor, pad: int) -> Tensor:
    """DrQ's random shift: replicate-pad by `pad` and crop back at an integer offset drawn per sample.

    Implemented as a gather with clamped indices (clamping an index into the image IS replicate padding), so it
    works on uint8 frames and is exact, instead of DrQ-v2's bilinear grid_sample at integer offsets.
    """
    return apply_shift(x, torch.randint(0, 2 * pad + 1, (x.shape[0], 2), device=x.device), pad)


def apply_shift(x: Tensor, shift: Tensor, pad: int) -> Tensor:
    """The crop of `random_shift` at given offsets `shift` (n, 2) in [0, 2*pad]: the fast update paths draw the
    offsets into a buffer of their own (outside a CUDA graph) and crop with this."""
    _n, _c, h, w = x.shape
    rows = (shift[:, :1] - pad + torch.arange(h, device=x.device)).clamp_(0, h - 1)  # (n, h)
    cols = (shift[:, 1:] - pad + torch.arange(w, device=x.device)).clamp_(0, w - 1)  # (n, w)
    batch = torch.arange(x.shape[0], device=x.device)[:, None, None, None]
    chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return x[batch, chans, rows[:, None, :, None], cols[:, None, None, :]]


def soft_update(net: torch.nn.Module, target: torch.nn.Module, tau: float) -> None:
    with torch.no_grad():
        src = list(net.parameters())
        dst = list(target.parameters())
        torch._foreach_lerp_(dst, src, tau)


class ExpertAgent:
    """One task's expert: networks, optimisers, `act` and `update`, and its state as tensors for checkpoints."""

    def __init__(self, spec: NetworkSpec, cfg: AgentConfig, device: str | torch.device = "cpu",
                 goal: np.ndarray | None = None, fused: bool = True) -> None:
        parse_schedule(cfg.stddev_schedule)
        self.spec = spec
        self.cfg = cfg
        self.device = torch.device(device)
        self.fused = fused  # one no-grad encoder call for next obs, goals and demo obs (see update)
        self.pixels = spec.obs_modality == "pixels"
        self.nets = ExpertNetworks(spec).to(self.device)
        self.critic_target = Critic(spec).to(self.device)
        self.critic_target.load_state_dict(self.nets.critic.state_dict())
        self.critic_target.requires_grad_(False)
        self.actor_opt = torch.optim.Adam(self.nets.actor.parameters(), lr=cfg.lr)
        self.critic_opt = torch.optim.Adam([*self.nets.critic.parameters(), *self.nets.encoder.parameters()],
                                           lr=cfg.lr)
        self.goal: Tensor | None = None
        self._fast: Any = None  # the fast update path (agent.compile), built at the first update
        if cfg.compile != "none" and self._overrides_update():
            raise ValueError(f"agent.compile {cfg.compile!r} runs the single-task expert update; "
                             f"{type(self).__name__} changes that update, use agent.compile 'none'")
        self.set_goal(goal)

    def _overrides_update(self) -> bool:
        return any(getattr(type(self), m) is not getattr(ExpertAgent, m)
                   for m in ("update", "update_critic", "update_actor", "critic_loss", "actor_loss", "bc_loss"))

    # --- goal ------------------------------------------------------------------------------------------
    def set_goal(self, goal: np.ndarray | None) -> None:
        """The task's goal: (3, H, W) uint8 for image goals, (goal_dim,) for vector goals, None for `none`."""
        self._fast = None  # a captured update reads the goal tensor it was captured with
        m = self.spec.goal_modality
        if m == "none":
            self.goal = None
            return
        if goal is None:
            raise ValueError(f"goal modality {m!r} needs a goal, got None")
        t = torch.as_tensor(np.asarray(goal), device=self.device)
        if m == "image":
            want = (3, self.spec.obs_shape[1], self.spec.obs_shape[2])
            if tuple(t.shape) != want or t.dtype != torch.uint8:
                raise ValueError(f"goal image must be uint8 {want}, got {t.dtype} {tuple(t.shape)}")
        elif tuple(t.shape) != (self.spec.goal_dim,):
            raise ValueError(f"{m} goal must have shape ({self.spec.goal_dim},), got {tuple(t.shape)}")
        else:
            t = t.float()
        self.goal = t[None]

    def _goal_batch(self, batch: int) -> Tensor | None:
        return None if self.goal is None else self.goal.expand(batch, *self.goal.shape[1:])

    def batch_goal(self, batch: dict[str, np.ndarray], n: int) -> Tensor | None:
        """Per-sample goals when the batch carries them (key `goal`: a multi-task batch mixes tasks), else this
        agent's own goal repeated `n` times (the single-task expert)."""
        if "goal" not in batch:
            return self._goal_batch(n)
        goal = self._to(batch["goal"])
        return goal if goal.dtype == torch.uint8 else goal.float()

    def _aug(self, x: Tensor | None) -> Tensor | None:
        if x is None or not (self.pixels and self.cfg.augment) or x.dim() != 4:
            return x
        return random_shift(x, self.cfg.aug_pad)

    # --- acting ----------------------------------------------------------------------------------------
    def stddev(self, step: int) -> float:
        return schedule_value(self.cfg.stddev_schedule, step)

    @torch.no_grad()
    def act(self, obs: np.ndarray, step: int, eval_mode: bool) -> np.ndarray:
        o = torch.as_tensor(obs, device=self.device)[None]
        goal = self._goal_batch(1)
        if goal is not None and goal.dim() == 4:
            # obs and goal image through the encoder in one call: one conv pass over a batch of 2
            tiled = goal.repeat(1, self.spec.frame_stack, 1, 1) if goal.shape[1] == 3 else goal
            obs_f, goal_f = self.nets.encoder(torch.cat([o, tiled])).split(1)
        else:
            obs_f, goal_f = self.nets.features(o, goal)
        mu = self.nets.actor(obs_f, goal_f)
        if eval_mode:
            action = mu
        else:
            action = TruncatedNormal(mu, self.stddev(step)).sample(clip=None)
            if step < self.cfg.num_expl_steps:
                action = torch.empty_like(action).uniform_(-1.0, 1.0)
        return action[0].cpu().numpy().astype(np.float32)

    # --- learning --------------------------------------------------------------------------------------
    def _to(self, arr: np.ndarray) -> Tensor:
        return torch.as_tensor(arr, device=self.device)

    def update(self, batch: dict[str, np.ndarray], demo: dict[str, np.ndarray] | None, step: int) -> dict[str, float]:
        """One critic and one actor step (+ soft target update). `demo` feeds the BC term (None: no BC term).

        With `agent.compile` other than "none" the same update runs through learning/rl/fast_update.py,
        and the metrics come back as a mapping read from the device only when looked at."""
        if self.cfg.compile != "none":
            if self._fast is None:
                from polytask.learning.rl.fast_update import FastUpdater

                self._fast = FastUpdater(self, self.cfg.compile)
            return self._fast.update(batch, demo, step)
        obs, action = self._to(batch["obs"]), self._to(batch["action"]).float()
        reward, discount, next_obs = self._to(batch["reward"]), self._to(batch["discount"]), self._to(batch["next_obs"])
        n = obs.shape[0]
        goal = self._aug(self.batch_goal(batch, n))
        obs, next_obs = self._aug(obs), self._aug(next_obs)
        use_bc = demo is not None and self.cfg.bc_regularize and self.cfg.bc_lambda > 0
        obs_bc = goal_bc = act_bc = None
        if use_bc:
            obs_bc, act_bc = self._aug(self._to(demo["obs"])), self._to(demo["action"]).float()
            goal_bc = self._aug(self.batch_goal(demo, obs_bc.shape[0]))

        enc = self.nets.encoder
        obs_f = enc(obs)
        with torch.no_grad():
            if self.fused and self.pixels:
                parts = [next_obs]
                if goal is not None and goal.dim() == 4:
                    parts.append(goal.repeat(1, self.spec.frame_stack, 1, 1) if goal.shape[1] == 3 else goal)
                if use_bc:
                    parts.append(obs_bc)
                    if goal_bc is not None and goal_bc.dim() == 4:
                        parts.append(goal_bc.repeat(1, self.spec.frame_stack, 1, 1) if goal_bc.shape[1] == 3
                                     else goal_bc)
                feats = list(enc(torch.cat(parts)).split([p.shape[0] for p in parts]))
                next_f = feats.pop(0)
                goal_f = feats.pop(0) if goal is not None and goal.dim() == 4 else goal_features(enc, self.spec,
                                                                                                 goal, obs)
                if use_bc:
                    obs_bc_f = feats.pop(0)
                    goal_bc_f = feats.pop(0) if goal_bc is not None and goal_bc.dim() == 4 else goal_features(
                        enc, self.spec, goal_bc, obs_bc)
            else:
                next_f = enc(next_obs)
                goal_f = goal_features(enc, self.spec, goal, obs)
                if use_bc:
                    obs_bc_f = enc(obs_bc)
                    goal_bc_f = goal_features(enc, self.spec, goal_bc, obs_bc)

        metrics = self.update_critic(obs_f, goal_f, action, reward, discount, next_f, step)
        bc_args = (obs_bc_f, goal_bc_f, act_bc) if use_bc else None
        if step >= self.cfg.actor_start_step:
            metrics.update(self.update_actor(obs_f.detach(), goal_f, bc_args, step))
        else:  # the critic's warm-up: the actor's losses are reported, the actor is left as it is
            with torch.no_grad():
                metrics.update(self.actor_loss(obs_f.detach(), goal_f, bc_args, step)[1])
        soft_update(self.nets.critic, self.critic_target, self.cfg.critic_tau)
        metrics["batch_reward"] = float(reward.mean())
        return metrics

    def critic_loss(self, obs_f: Tensor, goal_f: Tensor, action: Tensor, reward: Tensor, discount: Tensor,
                    next_f: Tensor, step: int) -> tuple[Tensor, dict[str, float]]:
        """The twin-critic TD loss and its metrics, without stepping (multi-task variants combine several)."""
        with torch.no_grad():
            mu = self.nets.actor(next_f, goal_f)
            next_action = TruncatedNormal(mu, self.stddev(step)).sample(clip=self.cfg.stddev_clip)
            tq1, tq2 = self.critic_target(next_f, goal_f, next_action)
            target_q = reward + discount * torch.min(tq1, tq2)
        q1, q2 = self.nets.critic(obs_f, goal_f, action)
        loss = F.mse_loss(q1, target_q) + F.mse_loss(q2, target_q)
        return loss, {"critic_loss": float(loss.detach()), "critic_q1": float(q1.detach().mean()),
                      "critic_target_q": float(target_q.mean())}

    def update_critic(self, obs_f: Tensor, goal_f: Tensor, action: Tensor, reward: Tensor, discount: Tensor,
                      next_f: Tensor, step: int) -> dict[str, float]:
        loss, metrics = self.critic_loss(obs_f, goal_f, action, reward, discount, next_f, step)
        self.critic_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_opt.step()
        return metrics

    def bc_loss(self, mu: Tensor, expert_action: Tensor) -> Tensor:
        if self.cfg.bc_loss == "logprob":
            return -log_prob_fixed_std(mu, expert_action, self.cfg.bc_std).mean()
        return ((mu - expert_action) ** 2).sum(-1).mean()

    def actor_loss(self, obs_f: Tensor, goal_f: Tensor, bc: tuple[Tensor, Tensor, Tensor] | None,
                   step: int) -> tuple[Tensor, dict[str, float]]:
        """Eq. 1's actor loss and its metrics, without stepping (multi-task variants combine or extend it)."""
        mu = self.nets.actor(obs_f, goal_f)
        action = TruncatedNormal(mu, self.stddev(step)).sample(clip=self.cfg.stddev_clip)
        q1, q2 = self.nets.critic(obs_f, goal_f, action)
        q = torch.min(q1, q2)
        lam = self.cfg.bc_lambda if bc is not None else 0.0
        rl = -(1.0 - lam) * q.mean()
        loss = rl
        out: dict[str, float] = {}
        if bc is not None:
            obs_bc_f, goal_bc_f, act_bc = bc
            bc_term = self.bc_loss(self.nets.actor(obs_bc_f, goal_bc_f), act_bc)
            loss = loss + self.cfg.bc_alpha * lam * bc_term
            out["bc_loss"] = float(bc_term.detach())
        out.update({"actor_loss": float(loss.detach()), "rl_loss": float(rl.detach()), "stddev": self.stddev(step)})
        return loss, out

    def update_actor(self, obs_f: Tensor, goal_f: Tensor, bc: tuple[Tensor, Tensor, Tensor] | None,
                     step: int) -> dict[str, float]:
        loss, out = self.actor_loss(obs_f, goal_f, bc, step)
        self.actor_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.actor_opt.step()
        return out

    # --- state for checkpoints -------------------------------------------------------------------------
    def state_tensors(self, with_optim: bool = True) -> tuple[dict[str, Tensor], dict[str, Any]]:
        tensors = {**module_tensors("encoder", self.nets.encoder), **module_tensors("actor", self.nets.actor),
                   **module_tensors("critic", self.nets.critic),
                   **module_tensors("critic_target", self.critic_target)}
        if self.goal is not None:
            tensors["goal"] = self.goal[0]
        meta: dict[str, Any] = {}
        if with_optim:
            for name, opt in (("actor_opt", self.actor_opt), ("critic_opt", self.critic_opt)):
                t, m = optimizer_tensors(f"optim/{name}", opt)
                tensors.update(t)
                meta[name] = m
        return tensors, meta

    def load_state_tensors(self, tensors: dict[str, Tensor], meta: dict[str, Any], where: str = "checkpoint") -> None:
        load_module(self.nets.encoder, tensors, "encoder", where)
        load_module(self.nets.actor, tensors, "actor", where)
        load_module(self.nets.critic, tensors, "critic", where)
        load_module(self.critic_target, tensors, "critic_target", where)
        # Tensors may stay on the CPU: load_state_dict copies weights to the modules' device, and Adam moves its
        # moments to each parameter's device while keeping non-capturable step counters on the CPU, as it expects.
        # A checkpoint written by the CUDA-graph path records capturable Adam; this agent decides that itself.
        self._fast = None  # new optimizer state tensors: a captured update must be captured again
        for name, opt in (("actor_opt", self.actor_opt), ("critic_opt", self.critic_opt)):
            if name in meta:
                load_optimizer(opt, tensors, meta[name], f"optim/{name}", where)
                for group in opt.param_groups:
                    group["capturable"] = False
                for state in opt.state.values():
                    if isinstance(state.get("step"), Tensor):
                        state["step"] = state["step"].detach().to("cpu", torch.float32)
