"""The joystick -> action mapping of the teleop recorder, and its inverse (no ROS).

Forward (`action`): three stick axes -> Δxyz in [-1, 1] (per-axis sign and gain, then a dead zone rescaled so the
output is continuous: |v| <= deadzone gives 0, full deflection still gives full speed), one held button -> the
4th value +1 (gripper closed / the task's tool engaged), released -1.

Inverse (`joy_for_action`): the stick deflections and buttons that make `action` give back the action asked for
(up to float rounding; a tool value > 0 presses the button). A scripted operator uses it to drive the real
recorder on the real Joy topic with a task's scripted expert, so its demonstrations are stored like any joystick
recording.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class JoyMapping:
    axes: tuple[int, int, int] = (1, 0, 4)  # Joy axis index for dx, dy, dz
    axis_signs: tuple[float, float, float] = (1.0, 1.0, 1.0)  # sign (and gain) for dx, dy, dz
    deadzone: float = 0.1
    button_tool: int = 5  # held -> +1, released -> -1; -1 disables (always -1)

    def __post_init__(self) -> None:
        if len(self.axes) != 3 or len(self.axis_signs) != 3 or min(self.axes) < 0:
            raise ValueError(
                f"JoyMapping: axes {self.axes} / axis_signs {self.axis_signs}: expected 3 axis indices >= 0 and 3 signs"
            )
        if not all(np.isfinite(s) and 0 < abs(s) <= 1.0 for s in self.axis_signs):
            raise ValueError(f"JoyMapping: axis_signs {self.axis_signs}: expected non-zero values in [-1, 1]")
        if not 0.0 <= self.deadzone < 1.0:
            raise ValueError(f"JoyMapping: deadzone {self.deadzone}: expected in [0, 1)")

    @property
    def axes_needed(self) -> int:
        return max(self.axes) + 1

    def action(self, axes, buttons) -> np.ndarray:
        """The 4-D action of one Joy message; raises ValueError when the needed axes are missing or not finite."""
        a = np.asarray(axes, dtype=np.float64).reshape(-1)
        if a.shape[0] < self.axes_needed or not np.all(np.isfinite(a[: self.axes_needed])):
            raise ValueError(
                f"Joy message with {a.shape[0]} axes (values {a.tolist()[:8]}): expected at least "
                f"{self.axes_needed} finite axes"
            )
        raw = np.clip(a[list(self.axes)], -1.0, 1.0) * np.asarray(self.axis_signs)
        mag = np.clip((np.abs(raw) - self.deadzone) / (1.0 - self.deadzone), 0.0, 1.0)
        b = list(buttons)
        pressed = 0 <= self.button_tool < len(b) and bool(b[self.button_tool])
        return np.array([*(np.sign(raw) * mag), 1.0 if pressed else -1.0], dtype=np.float32)

    def joy_for_action(self, action, n_axes: int = 8, n_buttons: int = 12) -> tuple[list[float], list[int]]:
        """(axes, buttons) of a Joy message whose `action()` is `action` (4 values in [-1, 1])."""
        act = np.asarray(action, dtype=np.float64).reshape(-1)
        if act.shape[0] != 4 or not np.all(np.isfinite(act)):
            raise ValueError(f"JoyMapping.joy_for_action: expected 4 finite values, got {act.tolist()}")
        if n_axes < self.axes_needed or n_buttons <= max(self.button_tool, 0):
            raise ValueError(
                f"JoyMapping.joy_for_action: {n_axes} axes / {n_buttons} buttons cannot hold axes "
                f"{self.axes} and button {self.button_tool}"
            )
        xyz = np.clip(act[:3], -1.0, 1.0)
        mag = np.where(xyz == 0.0, 0.0, self.deadzone + np.abs(xyz) * (1.0 - self.deadzone))
        raw = np.sign(xyz) * mag
        axes = [0.0] * n_axes
        for index, sign, value in zip(self.axes, self.axis_signs, raw, strict=True):
            axes[index] = float(np.clip(value / sign, -1.0, 1.0))
        buttons = [0] * n_buttons
        if self.button_tool >= 0 and act[3] > 0.0:
            buttons[self.button_tool] = 1
        return axes, buttons
