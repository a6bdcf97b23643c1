"""Frame stacking in ONE place: replay sampling and policies acting online build the same network input.

Episodes store single frames (pixels (T+1, H, W, 3) uint8, state (T+1, D)). The network input at step t is the
last `k` observations t-k+1..t along the channel axis, oldest first; before the episode start the first frame is
repeated (what DrQ-v2's FrameStack wrapper does after a reset). If replay and acting stacked differently, a policy
would be trained on inputs it never sees when deployed; so both call `stack_window`.
"""

from __future__ import annotations

import numpy as np


def window_indices(t: np.ndarray | int, k: int) -> np.ndarray:
    """Indices of the k observations ending at t (clipped at 0): shape (..., k), oldest first."""
    t = np.asarray(t)
    return np.maximum(t[..., None] - np.arange(k - 1, -1, -1), 0)


def frames_chw(pixels: np.ndarray) -> np.ndarray:
    """Stored frames (T, H, W, 3) -> (T, 3, H, W), the in-memory layout stacking reads (one copy per episode, so a
    sampled window is a single gather and the channel stack a free reshape)."""
    if pixels.ndim != 4 or pixels.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got shape {pixels.shape}")
    return np.ascontiguousarray(np.moveaxis(pixels, -1, 1))


def stack_window(obs: np.ndarray, t: np.ndarray | int, k: int, pixels: bool) -> np.ndarray:
    """Network inputs at steps `t` of one episode's observations `obs`.

    pixels: obs (T+1, 3, H, W) uint8 (see `frames_chw`) -> (B, 3k, H, W) uint8 (or (3k, H, W) for a scalar t).
    states: obs (T+1, D) -> (B, D*k) float32 (or (D*k,)).
    """
    idx = window_indices(t, k)  # (..., k)
    win = obs[idx]  # (..., k, 3, H, W) or (..., k, D), a fresh contiguous array
    if pixels:
        if win.shape[-3] != 3:
            raise ValueError(f"pixel frames must be channels-first (T, 3, H, W), got {obs.shape}")
        return win.reshape(*win.shape[:-4], win.shape[-4] * 3, *win.shape[-2:])
    return win.reshape(*win.shape[:-2], -1).astype(np.float32, copy=False)


def stack_window_into(out: np.ndarray, obs: np.ndarray, t: np.ndarray, k: int) -> None:
    """`stack_window` written straight into `out` (a contiguous (n, 3k, H, W) or (n, D*k) slice of a batch): one
    gather, no temporary. Same indices, same layout, as `stack_window`."""
    view = out.reshape(out.shape[0], k, *obs.shape[1:])
    np.take(obs, window_indices(t, k), axis=0, out=view)


def goal_image_chw(image: np.ndarray) -> np.ndarray:
    """A goal frame (H, W, 3) uint8 -> (3, H, W); the encoder tiles it to the stacked layout."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"goal image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    return np.ascontiguousarray(np.moveaxis(image, -1, 0))


class FrameStacker:
    """Online counterpart of replay stacking: keeps the episode's last k observations and stacks them the same way."""

    def __init__(self, k: int, pixels: bool) -> None:
        if k < 1:
            raise ValueError(f"frame stack must be >= 1, got {k}")
        self.k = k
        self.pixels = pixels
        self._history: list[np.ndarray] = []

    def _prep(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs)
        return np.ascontiguousarray(np.moveaxis(obs, -1, 0)) if self.pixels else obs

    def reset(self, obs: np.ndarray) -> np.ndarray:
        """First observation of an episode: a frame (H, W, 3) or a state (D,)."""
        self._history = [self._prep(obs)]
        return self.current()

    def push(self, obs: np.ndarray) -> np.ndarray:
        if not self._history:
            raise RuntimeError("FrameStacker.push before reset")
        self._history.append(self._prep(obs))
        if len(self._history) > self.k:
            self._history.pop(0)
        return self.current()

    def current(self) -> np.ndarray:
        hist = np.stack(self._history)
        # The window ending at the last entry; indices clip at 0, i.e. the oldest kept frame is repeated, which
        # equals repeating the episode's first frame while fewer than k frames exist (older ones are dropped only
        # once k are held).
        return stack_window(hist, len(hist) - 1, self.k, self.pixels)
