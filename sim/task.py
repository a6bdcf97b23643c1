"""The task interface every suite and the robot implement.

Trainers, recorders, evaluators and ROS nodes only ever see `Task`, `Step` and `TaskSpec`, so none of them
branches on the suite. A suite implements the single-step primitives (`_reset`, `_step`, `_render`) and its
scoring rule; action repeat, frame rendering and episode book-keeping live here, in one place.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from polytask.sim.frames import prepare_frame


@dataclass(frozen=True)
class Goal:
    """What a goal-conditioned policy is told about the task: an id within its suite, a name, an optional image."""

    task_id: int
    name: str
    image: np.ndarray | None = None  # uint8 HxWx3, the last frame of a successful demo when known


@dataclass(frozen=True)
class TaskSpec:
    """Static facts about a task that learners and stores need before the first step."""

    name: str  # registry name, e.g. "metaworld/door-open"
    suite: str  # "metaworld", "dmc", "kitchen", "xarm"
    task_id: int  # index of the task within its suite (one-hot / sinusoid goals)
    state_dim: int
    action_dim: int
    horizon: int  # agent steps per episode (after action repeat)
    action_repeat: int
    image_size: int = 84
    n_step: int = 3  # Table IV: 3 for Meta-World/DMC, 1 for Kitchen and the robot
    language: str = ""  # the sentence a language goal embeds
    has_success: bool = True  # False for suites scored by return alone (DMC): every demo episode is kept


@dataclass
class Step:
    """One agent step (after action repeat). `pixels` is the latest frame; frame stacking happens in learning."""

    state: np.ndarray
    pixels: np.ndarray | None
    reward: float
    success: bool  # the suite's success signal at this step (not yet the episode verdict)
    terminal: bool
    truncated: bool
    goal: Goal
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.terminal or self.truncated


class Task(abc.ABC):
    """Base class: action repeat, horizon, rendering on demand and episode scoring in one place."""

    spec: TaskSpec

    def __init__(self, spec: TaskSpec, render: bool = True) -> None:
        self.spec = spec
        self.render_pixels = render
        self.goal = Goal(task_id=spec.task_id, name=spec.name)
        self._t = 0
        self._episode_return = 0.0
        self._success_steps = 0
        self._episode_info: dict[str, Any] = {}

    # --- what a suite implements -----------------------------------------------------------------
    @abc.abstractmethod
    def _reset(self, seed: int | None) -> np.ndarray:
        """Reset the simulator and return the state vector."""

    @abc.abstractmethod
    def _step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Advance one simulator step with an action in [-1, 1]^d; return (state, reward, success, terminal, info)."""

    @abc.abstractmethod
    def _render(self) -> np.ndarray:
        """Return the current camera frame, uint8 HxWx3 of size spec.image_size."""

    def score(self) -> float:
        """The suite's score for the episode so far (default: success as 0/1). Suites override their rule."""
        return float(self._success_steps > 0)

    def episode_success(self) -> bool:
        return self.score() >= 1.0

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release simulator resources."""

    def scripted_action(self, step: Step) -> np.ndarray:
        """An expert action for the current state, for suites that ship a scripted expert."""
        raise NotImplementedError(f"task {self.spec.name} has no scripted expert")

    # --- the public interface --------------------------------------------------------------------
    def set_goal_image(self, image: np.ndarray | None) -> None:
        self.goal = Goal(task_id=self.spec.task_id, name=self.spec.name, image=image)

    def reset(self, seed: int | None = None) -> Step:
        self._t = 0
        self._episode_return = 0.0
        self._success_steps = 0
        self._episode_info = {}
        state = np.asarray(self._reset(seed), dtype=np.float32)
        return Step(state=state, pixels=self._frame(), reward=0.0, success=False, terminal=False,
                    truncated=False, goal=self.goal)

    def step(self, action: np.ndarray) -> Step:
        action = validate_action(action, self.spec)
        reward, success, terminal, info = 0.0, False, False, {}
        for _ in range(self.spec.action_repeat):
            state, r, s, terminal, info = self._step(action)
            reward += float(r)
            success = success or bool(s)
            if terminal:
                break
        self._t += 1
        self._episode_return += reward
        self._success_steps += int(success)
        self._episode_info = info
        truncated = not terminal and self._t >= self.spec.horizon
        return Step(state=np.asarray(state, dtype=np.float32), pixels=self._frame(), reward=reward,
                    success=success, terminal=terminal, truncated=truncated, goal=self.goal, info=info)

    def step_async(self, action: np.ndarray) -> Callable[[], Step]:
        """Start a step; the returned call gives its `Step`. Here the step is done at once; a task in an
        environment worker (sim/env_workers.py) steps while the caller does other work (the learner's update)."""
        step = self.step(action)
        return lambda: step

    @property
    def t(self) -> int:
        return self._t

    @property
    def episode_return(self) -> float:
        return self._episode_return

    def _frame(self) -> np.ndarray | None:
        """The camera frame as policies take it (a no-op for suites that render at `spec.image_size`)."""
        return prepare_frame(self._render(), self.spec.image_size) if self.render_pixels else None


def validate_action(action: Any, spec: TaskSpec) -> np.ndarray:
    """Refuse actions a robot must never receive: wrong length or non-finite. Values are clipped to [-1, 1]."""
    arr = np.asarray(action, dtype=np.float64).reshape(-1)
    if arr.shape[0] != spec.action_dim:
        raise ValueError(f"task {spec.name}: action has {arr.shape[0]} values, expected {spec.action_dim}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"task {spec.name}: action contains NaN or inf: {arr.tolist()}")
    return np.clip(arr, -1.0, 1.0).astype(np.float32)
