"""Capture a training step or a forward pass in one CUDA graph, leaving the state as eager code would.

A captured step replays every kernel of an update with one launch. What that needs, and what this module does:
- static inputs: the step reads tensors that the caller refills in place before each replay (`copy_`), never
  new tensors;
- no host syncs inside (`.item()`, `float(t)`, Python branches on tensor values): outputs are tensors that the
  caller reads after the replay;
- warm-up before capture (lazy optimizer state, cuBLAS/cuDNN handles): the warm-up runs real updates, so the
  parameters, buffers and optimizer states are saved before and written back after, in place (the graph holds
  their addresses) — the first replay then performs the first real update, as eager code would;
- Adam's step counters on the device (`capturable=True`, `make_capturable`);
- an inference capture checks only the capturing thread (`capture_error_mode="thread_local"`): another thread's
  CUDA work (a policy server loading its next checkpoint) must not abort it. Training steps keep the default
  checks: their backward pass runs on autograd's device thread.

On a device other than CUDA a `CapturedStep` simply calls its function: the same static-buffer code path runs
eagerly, which is how the CPU tests exercise everything but the capture itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import torch
from torch import Tensor, nn

T = TypeVar("T")
WARMUP_STEPS = 3


def make_capturable(optimizers: Sequence[torch.optim.Optimizer]) -> None:
    """Adam/AdamW with their step counters on the parameters' device, so that a graph can advance them."""
    for opt in optimizers:
        for group in opt.param_groups:
            group["capturable"] = True
            for p in group["params"]:
                state = opt.state.get(p)
                if state and isinstance(state.get("step"), Tensor):
                    state["step"] = state["step"].to(device=p.device, dtype=torch.float32)


def _state_tensors(modules: Sequence[nn.Module], optimizers: Sequence[torch.optim.Optimizer]) -> list[Tensor]:
    out: list[Tensor] = []
    for m in modules:
        out += [t for t in m.parameters()] + [t for t in m.buffers()]
    for opt in optimizers:
        for group in opt.param_groups:
            for p in group["params"]:
                out += [v for v in opt.state.get(p, {}).values() if isinstance(v, Tensor)]
    return out


class StateSnapshot:
    """Copies of every parameter, buffer and optimizer state tensor, written back in place by `restore`.

    Parameters without optimizer state when the snapshot was taken get their (lazily created) state zeroed on
    restore, which is exactly Adam's fresh state (zero moments, step 0)."""

    def __init__(self, modules: Sequence[nn.Module], optimizers: Sequence[torch.optim.Optimizer]) -> None:
        self.modules, self.optimizers = list(modules), list(optimizers)
        with torch.no_grad():
            self.saved = [(t, t.detach().clone()) for t in _state_tensors(self.modules, self.optimizers)]
        self.known = {id(t) for t, _ in self.saved}

    def restore(self) -> None:
        with torch.no_grad():
            for live, copy in self.saved:
                live.copy_(copy)
            for t in _state_tensors(self.modules, self.optimizers):
                if id(t) not in self.known:
                    t.zero_()


class CapturedStep(Generic[T]):
    """`fn()` (reads static inputs, updates `modules`/`optimizers` in place, returns tensors) as one CUDA graph.

    The first call warms up on a side stream, captures, restores the state, then replays; later calls replay.
    Off CUDA every call is a plain `fn()`."""

    def __init__(
        self,
        fn: Callable[[], T],
        modules: Sequence[nn.Module],
        optimizers: Sequence[torch.optim.Optimizer],
        device: torch.device,
        warmup: int = WARMUP_STEPS,
    ) -> None:
        self.fn, self.modules, self.optimizers = fn, list(modules), list(optimizers)
        self.device, self.warmup = torch.device(device), warmup
        self.graph: Any = None
        self.out: T | None = None

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def __call__(self) -> T:
        if self.device.type != "cuda":
            return self.fn()
        if self.graph is None:
            self._capture()
        self.graph.replay()
        return self.out  # type: ignore[return-value]

    def _capture(self) -> None:
        snap = StateSnapshot(self.modules, self.optimizers)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                self.fn()
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):  # default (global) checks: the backward runs on autograd's device thread
            self.out = self.fn()
        snap.restore()
        self.graph = graph


class GraphedCall:
    """A no-grad forward `fn(*inputs)` through CUDA graphs: the batch-1 policy inference.

    The first call with a given set of input shapes/dtypes captures a graph for them (at most `max_graphs`);
    later calls copy the inputs into that graph's static tensors and replay. Inputs off CUDA, or beyond
    `max_graphs` signatures, call `fn` directly. Returns a copy of the output, so a caller may keep it."""

    def __init__(self, fn: Callable[..., Tensor], warmup: int = WARMUP_STEPS, max_graphs: int = 4) -> None:
        self.fn, self.warmup, self.max_graphs = fn, warmup, max_graphs
        self.graphs: dict[tuple, tuple[Any, list[Tensor], Tensor]] = {}

    @staticmethod
    def signature(inputs: Sequence[Tensor]) -> tuple:
        return tuple((tuple(x.shape), x.dtype, x.device) for x in inputs)

    def _capture(self, inputs: Sequence[Tensor]) -> tuple[Any, list[Tensor], Tensor]:
        device = inputs[0].device
        static = [x.detach().clone() for x in inputs]
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                self.fn(*static)
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            out = self.fn(*static)
        return graph, static, out

    @torch.no_grad()
    def __call__(self, *inputs: Tensor) -> Tensor:
        if not inputs or any(x.device.type != "cuda" for x in inputs):
            return self.fn(*inputs)
        key = self.signature(inputs)
        if key not in self.graphs:
            if len(self.graphs) >= self.max_graphs:
                return self.fn(*inputs)
            self.graphs[key] = self._capture(inputs)
        graph, static, out = self.graphs[key]
        for s, x in zip(static, inputs, strict=True):
            s.copy_(x)
        graph.replay()
        return out.clone()
