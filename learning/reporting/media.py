"""Videos and contact sheets of episodes, written atomically (OpenCV ships its own encoder; no ffmpeg needed)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from polytask.learning.data.atomic import atomic_path

VIDEO_FPS = 20.0  # evaluation videos and `polytask inspect --video` alike


def write_video(frames: np.ndarray | list[np.ndarray], path: str | os.PathLike, fps: float = VIDEO_FPS,
                scale: int = 3) -> Path:
    """RGB uint8 frames (T, H, W, 3) -> an .mp4 file, upscaled `scale`x with nearest pixels so 84x84 is visible."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"video {path}: frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    h, w = frames.shape[1] * scale, frames.shape[2] * scale
    with atomic_path(path) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        if not writer.isOpened():
            raise OSError(f"video {path}: OpenCV could not open an mp4 writer")
        try:
            for frame in frames:
                big = cv2.resize(frame, (w, h), interpolation=cv2.INTER_NEAREST)
                writer.write(cv2.cvtColor(big, cv2.COLOR_RGB2BGR))
        finally:
            writer.release()
    return Path(path)


def contact_sheet(frames: np.ndarray, path: str | os.PathLike, columns: int = 8, count: int = 16,
                  scale: int = 2) -> Path:
    """A PNG grid of `count` frames spread evenly over the episode (first and last included)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"contact sheet {path}: frames must be (T, H, W, 3), got {frames.shape}")
    idx = np.unique(np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int))
    picked = [cv2.resize(frames[i], None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST) for i in idx]
    for tile, i in zip(picked, idx, strict=True):
        cv2.putText(tile, str(i), (2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1, cv2.LINE_AA)
    columns = min(columns, len(picked))
    rows = -(-len(picked) // columns)
    blank = np.zeros_like(picked[0])
    picked += [blank] * (rows * columns - len(picked))
    grid = np.vstack([np.hstack(picked[r * columns:(r + 1) * columns]) for r in range(rows)])
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)):
            raise OSError(f"contact sheet {path}: could not encode PNG")
    return Path(path)
