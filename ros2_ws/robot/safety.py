"""The command guard: the only path from an action message to an arm target.

Rules (the arm never gets a bad command):
- A command must have exactly `action_dim` finite values, each within [-1, 1]; anything else is refused, counted
  by reason, and the arm holds (a refused command also cancels the previous one, so it is never repeated).
- A command carries the time of the observation (camera frame) it was computed from. One computed from an
  observation older than `max_observation_age_s` is refused (`old_observation`): the arm has moved since that
  frame, so the command answers a world that is gone. A zero stamp (never set) or one in the future of the
  receiver's clock (publisher and receiver on different clocks, e.g. `use_sim_time` on one side only) is refused
  as `stamp`. An accepted command stays applicable only while its observation is younger than the limit, so it
  is never repeated past it at later ticks either.
- Accepted Δxyz is scaled to at most `max_step_m` (2.5 cm) per axis and per control step.
- The resulting target is clamped into the workspace box; clamping is counted.
- A command older than `command_timeout_s` (by arrival) is stale: the arm holds its target (the watchdog), counted
  once per stale episode.
- While the guard is `locked` (e-stop, SDK error, not connected) nothing is accepted.

The guard is pure Python + numpy and takes the clock as an argument, so tests drive it with exact times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

REFUSAL_REASONS = ("length", "nonfinite", "range", "locked", "malformed", "stamp", "old_observation")
FUTURE_TOLERANCE_S = 0.05  # clock skew between two synchronised machines that still counts as "now"
OTHER_CLOCK_S = 86400.0  # an age beyond a day means the stamp comes from another clock, not a slow frame


@dataclass(frozen=True)
class GuardConfig:
    action_dim: int = 4  # [dx, dy, dz, gripper]
    max_step_m: float = 0.025
    workspace_low: tuple[float, float, float] = (-math.inf, -math.inf, -math.inf)
    workspace_high: tuple[float, float, float] = (math.inf, math.inf, math.inf)
    command_timeout_s: float = 0.5
    max_observation_age_s: float = 0.5  # a command computed from an older frame is refused
    range_tolerance: float = 1e-6  # float32 round-off around +-1 is not "out of range"

    def __post_init__(self) -> None:
        if self.action_dim < 3:
            raise ValueError(f"GuardConfig.action_dim {self.action_dim}: expected >= 3 (dx, dy, dz[, gripper])")
        if not 0 < self.max_step_m <= 0.05:
            raise ValueError(f"GuardConfig.max_step_m {self.max_step_m}: expected in (0, 0.05] metres")
        if not self.command_timeout_s > 0:
            raise ValueError(f"GuardConfig.command_timeout_s {self.command_timeout_s}: expected > 0 seconds")
        if not self.max_observation_age_s > 0:
            raise ValueError(f"GuardConfig.max_observation_age_s {self.max_observation_age_s}: expected > 0 seconds")
        lo, hi = np.asarray(self.workspace_low, float), np.asarray(self.workspace_high, float)
        if lo.shape != (3,) or hi.shape != (3,) or np.any(np.isnan(lo)) or np.any(np.isnan(hi)) or np.any(lo >= hi):
            raise ValueError(f"GuardConfig workspace low {self.workspace_low} / high {self.workspace_high}: expected "
                             "3 values each with low < high on every axis")


@dataclass
class Verdict:
    accepted: bool
    reason: str = ""  # one of REFUSAL_REASONS when refused
    detail: str = ""


@dataclass(frozen=True)
class Observed:
    """When the observation a command answers was taken, and the receiver's time now, on one clock (the node's:
    ROS time, or sim time under use_sim_time), in seconds."""

    stamp_s: float
    now_s: float

    @property
    def age_s(self) -> float:
        return self.now_s - self.stamp_s


def observation_verdict(observed: Observed, max_age_s: float) -> Verdict:
    """Accept a command's observation stamp, or say why not (`stamp` or `old_observation`). One rule for every
    receiver of commands (the xArm driver's guard, the sim bridge)."""
    if observed.stamp_s <= 0.0:
        return Verdict(False, "stamp", "header.stamp is zero: the publisher did not stamp the action with the time "
                                       "of the observation it answers (or it runs use_sim_time without a /clock)")
    age = observed.age_s
    if age < -FUTURE_TOLERANCE_S:
        return Verdict(False, "stamp", f"header.stamp is {-age:.3f} s in the future of this node's clock: publisher "
                                       "and receiver run on different clocks (use_sim_time set on one side only?)")
    if age > max_age_s:
        other = " (that is another clock, not a slow frame: use_sim_time set on one side only?)" \
            if age > OTHER_CLOCK_S else ""
        return Verdict(False, "old_observation", f"computed from an observation {age:.3f} s old; the limit "
                                                 f"(max_observation_age_s) is {max_age_s:g} s{other}")
    return Verdict(True)


@dataclass
class Plan:
    """What the arm should do at this control tick."""

    target: np.ndarray  # xyz metres, inside the workspace
    gripper: float | None  # [-1, 1] or None to keep
    moving: bool  # a fresh command was applied
    stale: bool  # no fresh command: holding
    clamped: bool


@dataclass
class GuardCounters:
    accepted: int = 0
    refused: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REFUSAL_REASONS, 0))
    clamped: int = 0
    stale_events: int = 0
    applied: int = 0

    def as_dict(self) -> dict:
        return {"accepted": self.accepted, "refused": dict(self.refused), "refused_total": sum(self.refused.values()),
                "clamped": self.clamped, "stale_events": self.stale_events, "applied": self.applied}


