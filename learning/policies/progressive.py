"""A progressive net as a `Policy`, and its one checkpoint format (whichever way the columns were trained).

The columns are tensors, the JSON header holds the column sizes and the task -> column map, so acting needs only the
task's name. `kind` says how the columns were trained: `progressive` (BC on relabelled data, distill/progressive.py)
or `progressive-rl` (RL + BC, rl/lifelong.py); both load the same way. Loading never unpickles anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polytask.learning.data.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_module,
    module_tensors,
    save_checkpoint,
)
from polytask.learning.nets.progressive import ProgressiveNet
from polytask.learning.policies.base import PolicyInputs
from polytask.sim.task import Step

KIND = "progressive"  # columns trained by BC on the relabelled data
RL_KIND = "progressive-rl"  # columns trained by RL + BC
KINDS = (KIND, RL_KIND)


def save_progressive(path: str | Path, net: ProgressiveNet, task_columns: Mapping[str, int], *, kind: str = KIND,
                     **header: Any) -> Path:
    """The columns (safetensors) + JSON header: task -> column, the column sizes and whatever `header` adds."""
    if kind not in KINDS:
        raise ValueError(f"progressive checkpoint kind {kind!r} unknown; expected one of {KINDS}")
    return save_checkpoint(path, module_tensors("net", net), {
        **header, "kind": kind, "tasks": list(task_columns), "columns": dict(task_columns),
        "parameters": net.num_parameters(),
        "spec": {"obs_dim": net.obs_dim, "action_dim": net.action_dim, "hidden": net.hidden, "layers": net.layers,
                 "n_columns": len(net.columns)}})


def load_progressive(path: str | Path) -> tuple[ProgressiveNet, dict[str, int]]:
    """The columns of a progressive checkpoint of either kind and its task -> column map."""
    tensors, header = load_checkpoint(path, device="cpu")
    if header.get("kind") not in KINDS:
        raise CheckpointError(f"{path}: kind {header.get('kind')!r} is not a progressive net; expected one of {KINDS}")
    try:
        s = header["spec"]
        net = ProgressiveNet(int(s["obs_dim"]), int(s["action_dim"]), int(s["hidden"]), int(s["layers"]),
                             int(s["n_columns"]))
        columns = {str(t): int(c) for t, c in header["columns"].items()}
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise CheckpointError(f"{path}: progressive header incomplete ({err})") from err
    bad = {t: c for t, c in columns.items() if not 0 <= c < len(net.columns)}
    if bad:
        raise CheckpointError(f"{path}: tasks {bad} point at columns outside 0..{len(net.columns) - 1}")
    load_module(net, tensors, "net", str(path))
    return net.eval(), columns


class ProgressivePolicy:
    def __init__(self, net: ProgressiveNet, task_columns: Mapping[str, int]) -> None:
        self.net, self.columns = net.eval(), dict(task_columns)
        self.inputs = PolicyInputs(action_dim=net.action_dim, state_dim=net.obs_dim, goal="column",
                                   tasks=tuple(self.columns), unified=True)

    def reset(self, step: Step) -> None:
        pass

    @torch.no_grad()
    def act(self, step: Step) -> np.ndarray:
        if step.goal.name not in self.columns:
            raise KeyError(f"progressive net has no column for {step.goal.name!r}; it knows {sorted(self.columns)}")
        obs = torch.from_numpy(np.asarray(step.state, np.float32)).reshape(1, -1)
        return np.clip(self.net(obs, self.columns[step.goal.name])[0].numpy(), -1.0, 1.0).astype(np.float32)


def load_progressive_policy(path: str | Path) -> ProgressivePolicy:
    net, columns = load_progressive(path)
    return ProgressivePolicy(net, columns)
