"""The networks of a PolyTask expert (and of the distilled student): encoder, goal features, actor, twin critic.

Shapes follow the authors' code (DrQ-v2 as modified for ROT/PolyTask), because the published numbers came from it:
- Pixel encoder: 4 conv 3x3 layers of 32 filters, strides 2,1,1,1, ReLU, input scaled `x/255 - 0.5`
  (84x84 -> 32x35x35 = 39200 features), then a trunk Linear -> LayerNorm -> Tanh to `feature_dim` (512).
  The authors put the trunk inside the encoder (not in each head as DrQ-v2 did), so actor and critic share it
  and a goal image goes through the very same encoder.
- State inputs skip the conv stack: identity by default (the authors feed the raw state), an MLP trunk optional,
  or `standardise`: (x - mean) / std with frozen buffers set once from the demos (`Encoder.set_normalizer`), so
  centimetre-scale positions reach the actor (and the OT features) at unit scale; the buffers travel in every
  checkpoint with the encoder, so loading, evaluation, relabelling and serving see the same inputs.
- Goal conditioning: `image` -> the goal frame through the same encoder (tiled `frame_stack` times along
  channels so the conv sees the layout it was built for); `onehot` / `sinusoid` / `language` -> a given vector of
  `goal_dim` concatenated as is; `none` -> nothing.
- Actor: MLP on [goal, obs] features, `actor_layers` hidden layers of `hidden` (1024) with ReLU, head + tanh
  gives the mean. The std is not learned: DrQ-v2 schedules it, so callers pass it (see `TruncatedNormal`).
- Critic: two Q heads on [goal, obs, action tiled `k` times]. The action (4-6 numbers) would be swamped by
  ~1024 feature numbers; the authors repeat it (200x for 512-d pixel features, (obs+goal)//action_dim for
  states) so it carries comparable weight at the first layer.

Everything is built from `NetworkSpec`, a small JSON-serialisable dataclass that checkpoints store, so a loader
can rebuild exactly the same modules (and refuse a checkpoint made for different ones).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

OBS_MODALITIES = ("pixels", "state")
GOAL_MODALITIES = ("image", "onehot", "sinusoid", "language", "none")
STATE_ENCODERS = ("identity", "mlp", "standardise")
STD_FLOOR = 1e-2  # the student's floor (nets/student.py): a constant slot is not blown up
NORM_CLIP = 10.0
PIXEL_CHANNELS = 3
S = TypeVar("S")


@dataclass(frozen=True)
class NetworkSpec:
    """Everything needed to rebuild the networks. Defaults are the paper's sizes (Table IV, authors' code).

    `obs_shape` is ONE frame: (3, H, W) channels-first for pixels, (state_dim,) for states. The network input
    stacks `frame_stack` of them along the first axis.
    """

    obs_modality: str
    obs_shape: tuple[int, ...]
    action_dim: int
    goal_modality: str = "none"
    goal_dim: int = 0  # length of a vector goal (onehot/sinusoid/language); ignored for image/none
    hidden: int = 1024
    feature_dim: int = 512  # pixel trunk output (and MLP state trunk output)
    frame_stack: int = 1
    actor_layers: int = 4  # hidden layers of the actor MLP (authors: 4)
    critic_layers: int = 2  # hidden layers of each Q head (authors: 2)
    critic_action_tile: int = 0  # 0 = the authors' rule (200 for pixels, (obs+goal)//action_dim for states)
    state_encoder: str = "identity"  # states: "identity" (authors) or "mlp" (Linear-LayerNorm-Tanh trunk)

    def __post_init__(self) -> None:
        object.__setattr__(self, "obs_shape", tuple(int(x) for x in self.obs_shape))
        self.validate()

    def validate(self) -> None:
        def bad(key: str, value: Any, want: str) -> ValueError:
            return ValueError(f"NetworkSpec: key {key!r} is {value!r}, expected {want}")

        if self.obs_modality not in OBS_MODALITIES:
            raise bad("obs_modality", self.obs_modality, f"one of {OBS_MODALITIES}")
        if self.goal_modality not in GOAL_MODALITIES:
            raise bad("goal_modality", self.goal_modality, f"one of {GOAL_MODALITIES}")
        if self.state_encoder not in STATE_ENCODERS:
            raise bad("state_encoder", self.state_encoder, f"one of {STATE_ENCODERS}")
        if self.obs_modality == "pixels":
            if len(self.obs_shape) != 3 or self.obs_shape[0] != PIXEL_CHANNELS or min(self.obs_shape[1:]) < 16:
                raise bad("obs_shape", self.obs_shape, "(3, H, W) with H, W >= 16 for pixels")
        elif len(self.obs_shape) != 1 or self.obs_shape[0] < 1:
            raise bad("obs_shape", self.obs_shape, "(state_dim,) for states")
        if self.goal_modality == "image" and self.obs_modality != "pixels":
            raise bad("goal_modality", "image", "a vector goal for state observations (no image encoder)")
        if self.goal_modality in ("onehot", "sinusoid", "language") and self.goal_dim < 1:
            raise bad("goal_dim", self.goal_dim, f">= 1 for goal modality {self.goal_modality!r}")
        for key in ("action_dim", "hidden", "feature_dim", "frame_stack", "actor_layers", "critic_layers"):
            if int(getattr(self, key)) < 1:
                raise bad(key, getattr(self, key), "an integer >= 1")
        if self.critic_action_tile < 0:
            raise bad("critic_action_tile", self.critic_action_tile, ">= 0 (0 = authors' rule)")

    # --- derived sizes ----------------------------------------------------------------------------
    @property
    def in_channels(self) -> int:
        return self.obs_shape[0] * self.frame_stack

    @property
    def conv_out_hw(self) -> tuple[int, int]:
        # 3x3 stride 2 (no padding), then three 3x3 stride 1: each of the latter removes 2 pixels.
        h, w = self.obs_shape[1], self.obs_shape[2]
        return ((h - 3) // 2 + 1) - 6, ((w - 3) // 2 + 1) - 6

    @property
    def obs_repr_dim(self) -> int:
        if self.obs_modality == "pixels" or self.state_encoder == "mlp":
            return self.feature_dim
        return self.obs_shape[0] * self.frame_stack

    @property
    def goal_repr_dim(self) -> int:
        if self.goal_modality == "image":
            return self.feature_dim
        if self.goal_modality == "none":
            return 0
        return self.goal_dim

    @property
    def action_tile(self) -> int:
        if self.critic_action_tile > 0:
            return self.critic_action_tile
        if self.obs_modality == "pixels":
            return 200
        return max(1, (self.obs_repr_dim + self.goal_repr_dim) // self.action_dim)

    # --- serialisation ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["obs_shape"] = list(self.obs_shape)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any, where: str = "NetworkSpec") -> NetworkSpec:
        return spec_from_dict(cls, data, where, "network spec")

    @classmethod
    def from_json(cls, text: str, where: str = "NetworkSpec") -> NetworkSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: network spec is not valid JSON ({err})") from err
        return cls.from_dict(data, where)

    def differences(self, other: NetworkSpec) -> list[str]:
        """Human-readable list of fields that differ (`goal_modality: 'image' != 'onehot'`)."""
        a, b = self.to_dict(), other.to_dict()
        return [f"{k}: {a[k]!r} != {b[k]!r}" for k in sorted(a) if a[k] != b[k]]


def spec_from_dict(cls: type[S], data: Any, where: str, what: str) -> S:
    """A spec dataclass from a checkpoint header's mapping; unknown, missing or malformed keys are errors naming
    the file (`where`) and the keys."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: {what} must be a mapping, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: {what} keys {unknown} unknown; known keys: {sorted(known)}")
    try:
        return cls(**data)
    except TypeError as err:
        raise ValueError(f"{where}: {what} incomplete or malformed ({err})") from err


