"""Kitchen play data: record it by chaining scripted subtasks, load the original files, cut it into task snippets.

The paper's Kitchen demos are segments of the relay-policy-learning play data (566 human VR demos, each doing 4
elements in some order): "we roll out each demonstration to find the time step at which a task is completed ...
and divide each trajectory into task-specific snippets by considering the frames from after the previous task was
completed till the current one is completed". `segment()` does exactly that from the joint positions of a
trajectory (no re-simulation needed: completion depends only on the element joints), with PolyTask's strict
threshold by default (`threshold="loose"` reproduces the env's 0.3 rule).

Formats `load_play_file` reads (nothing is downloaded; a user points at files they have):
- relay-policy-learning parsed demos: a pickle of a dict with `observations` (T, >=30) and `actions` (T, 9) (the
  output of its `adept_envs/utils/parse_demos.py`). Read with a restricted unpickler that only rebuilds numpy
  arrays, dicts, lists and scalars, so a hostile file cannot run code.
- D4RL kitchen arrays: `.npz` (or `.hdf5` when h5py is installed) with `observations` (N, >=30), `actions` (N, 9)
  and optional `terminals` / `timeouts` that split the N rows into episodes.
- PolyTask's own play files (`save_play`): `.npz` with `qpos`, `actions`, optional `states`, `frames` and
  `env_steps_per_action`.
Observations of 59 columns are read as FrankaKitchen-v1's (qpos at [0:9] + [18:39]); otherwise the first 30
columns are the full qpos (robot 9 + objects 21), as in D4RL and relay-policy-learning.

This module returns plain arrays (`Snippet`); `polytask.learning.data.kitchen_import` turns them into Episodes.
"""

from __future__ import annotations

import io
import itertools
import os
import pickle
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from polytask.sim.kitchen_suite import (
    ELEMENTS,
    TASKS,
    completed_elements,
    loose_complete,
    strict_complete,
)

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
    import mujoco

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
    import mujoco

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
    from polytask.sim import registry
    from polytask.sim.kitchen_scripted import make_expert

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


