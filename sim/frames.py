"""A camera frame -> the policy's input, in ONE function: the camera node, the simulated suites, the teleop
recorder, the online trainer and the policy server all call `prepare_frame`, so the frames a policy is trained on
and the frames it is deployed on go through the same crop and the same resize and cannot drift apart.

The rule: crop to `crop` = [x, y, w, h] when given (clipped to the frame, `crop_box`; the authors crop the robot
camera to the work area), then resize to `size` x `size` (or `(height, width)`, for a camera that publishes a
non-square frame) with INTER_AREA (an area average: no aliasing when 640x480 becomes 84x84). A frame that needs
neither is returned unchanged, which is the case for every simulated suite (they render at `TaskSpec.image_size`).
It lives in sim/, the lowest layer, so that every layer above may import it.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def crop_box(frame_shape: Sequence[int], crop: Sequence[int] | None) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the part of a frame of `frame_shape` (h, w, ...) that `crop` = [x, y, w, h] keeps, clipped
    to the frame; the whole frame without a crop. Also what the camera's calibration is shifted by."""
    fh, fw = int(frame_shape[0]), int(frame_shape[1])
    if not crop:
        return 0, 0, fw, fh
    if len(crop) != 4 or min(crop[2], crop[3]) < 1:
        raise ValueError(f"crop must be [x, y, w, h] with w, h >= 1, got {list(crop)}")
    x, y, w, h = (int(v) for v in crop)
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, fw), min(y + h, fh)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"crop {list(crop)} lies outside the {fw}x{fh} frame")
    return x0, y0, x1, y1


def prepare_frame(frame: np.ndarray, size: int | tuple[int, int], crop: Sequence[int] | None = None) -> np.ndarray:
    """`frame` (uint8 HxWx3 RGB) cropped and resized to size x size (or to (height, width)); errors name what was
    wrong."""
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"camera frame must be uint8 HxWx3 RGB, got {frame.dtype} {frame.shape}")
    height, width = (size, size) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
    if min(height, width) < 1:
        raise ValueError(f"frame size must be >= 1, got {size}")
    if crop:
        x0, y0, x1, y1 = crop_box(frame.shape, crop)
        frame = frame[y0:y1, x0:x1]
    if frame.shape[:2] != (height, width):
        frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(frame)