def weight_init(module: nn.Module) -> None:
    """DrQ-v2's initialisation: orthogonal weights (ReLU gain for convs), zero biases."""
    if isinstance(module, nn.Linear):
        nn.init.orthogonal_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        nn.init.orthogonal_(module.weight, nn.init.calculate_gain("relu"))
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def mlp_layers(in_dim: int, hidden: int, layers: int, out_dim: int) -> list[nn.Linear]:
    """The Linear layers of every MLP here: `layers` hidden layers of width `hidden`, then a head to `out_dim`.

    A plain list, so a network that needs each layer's output (a progressive column feeds its laterals from
    them) holds the same layers in a ModuleList; `mlp` interleaves them with ReLUs for everything else.
    """
    dims = [in_dim] + [hidden] * layers
    return [nn.Linear(d, hidden) for d in dims[:-1]] + [nn.Linear(dims[-1], out_dim)]


def mlp(in_dim: int, hidden: int, layers: int, out_dim: int) -> nn.Sequential:
    """Linear-ReLU `layers` times, then a linear head (DrQ-v2's actor and Q heads). The Linear layers sit at
    Sequential indices 0, 2, 4, ..., which is what the checkpoints' parameter names record."""
    *body, head = mlp_layers(in_dim, hidden, layers, out_dim)
    mods: list[nn.Module] = []
    for layer in body:
        mods += [layer, nn.ReLU(inplace=True)]
    return nn.Sequential(*mods, head)


