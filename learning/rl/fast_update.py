"""The expert's DrQ-v2 + BC update (learning/agent.py) as a tensor-only step: CUDA graph or torch.compile.

`ExpertAgent.update` stays the readable reference (and the hook the multi-task variants override); this module is
its twin with everything a CUDA graph forbids taken out, and a test holds the two equal bit for bit on a CPU:
- the random draws (shift offsets for each augmented tensor, the two action-noise samples) are drawn in
  `ExpertAgent.update`'s order into static buffers *before* the step (`draw_noise`), so the step itself draws
  nothing and a replay uses exactly the numbers eager code would have drawn;
- the exploration std is a 0-d tensor filled per update, not a Python float baked into a graph;
- the metrics are one tensor, read after the step (`LazyMetrics`: only when somebody looks);
- the actor's backward stops at the actor's parameters (eager code also computes the critic's gradients there
  and throws them away: same actor gradients, less work).

Modes (`agent.compile`): "graph" captures `update_core` in one CUDA graph (`CapturedStep`; on a CPU the same
static-buffer step runs uncaptured), "compile" runs the two loss stages through `torch.compile` with the
backward passes and Adam steps eager.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from polytask.learning.accel.cuda_graph import CapturedStep, make_capturable
from polytask.learning.nets.drqv2 import goal_features
from polytask.learning.rl.agent import apply_shift, soft_update

if TYPE_CHECKING:
    from polytask.learning.rl.agent import ExpertAgent

METRICS = ("critic_loss", "critic_q1", "critic_target_q", "bc_loss", "actor_loss", "rl_loss", "stddev", "batch_reward")


def metric_tensor(
    closs: Tensor,
    feats: Mapping[str, Tensor],
    bc: Tensor,
    aloss: Tensor,
    rl: Tensor,
    std: Tensor,
    reward: Tensor,
    dim: int = 0,
) -> Tensor:
    """The metrics of an update stacked in METRICS order along `dim` (1 for K experts at once: one row each)."""
    return torch.stack(
        [
            closs.detach(),
            feats["critic_q1"],
            feats["critic_target_q"],
            bc.detach(),
            aloss.detach(),
            rl.detach(),
            std,
            reward,
        ],
        dim=dim,
    )


@dataclass(frozen=True)
class Plan:
    """What one update reads, fixed by the first batch: a new plan (other shapes, BC on/off) is a new capture."""

    use_bc: bool
    batch_goal: bool  # per-sample goals under key `goal` (multi-task batches)
    demo_goal: bool
    shapes: tuple[tuple[str, tuple[int, ...], str], ...]
    train_actor: bool = True  # False during the critic's warm-up (agent.actor_start_step)

    @classmethod
    def of(cls, agent: ExpertAgent, batch: Mapping[str, np.ndarray], demo: Mapping[str, np.ndarray] | None,
           step: int = 0) -> Plan:
        use_bc = demo is not None and agent.cfg.bc_regularize and agent.cfg.bc_lambda > 0
        arrays = input_arrays(batch, demo if use_bc else None)
        shapes = tuple((k, tuple(v.shape), str(v.dtype)) for k, v in arrays.items())
        return cls(use_bc, "goal" in batch, use_bc and "goal" in demo,  # type: ignore[operator]
                   shapes, step >= agent.cfg.actor_start_step)


def input_arrays(batch: Mapping[str, np.ndarray], demo: Mapping[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    """The arrays an update reads, under the names of the static buffers."""
    out = {k: np.asarray(batch[k]) for k in ("obs", "action", "reward", "discount", "next_obs")}
    if "goal" in batch:
        out["goal"] = np.asarray(batch["goal"])
    if demo is not None:
        out["demo_obs"], out["demo_action"] = np.asarray(demo["obs"]), np.asarray(demo["action"])
        if "goal" in demo:
            out["demo_goal"] = np.asarray(demo["goal"])
    return out


def _image_goal(agent: ExpertAgent, per_sample: bool, shape: tuple[int, ...] | None) -> bool:
    if per_sample:
        return shape is not None and len(shape) == 4
    return agent.goal is not None and agent.goal.dim() == 4


def noise_shapes(agent: ExpertAgent, plan: Plan) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """The random draws of one update, in the order `ExpertAgent.update` makes them (that order is the contract:
    same generator state, same numbers)."""
    shapes = {k: s for k, s, _ in plan.shapes}
    n, nb, a = shapes["obs"][0], shapes.get("demo_obs", (0,))[0], agent.spec.action_dim
    aug = agent.pixels and agent.cfg.augment
    out: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
    if aug and _image_goal(agent, plan.batch_goal, shapes.get("goal")):
        out["shift_goal"] = ((n, 2), torch.int64)
    if aug:
        out["shift_obs"] = ((n, 2), torch.int64)
        out["shift_next"] = ((n, 2), torch.int64)
    if plan.use_bc:
        if aug:
            out["shift_demo_obs"] = ((nb, 2), torch.int64)
        if aug and _image_goal(agent, plan.demo_goal, shapes.get("demo_goal")):
            out["shift_demo_goal"] = ((nb, 2), torch.int64)
    out["eps_next"] = ((n, a), torch.float32)
    out["eps_pi"] = ((n, a), torch.float32)
    return out


def draw_noise(buffers: Mapping[str, Tensor], pad: int, generator: torch.Generator | None = None) -> None:
    """Fill the noise buffers in their order: shift offsets in [0, 2*pad], standard normal action noise."""
    for key, buf in buffers.items():
        if key.startswith("shift_"):
            torch.randint(0, 2 * pad + 1, tuple(buf.shape), out=buf, generator=generator, device=buf.device)
        else:
            torch.randn(tuple(buf.shape), out=buf, generator=generator, device=buf.device)


def noisy_action(mu: Tensor, eps: Tensor, std: Tensor, clip: float) -> Tensor:
    """`TruncatedNormal(mu, std).sample(clip)` with the standard normal draw `eps` given: same ops, same bits."""
    noise = torch.clamp(eps * std, -clip, clip)
    x = mu + noise
    clamped = torch.clamp(x, -1.0 + 1e-6, 1.0 - 1e-6)
    return x - x.detach() + clamped.detach()


def target_features(
    enc: Callable[[Tensor], Tensor],
    spec: Any,
    fused: bool,
    obs: Tensor,
    next_obs: Tensor,
    goal: Tensor | None,
    obs_bc: Tensor | None,
    goal_bc: Tensor | None,
    out: dict[str, Tensor],
) -> tuple[Tensor, Tensor]:
    """The features the critic target and the BC term read (call under torch.no_grad()): (next-obs features, goal
    features); with a demo batch also out["obs_bc_f"] / out["goal_bc_f"]. One copy for the one-expert fast path
    and the K-expert batched update.

    `fused` (pixels): one encoder call over every image input (a pixel goal tiled to the frame stack), split
    after; otherwise one call each."""

    def tiled(g: Tensor) -> Tensor:
        return g.repeat(1, spec.frame_stack, 1, 1) if g.shape[1] == 3 else g

    if not fused:
        next_f = enc(next_obs)
        goal_f = goal_features(enc, spec, goal, obs)
        if obs_bc is not None:
            out["obs_bc_f"] = enc(obs_bc)
            out["goal_bc_f"] = goal_features(enc, spec, goal_bc, obs_bc)
        return next_f, goal_f
    parts = [next_obs]
    if goal is not None and goal.dim() == 4:
        parts.append(tiled(goal))
    if obs_bc is not None:
        parts.append(obs_bc)
        if goal_bc is not None and goal_bc.dim() == 4:
            parts.append(tiled(goal_bc))
    feats = list(enc(torch.cat(parts)).split([q.shape[0] for q in parts]))
    next_f = feats.pop(0)
    goal_f = feats.pop(0) if goal is not None and goal.dim() == 4 else goal_features(enc, spec, goal, obs)
    if obs_bc is not None:
        out["obs_bc_f"] = feats.pop(0)
        out["goal_bc_f"] = (
            feats.pop(0) if goal_bc is not None and goal_bc.dim() == 4 else goal_features(enc, spec, goal_bc, obs_bc)
        )
    return next_f, goal_f


def _goal(agent: ExpertAgent, t: Mapping[str, Tensor], key: str, per_sample: bool, n: int) -> Tensor | None:
    if per_sample:
        g = t[key]
        g = g if g.dtype == torch.uint8 else g.float()
    else:
        g = agent._goal_batch(n)
    shift = t.get("shift_" + key)
    return g if shift is None else apply_shift(g, shift, agent.cfg.aug_pad)


def critic_stage(agent: ExpertAgent, t: Mapping[str, Tensor], plan: Plan) -> tuple[Tensor, dict[str, Tensor]]:
    """Augmentation, encoder passes and the twin-critic TD loss; returns (loss, what the actor stage needs)."""
    spec, enc, pad = agent.spec, agent.nets.encoder, agent.cfg.aug_pad
    obs, next_obs = t["obs"], t["next_obs"]
    n = obs.shape[0]
    goal = _goal(agent, t, "goal", plan.batch_goal, n)
    if "shift_obs" in t:
        obs, next_obs = apply_shift(obs, t["shift_obs"], pad), apply_shift(next_obs, t["shift_next"], pad)
    obs_bc = goal_bc = None
    if plan.use_bc:
        obs_bc = t["demo_obs"]
        if "shift_demo_obs" in t:
            obs_bc = apply_shift(obs_bc, t["shift_demo_obs"], pad)
        goal_bc = _goal(agent, t, "demo_goal", plan.demo_goal, obs_bc.shape[0])
    out: dict[str, Tensor] = {}
    obs_f = enc(obs)
    with torch.no_grad():
        next_f, goal_f = target_features(
            enc, spec, agent.fused and agent.pixels, obs, next_obs, goal, obs_bc, goal_bc, out
        )
        mu = agent.nets.actor(next_f, goal_f)
        next_action = noisy_action(mu, t["eps_next"], t["std"], agent.cfg.stddev_clip)
        tq1, tq2 = agent.critic_target(next_f, goal_f, next_action)
        target_q = t["reward"] + t["discount"] * torch.min(tq1, tq2)
    q1, q2 = agent.nets.critic(obs_f, goal_f, t["action"].float())
    loss = F.mse_loss(q1, target_q) + F.mse_loss(q2, target_q)
    out.update(obs_f=obs_f.detach(), goal_f=goal_f, critic_q1=q1.detach().mean(), critic_target_q=target_q.mean())
    return loss, out


def actor_stage(
    agent: ExpertAgent, t: Mapping[str, Tensor], feats: Mapping[str, Tensor], plan: Plan
) -> tuple[Tensor, Tensor, Tensor]:
    """Eq. 1's actor loss with the updated critic; returns (loss, rl term, bc term (0 without BC))."""
    cfg, nets = agent.cfg, agent.nets
    obs_f, goal_f = feats["obs_f"], feats["goal_f"]
    mu = nets.actor(obs_f, goal_f)
    action = noisy_action(mu, t["eps_pi"], t["std"], cfg.stddev_clip)
    q1, q2 = nets.critic(obs_f, goal_f, action)
    lam = cfg.bc_lambda if plan.use_bc else 0.0
    rl = -(1.0 - lam) * torch.min(q1, q2).mean()
    if not plan.use_bc:
        return rl, rl, torch.zeros_like(rl)
    bc = agent.bc_loss(nets.actor(feats["obs_bc_f"], feats["goal_bc_f"]), t["demo_action"].float())
    return rl + cfg.bc_alpha * lam * bc, rl, bc


