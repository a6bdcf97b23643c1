"""What every training loop does before building networks: torch threads, the device, the seeds."""

from __future__ import annotations

import random

import torch


def prepare_torch(device: str, threads: int, seed: int) -> torch.device:
    """Set torch's CPU threads (0 leaves torch's default), check the device exists, seed torch and `random`.

    A CUDA device on a machine without one is refused here, naming the setting, rather than failing later inside
    the first tensor copy.
    """
    if threads > 0:
        torch.set_num_threads(threads)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"train.device is {device!r} but torch sees no CUDA device")
    torch.manual_seed(seed)
    random.seed(seed)
    return torch.device(device)
