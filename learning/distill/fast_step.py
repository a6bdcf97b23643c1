"""The distillation step of Eq. 2 (learning/distill/distill.py) in one CUDA graph, or through torch.compile.

`Distiller.train_step` samples a task and a batch, then takes one Adam step on the student's squared action error.
Here the sampled batch and the task's goal are copied into static buffers, the learning rate lives in a 0-d tensor
(the cosine schedule changes it every step, which a graph would otherwise freeze), and the loss comes back as a
tensor read at logging time. Sampling (which task, which rows) stays outside: it is the same generator calls as
eager code, so both paths see the same batches. PCGrad's per-task gradient surgery is not covered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from polytask.learning.accel.cuda_graph import CapturedStep, make_capturable

if TYPE_CHECKING:
    from polytask.learning.distill.distill import Distiller


def student_loss(student: torch.nn.Module, obs: Tensor, target: Tensor, goal: Tensor) -> Tensor:
    """Eq. 2 on one batch: squared error summed over action dims, averaged over rows."""
    return (student(obs, goal) - target).pow(2).sum(-1).mean()


class FastDistillStep:
    """One distillation step in mode "graph" (CUDA graph; uncaptured off CUDA) or "compile" (torch.compile)."""

    def __init__(self, distiller: Distiller, mode: str) -> None:
        if mode not in ("graph", "compile"):
            raise ValueError(f"distill compile is {mode!r}, expected 'graph' or 'compile' for the fast path")
        if distiller.cfg.pcgrad and len(distiller.tasks) > 1:
            raise ValueError("distill compile applies to the plain Eq. 2 step; with pcgrad use compile 'none'")
        self.d, self.mode = distiller, mode
        self.device = torch.device(distiller.cfg.device)
        self.capture = mode == "graph" and self.device.type == "cuda"
        self.loss_fn: Callable[..., Tensor] = student_loss
        if mode == "compile":
            self.loss_fn = torch.compile(student_loss, dynamic=False)
        self.buffers: dict[str, Tensor] | None = None
        self.step_fn: Any = None
        if self.capture:
            make_capturable([distiller.opt])
            for group in distiller.opt.param_groups:
                group["lr"] = torch.tensor(float(group["lr"]), dtype=torch.float32, device=self.device)

    def _prepare(self, obs: Tensor, target: Tensor, goal: Tensor) -> None:
        t = {
            "obs": torch.empty_like(obs, device=self.device),
            "target": torch.empty_like(target, device=self.device),
            "goal": torch.empty_like(goal, device=self.device),
        }
        self.buffers = t
        d = self.d

        def step() -> Tensor:
            loss = self.loss_fn(d.student, t["obs"], t["target"], t["goal"])
            d.opt.zero_grad(set_to_none=True)
            loss.backward()
            if d.cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(d.student.parameters(), d.cfg.grad_clip)
            d.opt.step()
            return loss.detach()

        self.step_fn = CapturedStep(step, [d.student], [d.opt], self.device) if self.mode == "graph" else step

    def __call__(self, k: int, lr: float) -> Tensor:
        """Sample task `k`'s batch as eager code does, run the step at learning rate `lr`; returns the loss."""
        d = self.d
        obs, target = d.sampler.sample(k, d.cfg.batch_size, d.gen)
        goal = d.goal_t[k]
        if self.buffers is None:
            self._prepare(obs, target, goal)
        t = self.buffers
        assert t is not None
        if obs.shape != t["obs"].shape or goal.shape != t["goal"].shape:
            raise ValueError(
                f"distill: task {d.tasks[k]} gives obs {tuple(obs.shape)} / goal {tuple(goal.shape)}, "
                f"but the step was built for {tuple(t['obs'].shape)} / {tuple(t['goal'].shape)}"
            )
        t["obs"].copy_(obs)
        t["target"].copy_(target)
        t["goal"].copy_(goal)
        for group in d.opt.param_groups:
            if isinstance(group["lr"], Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr
        return self.step_fn().clone()