def adam_step(opt: torch.optim.Optimizer, loss: Tensor, inputs: list[Tensor] | None = None) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward(inputs=inputs)
    opt.step()


StageFns = tuple[Callable[..., Any], Callable[..., Any]]


def update_core(
    agent: ExpertAgent, t: Mapping[str, Tensor], plan: Plan, stages: StageFns = (critic_stage, actor_stage)
) -> Tensor:
    """One full update from the tensors in `t` (inputs, noise, std); returns the metrics as one tensor (METRICS)."""
    critic_fn, actor_fn = stages
    closs, feats = critic_fn(agent, t, plan)
    adam_step(agent.critic_opt, closs)
    if plan.train_actor:
        aloss, rl, bc = actor_fn(agent, t, feats, plan)
        adam_step(agent.actor_opt, aloss, list(agent.nets.actor.parameters()))
    else:  # the critic's warm-up: the actor's losses are reported, the actor is left as it is
        with torch.no_grad():
            aloss, rl, bc = actor_fn(agent, t, feats, plan)
    soft_update(agent.nets.critic, agent.critic_target, agent.cfg.critic_tau)
    return metric_tensor(closs, feats, bc, aloss, rl, t["std"], t["reward"].mean())


class LazyMetrics(Mapping[str, float]):
    """The metrics of one update, copied on the device and read (one sync) only when first looked at."""

    def __init__(self, values: Tensor, names: tuple[str, ...] = METRICS, drop: tuple[str, ...] = ()) -> None:
        self._values, self._names, self._drop = values, names, set(drop)
        self._read: dict[str, float] | None = None

    def _get(self) -> dict[str, float]:
        if self._read is None:
            vals = self._values.tolist()
            self._read = {k: v for k, v in zip(self._names, vals, strict=True) if k not in self._drop}
        return self._read

    def __getitem__(self, key: str) -> float:
        return self._get()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())