class CommandGuard:
    def __init__(self, config: GuardConfig) -> None:
        self.config = config
        self.low = np.asarray(config.workspace_low, dtype=np.float64)
        self.high = np.asarray(config.workspace_high, dtype=np.float64)
        self.counters = GuardCounters()
        self.locked = False
        self._command: np.ndarray | None = None
        self._command_expiry = -math.inf
        self._was_stale = True

    # --- input ------------------------------------------------------------------------------------------------------
    def submit(self, values, now: float, observed: Observed | None = None) -> Verdict:
        """Check a command; on acceptance it becomes the latest command (applied at the following ticks).

        `now` is the guard's clock (the watchdog's); `observed` the command's observation stamp and the
        receiver's time, both on the node clock (None: not judged, for callers without stamps)."""
        verdict = self._check(values, observed)
        if not verdict.accepted:
            return self.refuse(verdict)
        self.counters.accepted += 1
        self._command = np.asarray(values, dtype=np.float64).reshape(-1).copy()
        life = self.config.command_timeout_s
        if observed is not None:  # never applied once its observation passes the limit
            life = min(life, self.config.max_observation_age_s - observed.age_s)
        self._command_expiry = now + life
        return verdict

    def refuse(self, verdict: Verdict) -> Verdict:
        """Count a refusal (found here or by the caller, e.g. a malformed message) and cancel the last command."""
        self.counters.refused[verdict.reason] += 1
        self.cancel()
        return verdict

    def _check(self, values, observed: Observed | None = None) -> Verdict:
        if self.locked:
            return Verdict(False, "locked", "the arm is stopped (e-stop, error or not connected); reset first")
        try:
            arr = np.asarray(values, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as err:
            return Verdict(False, "nonfinite", f"not numbers: {err}")
        n = self.config.action_dim
        if arr.shape[0] != n:
            return Verdict(False, "length", f"{arr.shape[0]} values, expected {n}")
        if not np.all(np.isfinite(arr)):
            return Verdict(False, "nonfinite", f"NaN or inf in {arr.tolist()}")
        limit = 1.0 + self.config.range_tolerance
        if np.any(np.abs(arr) > limit):
            return Verdict(False, "range", f"values {arr.tolist()} outside [-1, 1]")
        if observed is not None:
            return observation_verdict(observed, self.config.max_observation_age_s)
        return Verdict(True)

    def cancel(self) -> None:
        """Forget the latest command (the arm holds from the next tick)."""
        self._command = None
        self._command_expiry = -math.inf

    def lock(self) -> None:
        self.locked = True
        self.cancel()

    def unlock(self) -> None:
        self.locked = False
        self.cancel()

    # --- output -----------------------------------------------------------------------------------------------------
    def is_stale(self, now: float) -> bool:
        return self._command is None or now > self._command_expiry

    def clamp(self, target) -> tuple[np.ndarray, bool]:
        t = np.asarray(target, dtype=np.float64).reshape(3)
        c = np.clip(t, self.low, self.high)
        return c, bool(np.any(c != t))

    def plan(self, current_target, now: float) -> Plan:
        """The target for this tick: current + scaled Δ of a fresh command, else hold (watchdog)."""
        held = np.asarray(current_target, dtype=np.float64).reshape(3)  # holding never moves the arm
        if self.locked or self.is_stale(now):
            if not self._was_stale and not self.locked:
                self.counters.stale_events += 1
            self._was_stale = True
            return Plan(target=held, gripper=None, moving=False, stale=True, clamped=False)
        self._was_stale = False
        cmd = self._command
        delta = np.clip(cmd[:3], -1.0, 1.0) * self.config.max_step_m
        target, clamped = self.clamp(held + delta)
        # An arm that starts outside the box re-enters it at most max_step_m per axis per tick, never in a jump.
        step = self.config.max_step_m
        target = held + np.clip(target - held, -step, step)
        self.counters.clamped += int(clamped)
        self.counters.applied += 1
        gripper = float(np.clip(cmd[3], -1.0, 1.0)) if cmd.shape[0] > 3 else None
        return Plan(target=target, gripper=gripper, moving=True, stale=False, clamped=clamped)
