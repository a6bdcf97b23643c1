"""Kitchen play data on disk: the files `polytask.sim.kitchen_play` segments, read and written here.

Formats `load_play_file` reads (nothing is downloaded; a user points at files they have):
- relay-policy-learning parsed demos: a pickle of a dict with `observations` (T, >=30) and `actions` (T, 9) (the
  output of its `adept_envs/utils/parse_demos.py`), read with the safe unpickler (data/safe_pickle.py), so a
  hostile file cannot run code.
- D4RL kitchen arrays: `.npz` (or `.hdf5` when h5py is installed) with `observations` (N, >=30), `actions` (N, 9)
  and optional `terminals` / `timeouts` that split the N rows into episodes.
- PolyTask's own play files (`save_play`): `.npz` with `qpos`, `actions`, optional `states`, `frames` and
  `env_steps_per_action`.
Observations of 59 columns are read as FrankaKitchen-v1's (qpos at [0:9] + [18:39]); otherwise the first 30
columns are the full qpos (robot 9 + objects 21), as in D4RL and relay-policy-learning.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np

from polytask.learning.data.atomic import atomic_open
from polytask.learning.data.safe_pickle import safe_load_pickle
from polytask.sim.kitchen_play import ACTION_DIM, QPOS_DIM, RELAY_ENV_STEPS_PER_ACTION, PlayFormatError, PlayTrajectory


def save_play(traj: PlayTrajectory, path: str | os.PathLike) -> None:
    """Write a trajectory as `.npz` atomically (temp file + rename)."""
    path = Path(path)
    arrays = {"qpos": traj.qpos, "actions": traj.actions,
              "env_steps_per_action": np.array(traj.env_steps_per_action)}
    if traj.states is not None:
        arrays["states"] = traj.states
    if traj.frames is not None:
        arrays["frames"] = traj.frames
    with atomic_open(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)


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
        try:
            data = safe_load_pickle(path, "relay-policy-learning demo pickle")
        except ValueError as err:
            raise PlayFormatError(str(err)) from err
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