class FastUpdater:
    """Static buffers + the update step of one agent in one mode; one capture per `Plan`."""

    def __init__(self, agent: ExpertAgent, mode: str) -> None:
        if mode not in ("graph", "compile"):
            raise ValueError(f"agent.compile is {mode!r}, expected 'graph' or 'compile' for the fast path")
        self.agent, self.mode, self.device = agent, mode, agent.device
        self.buffers: dict[Plan, dict[str, Tensor]] = {}
        self.steps: dict[Plan, Callable[[], Tensor]] = {}
        self.stages: StageFns = (critic_stage, actor_stage)
        if mode == "compile":
            self.stages = (torch.compile(critic_stage, dynamic=False), torch.compile(actor_stage, dynamic=False))
        if mode == "graph" and self.device.type == "cuda":
            make_capturable([agent.critic_opt, agent.actor_opt])

    def _prepare(self, plan: Plan) -> None:
        dev = self.device
        t = {k: torch.empty(s, dtype=torch.from_numpy(np.empty(0, d)).dtype, device=dev) for k, s, d in plan.shapes}
        for k, (shape, dtype) in noise_shapes(self.agent, plan).items():
            t[k] = torch.zeros(shape, dtype=dtype, device=dev)
        t["std"] = torch.zeros((), dtype=torch.float32, device=dev)
        self.buffers[plan] = t
        a = self.agent

        def step() -> Tensor:
            return update_core(a, t, plan, self.stages)

        if self.mode == "graph":
            self.steps[plan] = CapturedStep(step, [a.nets, a.critic_target], [a.critic_opt, a.actor_opt], dev)
        else:
            self.steps[plan] = step

    def load(
        self, plan: Plan, batch: Mapping[str, np.ndarray], demo: Mapping[str, np.ndarray] | None, std: float
    ) -> dict[str, Tensor]:
        """Copy a sampled batch into the static buffers and set the std; returns the buffers."""
        t = self.buffers[plan]
        for k, arr in input_arrays(batch, demo if plan.use_bc else None).items():
            t[k].copy_(torch.from_numpy(np.ascontiguousarray(arr)))
        t["std"].fill_(std)
        return t

    def update(self, batch: Mapping[str, np.ndarray], demo: Mapping[str, np.ndarray] | None, step: int) -> LazyMetrics:
        plan = Plan.of(self.agent, batch, demo, step)
        if plan not in self.buffers:
            self._prepare(plan)
        t = self.load(plan, batch, demo, self.agent.stddev(step))
        # Drawn before the step: a first call warms up and captures on these buffers without drawing anything,
        # restores the state, and replays once, so the first update uses exactly these numbers too.
        draw_noise({k: v for k, v in t.items() if k.startswith(("shift_", "eps_"))}, self.agent.cfg.aug_pad)
        return LazyMetrics(self.steps[plan]().clone(), drop=() if plan.use_bc else ("bc_loss",))
