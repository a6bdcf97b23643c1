"""The command guard: the only path from an action message to an arm target.

Rules (issue 6, "the arm never gets a bad command"):
- A command must have exactly `action_dim` finite values, each within [-1, 1]; anything else is refused, counted
  by reason, and the arm holds (a refused command also cancels the previous one, so it is never repeated).
- Accepted Δxyz is scaled to at most `max_step_m` (2.5 cm) per axis and per control step.
- The resulting target is clamped into the workspace box; clamping is counted.
- A command older than `command_timeout_s` is stale: the arm holds its target (the watchdog), counted once per
  stale episode.
- While the guard is `locked` (e-stop, SDK error, not connected) nothing is accepted.

The guard is pure Python + numpy and takes the clock as an argument, so tests drive it with exact times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

REFUSAL_REASONS = ("length", "nonfinite", "range", "locked")


@dataclass(frozen=True)
class GuardConfig:
    action_dim: int = 4  # [dx, dy, dz, gripper]
    max_step_m: float = 0.025
    workspace_low: tuple[float, float, float] = (-math.inf, -math.inf, -math.inf)
    workspace_high: tuple[float, float, float] = (math.inf, math.inf, math.inf)
    command_timeout_s: float = 0.5
    range_tolerance: float = 1e-6  # float32 round-off around +-1 is not "out of range"

    def __post_init__(self) -> None:
        if self.action_dim < 3:
            raise ValueError(f"GuardConfig.action_dim {self.action_dim}: expected >= 3 (dx, dy, dz[, gripper])")
        if not 0 < self.max_step_m <= 0.05:
            raise ValueError(f"GuardConfig.max_step_m {self.max_step_m}: expected in (0, 0.05] metres")
        if not self.command_timeout_s > 0:
            raise ValueError(f"GuardConfig.command_timeout_s {self.command_timeout_s}: expected > 0 seconds")
        lo, hi = np.asarray(self.workspace_low, float), np.asarray(self.workspace_high, float)
        if lo.shape != (3,) or hi.shape != (3,) or np.any(np.isnan(lo)) or np.any(np.isnan(hi)) or np.any(lo >= hi):
            raise ValueError(f"GuardConfig workspace low {self.workspace_low} / high {self.workspace_high}: expected "
                             "3 values each with low < high on every axis")


@dataclass
class Verdict:
    accepted: bool
    reason: str = ""  # one of REFUSAL_REASONS when refused
    detail: str = ""


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
        self._command_time = -math.inf
        self._was_stale = True

    # --- input ------------------------------------------------------------------------------------------------------
    def submit(self, values, now: float) -> Verdict:
        """Check a command; on acceptance it becomes the latest command (applied at the following ticks)."""
        verdict = self._check(values)
        if verdict.accepted:
            self.counters.accepted += 1
            self._command = np.asarray(values, dtype=np.float64).reshape(-1).copy()
            self._command_time = now
        else:
            self.counters.refused[verdict.reason] += 1
            self.cancel()
        return verdict

    def _check(self, values) -> Verdict:
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
        return Verdict(True)

    def cancel(self) -> None:
        """Forget the latest command (the arm holds from the next tick)."""
        self._command = None
        self._command_time = -math.inf

    def lock(self) -> None:
        self.locked = True
        self.cancel()

    def unlock(self) -> None:
        self.locked = False
        self.cancel()

    # --- output -----------------------------------------------------------------------------------------------------
    def is_stale(self, now: float) -> bool:
        return self._command is None or now - self._command_time > self.config.command_timeout_s

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