class Encoder(nn.Module):
    """Observation -> features. Pixels: conv stack + LayerNorm-Tanh trunk. States: identity, an MLP trunk, or
    standardised (frozen mean/std buffers)."""

    def __init__(self, spec: NetworkSpec) -> None:
        super().__init__()
        self.spec = spec
        self.repr_dim = spec.obs_repr_dim
        self.convnet: nn.Module | None = None
        self.trunk: nn.Module | None = None
        if spec.obs_modality == "pixels":
            h, w = spec.conv_out_hw
            self.convnet = nn.Sequential(
                nn.Conv2d(spec.in_channels, 32, 3, stride=2), nn.ReLU(),
                nn.Conv2d(32, 32, 3, stride=1), nn.ReLU(),
                nn.Conv2d(32, 32, 3, stride=1), nn.ReLU(),
                nn.Conv2d(32, 32, 3, stride=1), nn.ReLU(),
            )
            self.conv_dim = 32 * h * w
            self.trunk = nn.Sequential(nn.Linear(self.conv_dim, spec.feature_dim), nn.LayerNorm(spec.feature_dim),
                                       nn.Tanh())
        elif spec.state_encoder == "mlp":
            in_dim = spec.obs_shape[0] * spec.frame_stack
            self.trunk = nn.Sequential(nn.Linear(in_dim, spec.feature_dim), nn.LayerNorm(spec.feature_dim), nn.Tanh())
        elif spec.state_encoder == "standardise":
            in_dim = spec.obs_shape[0] * spec.frame_stack
            self.register_buffer("obs_mean", torch.zeros(in_dim))
            self.register_buffer("obs_std", torch.ones(in_dim))
        self.apply(weight_init)

    @property
    def standardises(self) -> bool:
        return self.spec.obs_modality == "state" and self.spec.state_encoder == "standardise"

    def set_normalizer(self, states: Tensor | Any) -> None:
        """Freeze the standardisation to the mean/std of `states` (N, D) (std floored at STD_FLOOR)."""
        if not self.standardises:
            raise ValueError(f"set_normalizer: the encoder is {self.spec.state_encoder!r}, not 'standardise'")
        x = torch.as_tensor(states, dtype=torch.float32).reshape(-1, self.obs_mean.shape[0])
        if x.shape[0] < 1 or not bool(torch.isfinite(x).all()):
            raise ValueError(f"set_normalizer: needs finite (N, {self.obs_mean.shape[0]}) states, got {tuple(x.shape)}")
        self.obs_mean.copy_(x.mean(0))
        self.obs_std.copy_(x.std(0, unbiased=False).clamp_min(STD_FLOOR))

    def forward(self, obs: Tensor) -> Tensor:
        if self.convnet is not None:
            x = obs.float() / 255.0 - 0.5
            h = self.convnet(x)
            return self.trunk(h.flatten(1))
        x = obs.float()
        if self.standardises:
            return torch.clamp((x - self.obs_mean) / self.obs_std, -NORM_CLIP, NORM_CLIP)
        return self.trunk(x) if self.trunk is not None else x


def goal_features(encoder: Encoder, spec: NetworkSpec, goal: Tensor | None, obs: Tensor) -> Tensor:
    """Goal -> features for the actor/critic input.

    An image goal is one uint8 frame (B, 3, H, W) (or already tiled, (B, 3*frame_stack, H, W)); it is tiled to the
    stacked layout and passed through the observation encoder, as the authors do. Vector goals pass as they are.
    `obs` only supplies batch size and device for the empty goal of modality `none`.
    """
    if spec.goal_modality == "none":
        return obs.new_zeros((obs.shape[0], 0), dtype=torch.float32)
    if goal is None:
        raise ValueError(f"goal modality {spec.goal_modality!r} needs a goal tensor, got None")
    if spec.goal_modality == "image":
        if goal.dim() != 4:
            raise ValueError(f"image goal must be (B, C, H, W), got shape {tuple(goal.shape)}")
        if goal.shape[1] == PIXEL_CHANNELS and spec.frame_stack > 1:
            goal = goal.repeat(1, spec.frame_stack, 1, 1)
        return encoder(goal)
    if goal.dim() != 2 or goal.shape[1] != spec.goal_dim:
        raise ValueError(f"{spec.goal_modality} goal must be (B, {spec.goal_dim}), got shape {tuple(goal.shape)}")
    return goal.float()


