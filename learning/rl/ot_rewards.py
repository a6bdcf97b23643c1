"""Optimal-transport rewards (ROT/PolyTask): match a finished episode to the demos, reward = -transport cost.

For an episode's features X (T+1 rows, one per observation) and a demo's Y, with cosine cost C_ij = 1 - cos(x_i,
y_j), the entropic plan P (Sinkhorn, reg 0.01, 100 iterations, uniform marginals; the authors call POT's
`ot.sinkhorn`) gives per-observation rewards r_i = -scale · Σ_j P_ij C_ij. Among several demos the one whose rewards
sum highest is kept. The reward of the transition t -> t+1 is r_{t+1} (the reward of the observation reached),
which is how the authors attached rewards to time steps.

Two implementations: `sinkhorn_pot` calls POT (the reference); `sinkhorn_torch` is the same Sinkhorn-Knopp
iteration batched over demos in float64 (exp(-C/0.01) reaches e^-200, below float32's range; the loops are in
learning/accel/sinkhorn.py), with zero marginal mass on padded columns so demos of different lengths share one
batch. They agree to ~1e-12.

The cost and the features are declared options (`RewardConfig.cost`, `.features`, `.standardise`; one registry
each, COSTS and FEATURE_MAPS): the authors' cosine on the target encoder's output is the default. On raw states the
cosine ignores vector lengths and compares absolute positions, whose goal slots differ between a demo's placement
and an episode's; `sqeuclidean` and `euclidean` compare lengths (`saturating`, d / (d + 5 cm), is the Euclidean
distance bounded by 1, like the cosine's range), `xarm_relative` maps the xArm's 10-D state to
placement-free relative positions, and `standardise` centres every feature on the demos' mean and divides it by
their std (recomputed whenever the target encoder is). A cost other than the cosine is not bounded by 2, so its
Sinkhorn plan is computed on the cost scaled so that its largest entry is 2 (exp(-C/reg) stays inside float64,
and the plan is as sharp as the cosine's), while the rewards use the cost itself.

The features come from a *target* copy of the encoder, refreshed from the online encoder every
`target_update_steps` (Table IV: 20000) so rewards do not drift with every update; the scale is set once, from the
first episode, so that its return is -scale_factor (Table IV: 10).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from polytask.learning.accel.sinkhorn import sinkhorn_batched
from polytask.learning.data.frames import stack_window
from polytask.learning.nets.drqv2 import Encoder


def cosine_cost(x: Tensor, y: Tensor) -> Tensor:
    """1 - cosine similarity between rows: (..., n, d), (..., m, d) -> (..., n, m)."""
    xn = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    yn = y / y.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return 1.0 - xn @ yn.transpose(-1, -2)


def sqeuclidean_cost(x: Tensor, y: Tensor) -> Tensor:
    """Squared Euclidean distance between rows: (..., n, d), (..., m, d) -> (..., n, m)."""
    return ((x[..., :, None, :] - y[..., None, :, :]) ** 2).sum(-1)


def euclidean_cost(x: Tensor, y: Tensor) -> Tensor:
    """Euclidean distance between rows: grows linearly, so one far-off episode does not dominate the returns."""
    return sqeuclidean_cost(x, y).clamp_min(0.0).sqrt()


SATURATION_M = 0.05  # where the saturating cost is half its bound: a few steps of the arm (2.5 cm each)


def saturating_cost(x: Tensor, y: Tensor) -> Tensor:
    """d / (d + SATURATION_M) of the Euclidean distance d: linear near a match, bounded by 1 far from one, so one
    far-off feature (a grain spilled to the floor moves a centroid by tens of cm) costs no more than a miss."""
    d = euclidean_cost(x, y)
    return d / (d + SATURATION_M)


COSTS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "cosine": cosine_cost,
    "sqeuclidean": sqeuclidean_cost,
    "euclidean": euclidean_cost,
    "saturating": saturating_cost,
}


def xarm_relative(states: Tensor) -> Tensor:
    """The xArm state [ee xyz, tool, achieved xyz, goal xyz] -> [ee - achieved, tool, achieved - goal] (7-D): what
    the task is about, the same wherever the placement puts the objects."""
    if states.shape[-1] != 10:
        raise ValueError(f"xarm_relative: expects the xArm's 10-D state, got {states.shape[-1]}-D features")
    ee, tool, achieved, goal = states[..., 0:3], states[..., 3:4], states[..., 4:7], states[..., 7:10]
    return torch.cat([ee - achieved, tool, achieved - goal], dim=-1)


# (target encoder, observations as the agent sees them) -> OT features. "encoder": the target encoder's output (on
# states with the identity or the standardising encoder, the state itself, raw or standardised); "xarm_relative":
# the raw state's relative positions (metres), whatever the encoder.
FEATURE_MAPS: dict[str, Callable[[Encoder, Tensor], Tensor]] = {
    "encoder": lambda enc, x: enc(x),
    "xarm_relative": lambda enc, x: xarm_relative(x.float()),
}


def plan_cost(cost: Tensor, kind: str, valid: Tensor | None = None) -> Tensor:
    """The cost the Sinkhorn plan is computed on: the cosine as it is (the authors'), any other cost scaled so its
    largest valid entry is 2 (the cosine's bound), per batch element."""
    if kind == "cosine":
        return cost
    live = cost if valid is None else cost.masked_fill(~valid, 0.0)
    top = live.amax(dim=(-1, -2), keepdim=True).clamp_min(1e-12)
    return cost * (2.0 / top)


def sinkhorn_pot(cost: np.ndarray, reg: float = 0.01, iters: int = 100) -> np.ndarray:
    """The reference: POT's Sinkhorn with uniform marginals, as the authors called it."""
    import ot

    n, m = cost.shape
    return ot.sinkhorn(np.full(n, 1.0 / n), np.full(m, 1.0 / m), cost.astype(np.float64), reg, numItermax=iters)


def sinkhorn_torch(cost: Tensor, a: Tensor, b: Tensor, reg: float = 0.01, iters: int = 100,
                   stop_thr: float = 1e-9) -> Tensor:
    """Batched Sinkhorn-Knopp, the same iteration and stopping rule as POT's `sinkhorn_knopp`.

    cost (B, n, m), marginals a (B, n), b (B, m) (zeros mark padding). Computed in float64. Each batch element
    stops on its own when its marginal error (checked every 10 iterations) falls below `stop_thr`, or keeps its
    previous scaling on a numerical error, as POT does. The loops live in learning/accel/sinkhorn.py (numpy on a
    CPU, sync-free torch on CUDA).
    """
    return sinkhorn_batched(cost, a, b, reg, iters, stop_thr)


def ot_rewards_torch(episode: Tensor, demos: list[Tensor], reg: float = 0.01, iters: int = 100,
                     scale: float = 1.0, cost_kind: str = "cosine") -> tuple[np.ndarray, int, np.ndarray]:
    """Per-observation rewards of `episode` (n, d) against the best of `demos` [(m_j, d)].

    Returns (rewards (n,), best demo index, total reward per demo).
    """
    n = episode.shape[0]
    m = max(d.shape[0] for d in demos)
    feats = torch.zeros(len(demos), m, episode.shape[1], dtype=episode.dtype, device=episode.device)
    b = torch.zeros(len(demos), m, dtype=torch.float64, device=episode.device)
    for j, d in enumerate(demos):
        feats[j, : d.shape[0]] = d
        b[j, : d.shape[0]] = 1.0 / d.shape[0]
    x = episode[None].expand(len(demos), -1, -1)
    cost = COSTS[cost_kind](x.double(), feats.double())
    a = torch.full((len(demos), n), 1.0 / n, dtype=torch.float64, device=episode.device)
    plan = sinkhorn_torch(plan_cost(cost, cost_kind, (b > 0)[:, None, :].expand_as(cost)), a, b, reg, iters)
    rewards = -scale * (plan * cost * (b > 0)[:, None, :]).sum(-1)  # (B, n) = diag(P C^T)
    totals = rewards.sum(1)
    best = int(torch.argmax(totals))
    return rewards[best].cpu().numpy(), best, totals.cpu().numpy()


def ot_rewards_pot(episode: np.ndarray, demos: list[np.ndarray], reg: float = 0.01, iters: int = 100,
                   scale: float = 1.0, cost_kind: str = "cosine") -> tuple[np.ndarray, int, np.ndarray]:
    """The same with POT, one demo at a time (the authors' loop)."""
    per_demo = []
    for d in demos:
        c = COSTS[cost_kind](torch.as_tensor(episode, dtype=torch.float64), torch.as_tensor(d, dtype=torch.float64))
        cost = c.numpy()
        plan = sinkhorn_pot(plan_cost(c, cost_kind).numpy(), reg, iters)
        per_demo.append(-scale * (plan * cost).sum(1))
    totals = np.array([r.sum() for r in per_demo])
    best = int(np.argmax(totals))
    return per_demo[best], best, totals


class OTRewarder:
    """Rewards of finished episodes against the task's demos, with a periodically refreshed target encoder."""

    def __init__(self, encoder: Encoder, demo_obs: list[np.ndarray], frame_stack: int, pixels: bool,
                 reg: float = 0.01, iters: int = 100, scale: float | None = None, scale_factor: float = 10.0,
                 device: str | torch.device = "cpu", cost: str = "cosine", features: str = "encoder",
                 standardise: bool = False) -> None:
        if not demo_obs:
            raise ValueError("OT rewards need at least one demo")
        if cost not in COSTS or features not in FEATURE_MAPS:
            raise ValueError(f"OT cost {cost!r} / features {features!r}: expected one of {sorted(COSTS)} / "
                             f"{sorted(FEATURE_MAPS)}")
        if pixels and features != "encoder":
            raise ValueError(f"OT features {features!r} read states; a pixel agent's OT features are 'encoder'")
        self.cost, self.feature_map, self.standardise = cost, FEATURE_MAPS[features], standardise
        self._feat_mean: Tensor | None = None
        self._feat_std: Tensor | None = None
        self.target = copy.deepcopy(encoder).requires_grad_(False)
        self.demo_obs = demo_obs
        self.frame_stack, self.pixels = frame_stack, pixels
        self.reg, self.iters = reg, iters
        self.scale = scale  # None until the first episode sets it (auto scale)
        self.scale_factor = scale_factor
        self.device = torch.device(device)
        self._demo_feats: list[Tensor] | None = None
        self.last_best = -1

    def refresh(self, encoder: Encoder) -> None:
        """Copy the online encoder into the target (Table IV: every 20000 steps)."""
        self.target.load_state_dict(encoder.state_dict())
        self._demo_feats = self._feat_mean = self._feat_std = None

    @torch.no_grad()
    def features(self, obs: np.ndarray) -> Tensor:
        """Target-encoder features of every observation of one episode (stacked as the agent sees them)."""
        idx = np.arange(obs.shape[0])
        out = []
        for start in range(0, len(idx), 256):
            x = stack_window(obs, idx[start:start + 256], self.frame_stack, self.pixels)
            out.append(self.feature_map(self.target, torch.as_tensor(x, device=self.device)).double())
        return torch.cat(out)

    def _standardised(self, feats: Tensor) -> Tensor:
        """Features divided by the demos' per-dimension std, centred on their mean (recomputed with the target)."""
        if not self.standardise:
            return feats
        if self._feat_mean is None or self._feat_std is None:
            demo = torch.cat([self.features(d) for d in self.demo_obs])
            self._feat_mean, self._feat_std = demo.mean(0), demo.std(0, unbiased=False).clamp_min(1e-2)
        return (feats - self._feat_mean) / self._feat_std

    def episode_rewards(self, obs: np.ndarray) -> np.ndarray:
        """Rewards of the T transitions of an episode with observations obs (T+1, ...): r_t = ot[t+1].

        `obs` and the demos are in the layout of `replay.episode_obs` ((T+1, 3, H, W) frames or (T+1, D) states).
        """
        if self._demo_feats is None:
            self._demo_feats = [self._standardised(self.features(d)) for d in self.demo_obs]
        per_obs, self.last_best, _ = ot_rewards_torch(self._standardised(self.features(obs)), self._demo_feats,
                                                      self.reg, self.iters, cost_kind=self.cost)
        raw = per_obs[1:]
        if self.scale is None:
            total = float(np.abs(raw.sum()))
            self.scale = self.scale_factor / total if total > 1e-12 else 1.0
        return (self.scale * raw).astype(np.float32)
