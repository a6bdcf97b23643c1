"""A scripted joystick operator: a task's scripted expert, played through the teleop recorder's real Joy topic.

Why: the teleop path (Joy -> teleop recorder -> arm -> episode store) must be exercised end to end on every
simulated xArm task without a person at a gamepad. The operator reads the task state the arm publishes
(`robot/task_state`), asks the task's scripted expert for an action (the experts read the state alone), turns it
into stick deflections and buttons with the inverse of the recorder's mapping (polytask.robot.teleop.JoyMapping),
and streams `sensor_msgs/Joy` the way a joystick driver does; buttons start and save episodes as an operator
presses them. The recorder cannot tell it from a person: what it stores is a joystick recording.

Like a person it moves the sticks gently (`HAND_GAIN`): the loop Joy -> recorder tick -> driver tick -> task
state lags one to three control ticks behind, and the experts' full-gain steering (one tick of motion per tick of
error) rings under that lag instead of settling. Played through a state delayed by d ticks, drawer-close-left
succeeds 10 of 10 seeds at d = 0 but 0 of 10 at d = 1 with full gain; at 0.35 every xArm task succeeds on 10 of 10
seeds up to d = 3 (one task 9 of 10 at d = 3), but a loaded test machine lags more: at d = 4, 0.35 fails
drawer-close-left 10 of 10 and pour-left 8 of 10, while 0.25 succeeds on both 10 of 10 within 80 ticks.

Used by tests/test_ros_graph_teleop_tasks.py on a `Probe` (polytask.ros.testing).
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from polytask.robot.teleop import JoyMapping
from polytask.sim.task import Step


def mapping_from_params(params: dict[str, Any]) -> JoyMapping:
    """The recorder's JoyMapping from its parameters (`axes`, `axis_signs`, `deadzone`, `button_gripper`)."""
    return JoyMapping(
        tuple(params["axes"]), tuple(params["axis_signs"]), float(params["deadzone"]), int(params["button_gripper"])
    )


HAND_GAIN = 0.25  # the operator's stick deflection per unit of the expert's Δxyz (stable up to 4 ticks of lag)


def gentle_expert_action(expert, state: np.ndarray, hand_gain: float = HAND_GAIN) -> np.ndarray:
    """`expert`'s scripted action for `state` with its Δxyz scaled by `hand_gain` (the tool value as is)."""
    step = Step(state=state, pixels=None, reward=0.0, success=False, terminal=False, truncated=False, goal=expert.goal)
    action = np.asarray(expert.scripted_action(step), dtype=np.float32).copy()
    action[:3] *= hand_gain
    return action


class ScriptedOperator:
    """Streams Joy from `task`'s scripted expert on `probe`'s ROS domain; presses buttons on request."""

    def __init__(
        self,
        probe,
        task: str,
        mapping: JoyMapping,
        buttons: dict[str, int],
        n_axes: int = 8,
        n_buttons: int = 12,
        hand_gain: float = HAND_GAIN,
    ) -> None:
        from sensor_msgs.msg import Joy

        from polytask.sim import registry

        self.probe, self.mapping, self.buttons = probe, mapping, buttons
        self.n_axes, self.n_buttons = n_axes, n_buttons
        if not 0.0 < hand_gain <= 1.0:
            raise ValueError(f"ScriptedOperator: hand_gain {hand_gain}: expected in (0, 1]")
        self.hand_gain = hand_gain
        self._Joy = Joy
        self.expert = registry.make(task, render=False)  # only its scripted_action (reads the state given) is used
        self.pub = probe.publisher("joy")
        self.states = probe.subscribe("task_state")
        self.successes = probe.subscribe("success")
        self.status = probe.subscribe("recorder_status")
        self.actions: list[np.ndarray] = []  # the expert actions the operator asked for, in order

    def recorder(self) -> dict:
        return json.loads(self.status[-1][1].data) if self.status else {}

    def expert_action(self) -> np.ndarray:
        """The gentle operator's action for the last task state the arm published."""
        return gentle_expert_action(self.expert, np.asarray(self.states[-1][1].data, dtype=np.float32), self.hand_gain)

    def _joy(self, action: np.ndarray | None, press: str | None):
        if action is None:
            axes, buttons = [0.0] * self.n_axes, [0] * self.n_buttons
        else:
            axes, buttons = self.mapping.joy_for_action(action, self.n_axes, self.n_buttons)
        if press is not None:
            buttons[self.buttons[press]] = 1
        return self._Joy(axes=axes, buttons=buttons)

    def stream(self, seconds: float, drive: bool, until=None, press: str | None = None, rate_hz: float = 20.0) -> bool:
        """Publish Joy at `rate_hz` for up to `seconds`: the expert's action (`drive`) or the sticks at rest; a
        `press` is released first, then held for the whole stream. Returns whether `until()` became true."""
        end = time.monotonic() + seconds
        first = press is not None
        while time.monotonic() < end:
            action = None
            if drive and self.states:
                action = self.expert_action()
                self.actions.append(action)
            if first:  # a press is a rising edge: released first, then held for the rest of the stream
                self.pub.publish(self._joy(action, None))
                self.probe.spin(0.02)
                first = False
            self.pub.publish(self._joy(action, press))
            self.probe.spin(1.0 / rate_hz)
            if until is not None and until():
                return True
        return until is None

    def succeeded_for(self, ticks: int) -> bool:
        """The arm's last `ticks` success signals were all true (the task is done and stays done)."""
        recent = self.successes[-ticks:]
        return len(recent) == ticks and all(bool(m.data) for _, m in recent)

    def close(self) -> None:
        self.expert.close()