class Actor(nn.Module):
    """[goal, obs] features -> action mean in (-1, 1). Usable alone (a distilled student is encoder + actor)."""

    def __init__(self, spec: NetworkSpec) -> None:
        super().__init__()
        self.spec = spec
        self.policy = mlp(spec.goal_repr_dim + spec.obs_repr_dim, spec.hidden, spec.actor_layers, spec.action_dim)
        self.apply(weight_init)

    def forward(self, obs_feat: Tensor, goal_feat: Tensor) -> Tensor:
        return torch.tanh(self.policy(torch.cat([goal_feat, obs_feat], dim=-1)))


class Critic(nn.Module):
    """Twin Q heads on [goal, obs, action tiled k times]; see the module docstring for why the action is tiled."""

    def __init__(self, spec: NetworkSpec) -> None:
        super().__init__()
        self.spec = spec
        self.tile = spec.action_tile
        in_dim = spec.goal_repr_dim + spec.obs_repr_dim + self.tile * spec.action_dim
        self.q1 = mlp(in_dim, spec.hidden, spec.critic_layers, 1)
        self.q2 = mlp(in_dim, spec.hidden, spec.critic_layers, 1)
        self.apply(weight_init)

    def forward(self, obs_feat: Tensor, goal_feat: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        h = torch.cat([goal_feat, obs_feat, action.repeat(1, self.tile)], dim=-1)
        return self.q1(h), self.q2(h)


class TruncatedNormal(torch.distributions.Normal):
    """DrQ-v2's exploration distribution: Normal(mu, std) whose samples are clipped to (-1, 1).

    `sample(clip)` clips the noise to +-clip first (std clip 0.3 in Table IV); the clamp to the action box keeps
    the gradient of the mean (straight-through), so the actor still learns from clamped samples.
    """

    def __init__(self, loc: Tensor, scale: Tensor | float, low: float = -1.0, high: float = 1.0,
                 eps: float = 1e-6) -> None:
        if not isinstance(scale, Tensor):
            scale = torch.full_like(loc, float(scale))
        super().__init__(loc, scale, validate_args=False)
        self.low, self.high, self.eps = low, high, eps

    def _clamp(self, x: Tensor) -> Tensor:
        clamped = torch.clamp(x, self.low + self.eps, self.high - self.eps)
        return x - x.detach() + clamped.detach()

    def sample(self, clip: float | None = None, sample_shape: torch.Size = torch.Size()) -> Tensor:  # noqa: B008
        shape = self._extended_shape(sample_shape)
        eps = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device) * self.scale
        if clip is not None:
            eps = torch.clamp(eps, -clip, clip)
        return self._clamp(self.loc + eps)


def log_prob_fixed_std(mu: Tensor, action: Tensor, std: float) -> Tensor:
    """Sum over action dims of log N(action; mu, std): the BC score the authors used (std 0.1).

    -log_prob = ||a - mu||^2 / (2 std^2) + d * (log std + log sqrt(2 pi)), i.e. 50*||a - mu||^2 + const at 0.1.
    """
    var = std * std
    return (-((action - mu) ** 2) / (2 * var) - math.log(std) - 0.5 * math.log(2 * math.pi)).sum(-1)


class ExpertNetworks(nn.Module):
    """Encoder + actor + critic of one expert, with the helpers both training and acting need."""

    def __init__(self, spec: NetworkSpec) -> None:
        super().__init__()
        self.spec = spec
        self.encoder = Encoder(spec)
        self.actor = Actor(spec)
        self.critic = Critic(spec)

    def features(self, obs: Tensor, goal: Tensor | None) -> tuple[Tensor, Tensor]:
        return self.encoder(obs), goal_features(self.encoder, self.spec, goal, obs)

    @torch.no_grad()
    def act_mean(self, obs: Tensor, goal: Tensor | None) -> Tensor:
        obs_feat, goal_feat = self.features(obs, goal)
        return self.actor(obs_feat, goal_feat)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
