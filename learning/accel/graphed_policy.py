"""Policy inference at batch 1 through a CUDA graph: what the policy server can wrap a loaded policy with.

At batch 1 an expert's or student's forward pass is ~20 small kernels whose launch cost is most of its time on a
GPU (an H100 took 0.58 ms eagerly and 0.09 ms replaying one graph). `accelerate_policy(policy)` replaces the
policy's network call (`policy.net(obs, goal)`, which `act` goes through) by a `GraphedCall`: the first step
captures, every later step copies the observation into the graph's input and replays. Everything else about the
policy (frame stacks, goals, resets) is untouched, and on a CPU nothing changes.

Hook for the policy server (after `load_any_policy(path, device)`):
    loaded = load_any_policy(path, device)
    policy = accelerate_policy(loaded.policy)  # same object, its `net` graphed when it runs on CUDA
Weights must not change after the first step (true for serving); a checkpoint swap loads a new policy object.
"""

from __future__ import annotations

from typing import Any

import torch

from polytask.learning.accel.cuda_graph import GraphedCall


def accelerate_policy(policy: Any) -> Any:
    """Graph `policy.net` when the policy runs on CUDA; policies without a `net`, or on a CPU, come back as they
    were. Returns the policy."""
    net = getattr(policy, "net", None)
    device = torch.device(getattr(policy, "device", "cpu"))
    if net is None or device.type != "cuda" or isinstance(net, GraphedCall):
        return policy
    policy.net = GraphedCall(net)
    return policy