def save_play(traj: PlayTrajectory, path: str | os.PathLike) -> None:
    """Write a trajectory as `.npz` atomically (temp file + rename)."""
    path = Path(path)
    arrays = {"qpos": traj.qpos, "actions": traj.actions,
              "env_steps_per_action": np.array(traj.env_steps_per_action)}
    if traj.states is not None:
        arrays["states"] = traj.states
    if traj.frames is not None:
        arrays["frames"] = traj.frames
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- loading files ------------------------------------------------------------------------------------------------
def qpos_from_observations(obs: np.ndarray, where: str = "observations") -> np.ndarray:
    """The 30-D qpos inside an observation array (see module docstring for the layouts)."""
    obs = np.asarray(obs)
    if obs.ndim != 2:
        raise PlayFormatError(f"{where}: observations have shape {obs.shape}, expected (T, D)")
    if obs.shape[1] == 59:
        return np.concatenate([obs[:, :9], obs[:, 18:39]], axis=1)
    if obs.shape[1] >= QPOS_DIM:
        return obs[:, :QPOS_DIM]
    raise PlayFormatError(f"{where}: observations have {obs.shape[1]} columns, expected 59 (FrankaKitchen-v1) "
                          f"or >= 30 (qpos first, D4RL / relay-policy-learning)")


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays and plain containers only; any other class in the file is refused."""

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"), ("builtins", "dict"), ("builtins", "list"), ("builtins", "tuple"),
        ("collections", "OrderedDict"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays and containers allowed")


def _load_pickle(path: Path) -> Any:
    data = path.read_bytes()
    try:
        return _ArrayOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError) as err:
        raise PlayFormatError(f"{path}: not a readable relay-policy-learning demo pickle ({err})") from err


def _episodes_from_arrays(obs: np.ndarray, actions: np.ndarray, ends: np.ndarray | None, where: str,
                          steps_per_action: int) -> list[PlayTrajectory]:
    """Split row-aligned (observation, action) pairs into trajectories. Row i holds o_i and a_i; the last row of an
    episode keeps its observation as the final one and drops its action (there is no o_{T+1})."""
    qpos = qpos_from_observations(obs, where)
    actions = np.asarray(actions)
    if actions.ndim != 2 or actions.shape[1] != ACTION_DIM or actions.shape[0] != qpos.shape[0]:
        raise PlayFormatError(f"{where}: actions have shape {actions.shape}, expected ({qpos.shape[0]}, 9)")
    n = qpos.shape[0]
    if ends is None:
        bounds = [(0, n)]
    else:
        cut = np.flatnonzero(np.asarray(ends, dtype=bool)) + 1
        edges = [0, *[int(c) for c in cut if c < n], n]
        bounds = [(a, b) for a, b in itertools.pairwise(edges) if b - a >= 2]
    trajs = []
    for i, (a, b) in enumerate(bounds):
        trajs.append(PlayTrajectory(qpos=qpos[a:b], actions=actions[a:b - 1], env_steps_per_action=steps_per_action,
                                    source=f"{where}#{i}"))
    return trajs


def load_play_file(path: str | os.PathLike) -> list[PlayTrajectory]:
    """Read one play file (formats in the module docstring) into trajectories."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"play file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in (".pkl", ".pickle"):
        data = _load_pickle(path)
        if not isinstance(data, dict) or "observations" not in data or "actions" not in data:
            keys = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise PlayFormatError(f"{path}: expected a dict with 'observations' and 'actions', got {keys}")
        return _episodes_from_arrays(np.asarray(data["observations"]), np.asarray(data["actions"]), None, str(path),
                                     RELAY_ENV_STEPS_PER_ACTION)
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError) as err:
            raise PlayFormatError(f"{path}: unreadable npz ({err})") from err
        if "qpos" in arrays:  # PolyTask's own play file
            try:
                return [PlayTrajectory(qpos=arrays["qpos"], actions=arrays["actions"], states=arrays.get("states"),
                                       frames=arrays.get("frames"),
                                       env_steps_per_action=int(arrays.get("env_steps_per_action", 1)),
                                       source=str(path))]
            except KeyError as err:
                raise PlayFormatError(f"{path}: missing key {err}") from err
        return _from_d4rl_dict(arrays, str(path))
    if suffix in (".hdf5", ".h5"):
        try:
            import h5py
        except ModuleNotFoundError as err:
            raise PlayFormatError(f"{path}: reading D4RL .hdf5 files needs h5py (pip install h5py), "
                                  "or export the arrays to .npz") from err
        with h5py.File(path, "r") as fh:
            arrays = {k: np.asarray(fh[k]) for k in ("observations", "actions", "terminals", "timeouts") if k in fh}
        return _from_d4rl_dict(arrays, str(path))
    raise PlayFormatError(f"{path}: unknown play file type {suffix!r}; expected .pkl, .npz or .hdf5")


def _from_d4rl_dict(arrays: dict[str, np.ndarray], where: str) -> list[PlayTrajectory]:
    for key in ("observations", "actions"):
        if key not in arrays:
            raise PlayFormatError(f"{where}: missing key {key!r} (have {sorted(arrays)})")
    ends = None
    for key in ("terminals", "timeouts"):
        if key in arrays:
            flag = np.asarray(arrays[key]).astype(bool).reshape(-1)
            ends = flag if ends is None else (ends | flag)
    return _episodes_from_arrays(arrays["observations"], arrays["actions"], ends, where, RELAY_ENV_STEPS_PER_ACTION)


def load_play_dir(folder: str | os.PathLike) -> list[PlayTrajectory]:
    """Every play file (.pkl/.npz/.hdf5) under a folder, recursively, in sorted path order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"play data folder {folder} does not exist")
    trajs = []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in (".pkl", ".pickle", ".npz", ".hdf5", ".h5") and not path.name.startswith(".tmp-"):
            trajs.extend(load_play_file(path))
    return trajs
