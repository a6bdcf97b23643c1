"""Import the authors' demonstrations and replay episodes into the episode store.

Their demo file is a pickle of `[pixels, states, actions, rewards]`, arrays shaped [N, T, ...] with pixels uint8,
channels-first and frame-stacked (the newest frame in the last 3 channels). A pickle can execute code, so it is
read with data/safe_pickle.py, which only reconstructs numpy arrays and plain containers. Their replay episodes
are DrQ-v2 `.npz` files (observation, action, reward, discount).

Alignment: their arrays hold observation t and action t for t < T; the store needs the observation after each
action, so episode k keeps T observations and the first T-1 actions (the last action's outcome is unknown).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from polytask.learning.data.episodes import Episode, EpisodeStore
from polytask.learning.data.safe_pickle import safe_load_pickle


def import_authors_demos(path: str | Path, task: str, task_id: int, store: EpisodeStore,
                         frame_channels: int = 3) -> list[Path]:
    """Convert one demo pickle into store episodes (all marked successful: they are the authors' demos)."""
    obj = safe_load_pickle(path, "demo pickle")
    if not isinstance(obj, (list, tuple)) or len(obj) != 4:
        raise ValueError(f"{path}: expected a list [pixels, states, actions, rewards], got {type(obj).__name__}"
                         f" of length {len(obj) if hasattr(obj, '__len__') else '?'}")
    pixels, states, actions, rewards = (np.asarray(a) for a in obj)
    n = len(actions)
    for name, arr in (("pixels", pixels), ("states", states), ("rewards", rewards)):
        if len(arr) != n:
            raise ValueError(f"{path}: {name} holds {len(arr)} demos but actions hold {n}")
    written = []
    for k in range(n):
        px = np.asarray(pixels[k])
        if px.ndim != 4 or px.dtype != np.uint8 or px.shape[1] % frame_channels:
            raise ValueError(f"{path}: demo {k} pixels must be uint8 [T, C*stack, H, W], got {px.dtype} {px.shape}")
        frames = np.ascontiguousarray(px[:, -frame_channels:].transpose(0, 2, 3, 1))
        st = np.asarray(states[k], dtype=np.float32).reshape(len(px), -1)
        act = np.asarray(actions[k], dtype=np.float32)[:-1]
        rew = np.asarray(rewards[k], dtype=np.float32).reshape(-1)[:-1]
        episode = Episode(task=task, task_id=task_id, state=st, pixels=frames, action=np.clip(act, -1, 1),
                          reward=rew, success=np.zeros(len(act), dtype=bool), episode_success=True, score=1.0,
                          goal_pixels=frames[-1].copy(), source="imported", extra={"from": str(path), "demo": k})
        written.append(store.append(episode))
    return written


def import_drqv2_episode(path: str | Path, task: str, task_id: int, store: EpisodeStore) -> Path:
    """Convert one DrQ-v2 replay `.npz` (observation [T+1, C, H, W] or state, action [T+1, A] with a dummy first
    row, reward [T+1, 1]) into a store episode."""
    with np.load(path, allow_pickle=False) as data:
        missing = {"observation", "action", "reward"} - set(data.files)
        if missing:
            raise ValueError(f"{path}: missing keys {sorted(missing)} of a DrQ-v2 episode")
        obs, act, rew = data["observation"], data["action"], data["reward"]
    act = np.asarray(act[1:], dtype=np.float32)
    rew = np.asarray(rew[1:], dtype=np.float32).reshape(-1)
    if obs.ndim == 4:
        frames = np.ascontiguousarray(obs[:, -3:].transpose(0, 2, 3, 1)).astype(np.uint8)
        state = np.zeros((len(obs), 0), dtype=np.float32)
    else:
        frames, state = None, np.asarray(obs, dtype=np.float32)
    episode = Episode(task=task, task_id=task_id, state=state, pixels=frames, action=np.clip(act, -1, 1),
                      reward=rew, success=np.zeros(len(act), dtype=bool), source="imported",
                      extra={"from": str(path)})
    return store.append(episode)
