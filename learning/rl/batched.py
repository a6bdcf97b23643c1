"""K experts of one architecture, each with its own batch, goal and noise, stepped by ONE batched update.

Why: at the paper's sizes one expert's update is launch-bound on a GPU; K experts stacked along a leading axis
cost about the launches of one. The parameters of the K agents' modules are stacked (`torch.func.
stack_module_state`), each network runs per expert under `torch.func.vmap` + `functional_call`, and two Adams over
the stacked tensors step them all (Adam is elementwise: one Adam over a (K, ...) tensor is K Adams). The update is
`learning/rl/fast_update.py`'s, expert by expert: same augmentation, critic, actor, BC term and target update.

Each expert keeps its own task: `update` takes K batches and K demo batches; goals are the agents' own; the
random draws (shifts, action noise) are drawn for all K at once from one generator, so each expert gets its own
numbers. `write_back()` copies the stacked parameters and Adam states into the K `ExpertAgent`s, whose checkpoints
then load into the single-expert policy as today. Not covered: per-sample goals (multi-task batches), agents whose
update is overridden (PCGrad, Distral), torch.compile.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call, stack_module_state, vmap

from polytask.learning.accel.cuda_graph import CapturedStep, make_capturable
from polytask.learning.rl.agent import ExpertAgent, apply_shift
from polytask.learning.rl.fast_update import (
    METRICS,
    draw_noise,
    input_arrays,
    metric_tensor,
    noisy_action,
    target_features,
)

GROUPS = ("encoder", "actor", "critic", "critic_target")


def _module(agent: ExpertAgent, group: str) -> torch.nn.Module:
    return agent.critic_target if group == "critic_target" else getattr(agent.nets, group)


def _check(agents: Sequence[ExpertAgent]) -> None:
    if len(agents) < 1:
        raise ValueError("BatchedExperts needs at least one agent")
    first = agents[0]
    for i, a in enumerate(agents):
        if type(a) is not ExpertAgent:
            raise ValueError(f"agent {i} is a {type(a).__name__}; only the plain ExpertAgent update is batched")
        if a.spec != first.spec:
            raise ValueError(f"agent {i} has another architecture: {'; '.join(a.spec.differences(first.spec))}")
        if (a.cfg, a.device, a.fused) != (first.cfg, first.device, first.fused):
            raise ValueError(f"agent {i} differs from agent 0 in its agent config, device or fused setting")


class BatchedExperts:
    """The stacked state of K agents and their batched update (mode "none": eager; "graph": one CUDA graph)."""

    def __init__(
        self, agents: Sequence[ExpertAgent], mode: str = "none", seed: int = 0, share_weights: bool = False
    ) -> None:
        _check(agents)
        if mode not in ("none", "graph"):
            raise ValueError(f"batched experts: mode is {mode!r}, expected 'none' or 'graph'")
        self.agents, self.mode = list(agents), mode
        a0 = self.agents[0]
        self.k, self.spec, self.cfg, self.device = len(agents), a0.spec, a0.cfg, a0.device
        self.pixels, self.fused = a0.pixels, a0.fused
        self.params: dict[str, dict[str, Tensor]] = {}
        self.buffers: dict[str, dict[str, Tensor]] = {}
        self.base: dict[str, torch.nn.Module] = {}
        for g in GROUPS:
            mods = [_module(a, g) for a in self.agents]
            self.params[g], self.buffers[g] = stack_module_state(mods)
            self.base[g] = copy.deepcopy(mods[0]).to("meta")
        for p in self.params["critic_target"].values():
            p.requires_grad_(False)
        if share_weights:
            self._share()
        self.goal = None if a0.goal is None else torch.stack([a.goal for a in self.agents])  # (K, 1, ...)
        self.critic_opt = torch.optim.Adam(
            [*self.params["critic"].values(), *self.params["encoder"].values()], lr=self.cfg.lr
        )
        self.actor_opt = torch.optim.Adam(list(self.params["actor"].values()), lr=self.cfg.lr)
        self._stack_optimizer_state()
        self.generator = torch.Generator(self.device).manual_seed(seed)
        self.static: dict[str, Tensor] | None = None
        self.step_fn: dict[bool, Callable[[], Tensor]] = {}
        self.use_bc: bool | None = None
        if mode == "graph" and self.device.type == "cuda":
            make_capturable([self.critic_opt, self.actor_opt])

    # --- stacking and unstacking ---------------------------------------------------------------------------
    def _pairs(self) -> list[tuple[torch.optim.Optimizer, list[torch.optim.Optimizer]]]:
        return [
            (self.critic_opt, [a.critic_opt for a in self.agents]),
            (self.actor_opt, [a.actor_opt for a in self.agents]),
        ]

    def _stack_optimizer_state(self) -> None:
        """Carry the agents' Adam moments over (all fresh, or all at the same step count)."""
        for stacked, singles in self._pairs():
            mine = stacked.param_groups[0]["params"]
            theirs = [o.param_groups[0]["params"] for o in singles]
            states = [[o.state.get(p) for p in ps] for o, ps in zip(singles, theirs, strict=True)]
            if all(not s for per in states for s in per):
                continue
            for j, sp in enumerate(mine):
                per = [states[k][j] for k in range(self.k)]
                if any(not s for s in per) or len({float(s["step"]) for s in per}) != 1:
                    raise ValueError(
                        "batched experts: the agents' optimizers are at different steps; batch agents "
                        "that were trained in lockstep (or not at all)"
                    )
                stacked.state[sp] = {
                    "step": per[0]["step"].detach().clone().float(),
                    "exp_avg": torch.stack([s["exp_avg"] for s in per]).contiguous(),
                    "exp_avg_sq": torch.stack([s["exp_avg_sq"] for s in per]).contiguous(),
                }

    @torch.no_grad()
    def _share(self) -> None:
        """Point every agent's parameters and buffers at its slice of the stacked tensors: the agents then act,
        evaluate and save with the weights the batched update keeps changing in place, and nothing is copied."""
        for k, agent in enumerate(self.agents):
            for g in GROUPS:
                mod = _module(agent, g)
                for name, p in mod.named_parameters():
                    p.data = self.params[g][name][k].detach()
                for name, b in mod.named_buffers():
                    b.data = self.buffers[g][name][k].detach()

    @torch.no_grad()
    def write_back(self) -> None:
        """Copy the stacked parameters, buffers and Adam states into the K agents (their checkpoints follow)."""
        for k, agent in enumerate(self.agents):
            for g in GROUPS:
                mod = _module(agent, g)
                for name, p in mod.named_parameters():
                    p.copy_(self.params[g][name][k])
                for name, b in mod.named_buffers():
                    b.copy_(self.buffers[g][name][k])
        for stacked, singles in self._pairs():
            mine = stacked.param_groups[0]["params"]
            for k, opt in enumerate(singles):
                for sp, p in zip(mine, opt.param_groups[0]["params"], strict=True):
                    st = stacked.state.get(sp)
                    if not st:
                        continue
                    opt.state[p] = {
                        "step": st["step"].detach().to("cpu", torch.float32).clone(),
                        "exp_avg": st["exp_avg"][k].clone(),
                        "exp_avg_sq": st["exp_avg_sq"][k].clone(),
                    }
            for a in self.agents:
                a._fast = None

    # --- the update ---------------------------------------------------------------------------------------
    def _call(self, p: Mapping[str, Any], group: str, *args: Tensor) -> Any:
        return functional_call(self.base[group], (p[group][0], p[group][1]), args)

    def _params(self) -> dict[str, tuple[dict[str, Tensor], dict[str, Tensor]]]:
        return {g: (self.params[g], self.buffers[g]) for g in GROUPS}

    def _critic_one(self, p: Mapping[str, Any], x: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        spec = self.spec

        def enc(v: Tensor) -> Tensor:
            return self._call(p, "encoder", v)

        obs, goal, obs_bc, goal_bc = x["obs"], x.get("goal"), x.get("demo_obs"), x.get("demo_goal")
        out: dict[str, Tensor] = {}
        obs_f = enc(obs)
        with torch.no_grad():
            next_f, goal_f = target_features(
                enc, spec, self.fused and self.pixels, obs, x["next_obs"], goal, obs_bc, goal_bc, out
            )
            mu = self._call(p, "actor", next_f, goal_f)
            next_action = noisy_action(mu, x["eps_next"], x["std"], self.cfg.stddev_clip)
            tq1, tq2 = self._call(p, "critic_target", next_f, goal_f, next_action)
            target_q = x["reward"] + x["discount"] * torch.min(tq1, tq2)
        q1, q2 = self._call(p, "critic", obs_f, goal_f, x["action"].float())
        loss = F.mse_loss(q1, target_q) + F.mse_loss(q2, target_q)
        out.update(obs_f=obs_f.detach(), goal_f=goal_f, critic_q1=q1.detach().mean(), critic_target_q=target_q.mean())
        return loss, out

    def _actor_one(
        self, p: Mapping[str, Any], x: Mapping[str, Tensor], f: Mapping[str, Tensor]
    ) -> tuple[Tensor, Tensor, Tensor]:
        cfg = self.cfg
        mu = self._call(p, "actor", f["obs_f"], f["goal_f"])
        action = noisy_action(mu, x["eps_pi"], x["std"], cfg.stddev_clip)
        q1, q2 = self._call(p, "critic", f["obs_f"], f["goal_f"], action)
        lam = cfg.bc_lambda if self.use_bc else 0.0
        rl = -(1.0 - lam) * torch.min(q1, q2).mean()
        if not self.use_bc:
            return rl, rl, torch.zeros_like(rl)
        mu_bc = self._call(p, "actor", f["obs_bc_f"], f["goal_bc_f"])
        bc = self.agents[0].bc_loss(mu_bc, x["demo_action"].float())
        return rl + cfg.bc_alpha * lam * bc, rl, bc

    def _augmented(self, t: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The per-expert inputs (K, n, ...) after the random shifts (done on the flattened K*n batch)."""
        pad, aug = self.cfg.aug_pad, self.pixels and self.cfg.augment

        def shift(v: Tensor, key: str) -> Tensor:
            if not aug or v.dim() != 5:
                return v
            k, n = v.shape[:2]
            return apply_shift(v.reshape(k * n, *v.shape[2:]), t[key].reshape(k * n, 2), pad).reshape(v.shape)

        x = {key: t[key] for key in ("action", "reward", "discount", "eps_next", "eps_pi", "std")}
        n = t["obs"].shape[1]
        if self.goal is not None:
            x["goal"] = shift(self.goal.expand(self.k, n, *self.goal.shape[2:]), "shift_goal")
        x["obs"], x["next_obs"] = shift(t["obs"], "shift_obs"), shift(t["next_obs"], "shift_next")
        if self.use_bc:
            nb = t["demo_obs"].shape[1]
            x["demo_obs"], x["demo_action"] = shift(t["demo_obs"], "shift_demo_obs"), t["demo_action"]
            if self.goal is not None:
                x["demo_goal"] = shift(self.goal.expand(self.k, nb, *self.goal.shape[2:]), "shift_demo_goal")
        return x

    def _core(self, t: Mapping[str, Tensor], train_actor: bool = True) -> Tensor:
        p = self._params()
        x = self._augmented(t)
        closs, feats = vmap(self._critic_one, in_dims=(0, 0))(p, x)
        self.critic_opt.zero_grad(set_to_none=True)
        closs.sum().backward()  # experts share nothing: the gradient of the sum is each expert's own
        self.critic_opt.step()
        with torch.set_grad_enabled(train_actor):  # off: the critic's warm-up (agent.actor_start_step)
            aloss, rl, bc = vmap(self._actor_one, in_dims=(0, 0, 0))(p, x, feats)
        if train_actor:
            self.actor_opt.zero_grad(set_to_none=True)
            aloss.sum().backward(inputs=list(self.params["actor"].values()))
            self.actor_opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(
                list(self.params["critic_target"].values()), list(self.params["critic"].values()), self.cfg.critic_tau
            )
        return metric_tensor(closs, feats, bc, aloss, rl, t["std"], t["reward"].mean((1, 2)), dim=1)

    def noise_shapes(self, n: int, nb: int) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        """Per expert, `fast_update.noise_shapes`'s draws, with a leading K axis."""
        k, a = self.k, self.spec.action_dim
        aug, img = self.pixels and self.cfg.augment, self.goal is not None and self.goal.dim() == 5
        out: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
        if aug and img:
            out["shift_goal"] = ((k, n, 2), torch.int64)
        if aug:
            out["shift_obs"], out["shift_next"] = ((k, n, 2), torch.int64), ((k, n, 2), torch.int64)
        if self.use_bc and aug:
            out["shift_demo_obs"] = ((k, nb, 2), torch.int64)
            if img:
                out["shift_demo_goal"] = ((k, nb, 2), torch.int64)
        out["eps_next"], out["eps_pi"] = ((k, n, a), torch.float32), ((k, n, a), torch.float32)
        return out

    def _prepare(self, arrays: Mapping[str, tuple[tuple[int, ...], torch.dtype]]) -> None:
        dev = self.device
        t = {key: torch.empty(shape, dtype=dtype, device=dev) for key, (shape, dtype) in arrays.items()}
        n, nb = arrays["obs"][0][1], arrays["demo_obs"][0][1] if "demo_obs" in arrays else 0
        for key, (shape, dtype) in self.noise_shapes(n, nb).items():
            t[key] = torch.zeros(shape, dtype=dtype, device=dev)
        t["std"] = torch.zeros(self.k, dtype=torch.float32, device=dev)
        self.static = t
        self.step_fn = {}

    def _step_fn(self, train_actor: bool) -> Callable[[], Tensor]:
        """The update on the static buffers, with or without the actor's step (one capture each in graph mode)."""
        if train_actor not in self.step_fn:
            t = self.static
            assert t is not None
            tensors = [
                *[v for g in GROUPS for v in self.params[g].values()],
                *[v for g in GROUPS for v in self.buffers[g].values()],
            ]

            def step() -> Tensor:
                return self._core(t, train_actor)

            self.step_fn[train_actor] = (
                CapturedStep(step, [_Holder(tensors)], [self.critic_opt, self.actor_opt], self.device)
                if self.mode == "graph"
                else step
            )
        return self.step_fn[train_actor]

    def update(
        self,
        batches: Sequence[Mapping[str, np.ndarray]],
        demos: Sequence[Mapping[str, np.ndarray]] | None,
        steps: int | Sequence[int],
        draw: Callable[[int, dict[str, Tensor]], None] | None = None,
    ) -> Tensor:
        """One update of every expert: batch k (and demo batch k) for expert k; returns metrics (K, len(METRICS))
        on the device, columns as `METRICS` (bc_loss 0 without demos).

        The random draws come from this object's generator, for all K at once, unless `draw(k, buffers)` is given:
        it then fills expert k's slice of every noise buffer (in `fast_update.noise_shapes` order, i.e. the order
        `ExpertAgent.update` draws them), e.g. from expert k's own RNG, so that each expert's update uses the
        numbers its single-expert run would have drawn (rl/batched_run.py)."""
        if len(batches) != self.k or (demos is not None and len(demos) != self.k):
            raise ValueError(
                f"batched experts: {self.k} agents, got {len(batches)} batches and "
                f"{'no' if demos is None else len(demos)} demo batches"
            )
        if any("goal" in b for b in batches):
            raise ValueError("batched experts: per-sample goals (multi-task batches) are not batched")
        use_bc = demos is not None and self.cfg.bc_regularize and self.cfg.bc_lambda > 0
        per = [
            input_arrays(b, d if use_bc else None)
            for b, d in zip(batches, demos if demos is not None else [None] * self.k, strict=True)
        ]
        # (K, ...) shapes; each expert's arrays go straight into its slice of the static buffers (no stacked copy)
        arrays = {key: ((self.k, *v.shape), torch.from_numpy(v[:0]).dtype) for key, v in per[0].items()}
        for k, p in enumerate(per[1:], 1):
            if any(p[key].shape != per[0][key].shape for key in per[0]):
                raise ValueError(f"batched experts: expert {k}'s batch shapes differ from expert 0's")
        if (
            self.static is None
            or self.use_bc != use_bc
            or any(tuple(self.static[key].shape) != shape for key, (shape, _) in arrays.items())
        ):
            if self.static is not None and self.mode == "graph":
                raise ValueError("batched experts: a captured update keeps its batch shapes and BC setting")
            self.use_bc = use_bc
            self._prepare(arrays)
        t = self.static
        assert t is not None
        for key in arrays:
            for k, p in enumerate(per):
                t[key][k].copy_(torch.from_numpy(p[key]))
        ks = [steps] * self.k if isinstance(steps, int) else list(steps)
        warm = {s >= self.cfg.actor_start_step for s in ks}
        if len(warm) > 1:
            raise ValueError(f"batched experts: steps {ks} straddle agent.actor_start_step "
                             f"{self.cfg.actor_start_step} (the actor would train for some experts only)")
        t["std"].copy_(torch.tensor([self.agents[0].stddev(s) for s in ks], dtype=torch.float32))
        noise = {key: v for key, v in t.items() if key.startswith(("shift_", "eps_"))}
        if draw is None:
            draw_noise(noise, self.cfg.aug_pad, self.generator)
        else:
            for k in range(self.k):
                draw(k, {key: v[k] for key, v in noise.items()})
        return self._step_fn(warm.pop())().clone()


class _Holder(torch.nn.Module):
    """A module whose `parameters()` are given tensors: how the stacked state reaches `StateSnapshot`."""

    def __init__(self, tensors: list[Tensor]) -> None:
        super().__init__()
        self._given = tensors

    def parameters(self, recurse: bool = True):  # type: ignore[override]
        return iter(self._given)

    def buffers(self, recurse: bool = True):  # type: ignore[override]
        return iter(())


__all__ = ["METRICS", "BatchedExperts"]
