"""PCGrad (Yu et al. 2020), the gradient surgery of both PolyTask-PCGrad (distillation) and MTRL-PCGrad (RL).

Each task's gradient is projected off every other task gradient it conflicts with (negative dot product), in a
random order per task, and the projected gradients are averaged; the result replaces the parameters' `.grad`
before one optimiser step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn


def pcgrad_combine(grads: list[Tensor], rng: np.random.Generator) -> Tensor:
    """Project each flat task gradient off every other one it conflicts with, then average."""
    projected = []
    for i, g in enumerate(grads):
        g = g.clone()
        order = [j for j in rng.permutation(len(grads)) if j != i]
        for j in order:
            dot = torch.dot(g, grads[j])
            if dot < 0:
                g -= dot / (grads[j].pow(2).sum() + 1e-12) * grads[j]
        projected.append(g)
    return torch.stack(projected).mean(0)


def set_pcgrad(losses: Sequence[Tensor], params: Sequence[nn.Parameter], rng: np.random.Generator,
               reduce: Callable[[Tensor], Tensor] | None = None) -> None:
    """Set `params[i].grad` to the PCGrad combination of the task losses' gradients (the losses may share a graph;
    it is kept until the last one). A parameter a loss does not reach gets a zero gradient from it. `reduce`
    averages each flat task gradient over data-parallel processes before the surgery, so every process projects
    the same gradients."""
    grads = []
    for i, loss in enumerate(losses):
        g = torch.autograd.grad(loss, params, retain_graph=i < len(losses) - 1, allow_unused=True)
        flat_g = torch.cat([(x if x is not None else torch.zeros_like(p)).reshape(-1)
                            for x, p in zip(g, params, strict=True)])
        grads.append(reduce(flat_g) if reduce is not None else flat_g)
    flat = pcgrad_combine(grads, rng)
    offset = 0
    for p in params:
        p.grad = flat[offset:offset + p.numel()].view_as(p).clone()
        offset += p.numel()
