"""Kitchen play data: record it by chaining scripted subtasks, and cut it into task snippets.

The paper's Kitchen demos are segments of the relay-policy-learning play data (566 human VR demos, each doing 4
elements in some order): "we roll out each demonstration to find the time step at which a task is completed ...
and divide each trajectory into task-specific snippets by considering the frames from after the previous task was
completed till the current one is completed". `segment()` does exactly that from the joint positions of a
trajectory (no re-simulation needed: completion depends only on the element joints), with PolyTask's strict
threshold by default (`threshold="loose"` reproduces the env's 0.3 rule).

The files it comes from are read and written by `polytask.learning.data.play_files`.
This module returns plain arrays (`Snippet`); `polytask.learning.data.kitchen_import` turns them into Episodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from polytask.sim import registry
from polytask.sim.kitchen_elements import (
    ELEMENTS,
    TASKS,
    completed_elements,
    loose_complete,
    strict_complete,
)
from polytask.sim.kitchen_scripted import make_expert

QPOS_DIM = 30
ACTION_DIM = 9
ELEMENT_TASK: dict[str, str] = {element: f"kitchen/{suffix}" for suffix, element, _ in TASKS}
RELAY_ENV_STEPS_PER_ACTION = 1  # relay / D4RL data: one action per env step (0.08 s)


class PlayFormatError(ValueError):
    """A play file does not have the expected keys, shapes or types; the message names the file and key."""


@dataclass
class PlayTrajectory:
    """One play trajectory: T actions between T+1 observations.

    `env_steps_per_action` says how many 0.08 s env steps each action lasted (1 for relay/D4RL data, the task's
    action_repeat for trajectories recorded here), so importers can resample to the agent's rate.
    """

    qpos: np.ndarray  # (T+1, 30)
    actions: np.ndarray  # (T, 9)
    states: np.ndarray | None = None  # (T+1, 59) FrankaKitchen-v1 observations, when known
    frames: np.ndarray | None = None  # (T+1, H, W, 3) uint8
    env_steps_per_action: int = 1
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = self.source or "play trajectory"
        self.qpos = _array(self.qpos, where, "qpos", ndim=2, cols=QPOS_DIM)
        self.actions = _array(self.actions, where, "actions", ndim=2, cols=ACTION_DIM)
        t = self.actions.shape[0]
        if self.qpos.shape[0] != t + 1:
            raise PlayFormatError(f"{where}: qpos has {self.qpos.shape[0]} rows, expected actions+1 = {t + 1}")
        if self.states is not None:
            self.states = _array(self.states, where, "states", ndim=2, cols=59)
            if self.states.shape[0] != t + 1:
                raise PlayFormatError(f"{where}: states has {self.states.shape[0]} rows, expected {t + 1}")
        if self.frames is not None:
            if not (isinstance(self.frames, np.ndarray) and self.frames.dtype == np.uint8 and self.frames.ndim == 4
                    and self.frames.shape[0] == t + 1 and self.frames.shape[3] == 3):
                shape = getattr(self.frames, "shape", None)
                raise PlayFormatError(f"{where}: frames must be uint8 ({t + 1}, H, W, 3), got {shape}")
        if not isinstance(self.env_steps_per_action, int) or self.env_steps_per_action < 1:
            raise PlayFormatError(f"{where}: env_steps_per_action={self.env_steps_per_action!r}, expected int >= 1")

    def __len__(self) -> int:
        return int(self.actions.shape[0])


@dataclass
class Snippet:
    """The part of a play trajectory from one completion to the next, labelled with the element it completes.

    Indices refer to the trajectory's observations: the snippet starts at observation `start` (the step after
    which the previous element was completed, or 0) and ends at `end`, the first observation where `element`
    counts as completed. `task` is the registry name, or None for an element that is not one of the six tasks
    (the hinge cabinet).
    """

    element: str
    task: str | None
    start: int
    end: int
    qpos: np.ndarray  # (n+1, 30)
    actions: np.ndarray  # (n, 9)
    states: np.ndarray | None
    frames: np.ndarray | None
    env_steps_per_action: int
    side_effects: list[str]  # other elements completed (loose rule) inside the snippet
    source: str = ""

    def __len__(self) -> int:
        return int(self.actions.shape[0])


def _array(value: Any, where: str, key: str, ndim: int, cols: int) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise PlayFormatError(f"{where}: key {key!r} is {type(value).__name__}, expected a numpy array")
    if value.ndim != ndim or value.shape[1] != cols:
        raise PlayFormatError(f"{where}: key {key!r} has shape {value.shape}, expected (*, {cols})")
    arr = value.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise PlayFormatError(f"{where}: key {key!r} contains NaN or inf")
    return arr


# --- segmentation ----------------------------------------------------------------------------------------------
def completion_events(qpos: np.ndarray, threshold: str = "strict",
                      elements: tuple[str, ...] = ELEMENTS) -> list[tuple[int, str]]:
    """(step, element) for the first step at which each element becomes complete, in time order.

    Elements already complete in the first observation are not events (nothing in the trajectory did them).
    """
    check = {"strict": strict_complete, "loose": loose_complete}.get(threshold)
    if check is None:
        raise ValueError(f"kitchen threshold {threshold!r} unknown; expected 'strict' or 'loose'")
    qpos = np.asarray(qpos)
    done_at_start = {e for e in elements if check(qpos[0], e)}
    events = []
    for e in elements:
        if e in done_at_start:
            continue
        hits = [t for t in range(1, qpos.shape[0]) if check(qpos[t], e)]
        if hits:
            events.append((hits[0], e))
    return sorted(events)


def segment(traj: PlayTrajectory, threshold: str = "strict") -> list[Snippet]:
    """Cut a play trajectory into one snippet per completed element (see module docstring)."""
    snippets = []
    start = 0
    for t, element in completion_events(traj.qpos, threshold):
        if t <= start:  # two elements completed on the same step: the second gets no frames of its own
            continue
        before = completed_elements(traj.qpos[start], "loose")
        after: set[str] = set()
        for k in range(start, t + 1):
            after |= {e for e in ELEMENTS if loose_complete(traj.qpos[k], e)}
        side = sorted((after - before) - {element})
        snippets.append(Snippet(
            element=element, task=ELEMENT_TASK.get(element), start=start, end=t,
            qpos=traj.qpos[start:t + 1], actions=traj.actions[start:t],
            states=None if traj.states is None else traj.states[start:t + 1],
            frames=None if traj.frames is None else traj.frames[start:t + 1],
            env_steps_per_action=traj.env_steps_per_action, side_effects=side, source=traj.source))
        start = t
    return snippets


# --- states and frames from joint positions ----------------------------------------------------------------------
def states_from_qpos(task, qpos: np.ndarray, dt: float) -> np.ndarray:
    """FrankaKitchen-v1 59-D observations for a qpos sequence: positions as given, velocities by finite
    differences over `dt` seconds (mj_differentiatePos handles the kettle's quaternion)."""
    import mujoco  # here: segmenting play files needs no simulator

    model = task.model
    qpos = np.asarray(qpos, dtype=np.float64)
    out = np.zeros((qpos.shape[0], 59), dtype=np.float32)
    qvel = np.zeros(model.nv)
    for i in range(qpos.shape[0]):
        if i > 0:
            mujoco.mj_differentiatePos(model, qvel, dt, qpos[i - 1], qpos[i])
        out[i] = np.concatenate([qpos[i, :9], qvel[:9], qpos[i, 9:], qvel[9:]])
    return out


def render_qpos(task, qpos: np.ndarray) -> np.ndarray:
    """Frames of a qpos sequence, rendered by setting the simulator state (kinematic playback, no dynamics)."""
    import mujoco  # here: segmenting play files needs no simulator

    saved_qpos, saved_qvel = task.data.qpos.copy(), task.data.qvel.copy()
    frames = []
    try:
        for q in np.asarray(qpos, dtype=np.float64):
            task.data.qpos[:] = q
            task.data.qvel[:] = 0.0
            mujoco.mj_forward(task.model, task.data)
            frames.append(task._render())
    finally:
        task.data.qpos[:] = saved_qpos
        task.data.qvel[:] = saved_qvel
        mujoco.mj_forward(task.model, task.data)
    return np.stack(frames).astype(np.uint8)


# --- recording play data here ------------------------------------------------------------------------------------
def record_play(elements: list[str] | tuple[str, ...], *, seed: int = 0, render: bool = False,
                init_noise: float = 0.0, max_steps_per_element: int = 160, settle_steps: int = 6,
                quality: str = "fast") -> PlayTrajectory:
    """One play trajectory that does `elements` in order with the scripted experts, one after the other.

    Each expert after the first starts from wherever the previous one left the arm and first brings the hand back
    to its start pose (`make_expert(..., from_anywhere=True)`); it hands over once its element is strictly complete
    and it has been on its last waypoint (backing off) for `settle_steps` steps, or after `max_steps_per_element`.
    `extra["achieved"]` lists the elements that were strictly complete at some step of their own subtask (the
    segmenter does not use it).
    """
    for e in elements:
        if e not in ELEMENT_TASK:
            raise ValueError(f"play element {e!r} has no scripted expert; expected one of {sorted(ELEMENT_TASK)}")
    task = registry.make(ELEMENT_TASK[elements[0]], render=render, quality=quality, init_noise=init_noise,
                         horizon=10**6)
    try:
        step = task.reset(seed=seed)
        qpos, states, actions, frames = [task.data.qpos.copy()], [step.state], [], [step.pixels]
        achieved = []
        for i, element in enumerate(elements):
            expert = make_expert(element, task, from_anywhere=i > 0)
            settled, hit = 0, False
            for _ in range(max_steps_per_element):
                action = expert.act()
                step = task.step(action)
                actions.append(action)
                qpos.append(task.data.qpos.copy())
                states.append(step.state)
                frames.append(step.pixels)
                done = strict_complete(task.data.qpos, element)
                hit = hit or done
                if done and expert.index == len(expert.waypoints) - 1:
                    settled += 1
                    if settled >= settle_steps:
                        break
            if hit:
                achieved.append(element)
        return PlayTrajectory(
            qpos=np.stack(qpos), actions=np.stack(actions).astype(np.float64), states=np.stack(states),
            frames=np.stack(frames) if render else None, env_steps_per_action=task.spec.action_repeat,
            source=f"scripted-play:{'+'.join(elements)}:seed{seed}",
            extra={"elements": list(elements), "achieved": achieved, "seed": seed})
    finally:
        task.close()
