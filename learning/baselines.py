"""The paper's baselines in one registry, each next to PolyTask on the same data, student and evaluation.

- GCBC: goal-conditioned behaviour cloning on the demos alone (the same student network, MSE on demo actions).
  It is distillation whose "teacher" is the recorded demo action, so it reuses the distillation loop.
- PolyTask-PCGrad: distillation with PCGrad gradient surgery across tasks.
- Fine-tuning (lifelong): the student trained on each new task's data only, one task after another.
- Progressive Nets (lifelong): a new column per task with laterals from the frozen earlier ones, trained by BC on
  the task's relabelled data (the paper trains columns by RL + BC); see progressive.py.
- Fine-tuning (RL+BC) and Progressive Nets (RL+BC), lifelong, trained the paper's way: each added task is one
  MTRL-Demo stage on that task alone (env reward, its demos: BC pretraining + Eq. 1's BC term); fine-tuning carries
  one fixed-size goal-conditioned agent over, progressive nets add an actor column with laterals from the frozen
  earlier ones and a fresh per-task critic (learning/rl/lifelong.py). Runner `run_lifelong_rl(method, tasks, demos,
  steps, config, overrides, run_dir, add)`, also `polytask train-multitask --method finetune-rl|progressive-rl`.
- MTRL, MTRL-Demo, MTRL-PCGrad, Distral (multi-task RL) train in the environment with the expert's DrQ-v2 agent
  (learning/rl/agent.py) on per-task replay buffers, batches mixing tasks with per-row goal vectors
  (learning/rl/multitask.py; the PCGrad and Distral agents in learning/rl/multitask_agents.py):
  MTRL = one goal-conditioned agent (one-hot goal) by RL on all tasks; MTRL-Demo = the same with multi-task BC
  pretraining and Eq. 1's BC term on every task's demos; MTRL-PCGrad = MTRL with per-task critic/actor losses
  combined by PCGrad; Distral = per-task agents regularised toward a distilled π0 (KL of fixed-std Gaussians),
  π0 the evaluated policy. Their runner is `run_multitask(method, tasks, demos, steps, config, overrides,
  run_dir)`, also `polytask train-multitask`; they need no relabelled data, only the tasks (and demos for
  MTRL-Demo).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np

from polytask.learning.data.episodes import EpisodeStore
from polytask.learning.distill.config import DistillConfig
from polytask.learning.distill.data import TaskData, stack_indices
from polytask.learning.distill.distill import Distiller, DistillResult, distill
from polytask.learning.distill.lifelong import add_task
from polytask.learning.distill.progressive import add_task_progressive
from polytask.learning.reporting.lifelong import Stage
from polytask.learning.rl.lifelong import run_lifelong_rl
from polytask.learning.rl.multitask import run_multitask
from polytask.sim import registry


@dataclass(frozen=True)
class Baseline:
    name: str
    kind: Literal["multitask", "lifelong"]
    description: str
    runner: Callable[..., Any]


def demo_datasets(store: EpisodeStore, tasks: Sequence[str], demos_per_task: int = 1, pixels: bool = False,
                  frame_stack: int = 3) -> dict[str, TaskData]:
    """The first `demos_per_task` demos of each task as (observation, demo action) rows for GCBC.

    Only successful demos count where the suite has a success rule; DMC (scored by return) takes the expert's
    rollouts as they are, as its demos were recorded. `pixels`: the rows also index the demos' frames, stacked as
    a pixel student sees them (the demos must have been recorded with pixels).
    """
    out = {}
    for task in tasks:
        need_success = registry.spec(task).has_success
        eps = [ep for _, ep in store.iter_episodes(task) if ep.episode_success or not need_success]
        eps = eps[:demos_per_task]
        if len(eps) < demos_per_task:
            kind = "successful demos" if need_success else "demos"
            raise ValueError(f"demo store {store.root}: {len(eps)} {kind} of {task!r}, need {demos_per_task}")
        frames = stacks = None
        if pixels:
            if any(ep.pixels is None for ep in eps):
                raise ValueError(f"demo store {store.root}: the demos of {task!r} have no pixels; a pixel GCBC "
                                 "needs demos recorded with pixels")
            offsets = np.cumsum([0] + [len(ep.pixels) for ep in eps])
            frames = np.concatenate([ep.pixels for ep in eps])
            # each demo's T actions pair with its first T observations (the last frame has no action)
            stacks = np.concatenate([stack_indices(len(ep.pixels), int(o), frame_stack)[:-1]
                                     for ep, o in zip(eps, offsets, strict=False)])
        out[task] = TaskData(task=task, task_id=eps[0].task_id,
                             states=np.concatenate([ep.state[:-1] for ep in eps]),
                             actions=np.concatenate([ep.action for ep in eps]), episodes=len(eps),
                             frames=frames, stack_idx=stacks, goal_pixels=eps[-1].goal_pixels)
    return out


def gcbc(demos: Mapping[str, TaskData], goals: Mapping[str, np.ndarray], cfg: DistillConfig,
         run_dir: str | Path | None = None, steps: int | None = None,
         progress: bool = False) -> tuple[Distiller, DistillResult]:
    """GCBC: the student regresses the demo actions (task sampled uniformly, then a batch of its demo rows)."""
    return distill(list(demos.values()), goals, cfg, run_dir=run_dir, steps=steps, progress=progress,
                   header_extra={"method": "gcbc"})


def polytask_pcgrad(datasets: Sequence[TaskData], goals: Mapping[str, np.ndarray], cfg: DistillConfig,
                    run_dir: str | Path | None = None, steps: int | None = None,
                    progress: bool = False) -> tuple[Distiller, DistillResult]:
    return distill(datasets, goals, replace(cfg, pcgrad=True), run_dir=run_dir, steps=steps, progress=progress,
                   header_extra={"method": "polytask-pcgrad"})


def finetune(method_dir: str | Path, datasets: Mapping[str, TaskData], order: Sequence[str],
             goals: Mapping[str, np.ndarray], cfg: DistillConfig, steps: int, **kwargs: Any) -> Stage:
    """Fine-tuning: the next task of `order` added by training the student on that task's data alone."""
    return add_task(method_dir, "finetune", datasets, order, goals, cfg, steps, **kwargs)


BASELINES: dict[str, Baseline] = {b.name: b for b in (
    Baseline("gcbc", "multitask", "goal-conditioned BC on the demos", gcbc),
    Baseline("polytask-pcgrad", "multitask", "distillation with PCGrad", polytask_pcgrad),
    Baseline("finetune", "lifelong", "sequential fine-tuning on each new task's data only", finetune),
    Baseline("mtrl", "multitask", "multi-task DrQ-v2 (one-hot goal, env reward)", partial(run_multitask, "mtrl")),
    Baseline("mtrl-demo", "multitask", "multi-task DrQ-v2 with demos (BC pretraining + Eq. 1)",
             partial(run_multitask, "mtrl-demo")),
    Baseline("distral", "multitask", "Distral: per-task agents + distilled π0 (fixed-std Gaussian KL)",
             partial(run_multitask, "distral")),
    Baseline("mtrl-pcgrad", "multitask", "multi-task DrQ-v2 with PCGrad on per-task losses",
             partial(run_multitask, "mtrl-pcgrad")),
    Baseline("progressive", "lifelong", "progressive nets: a new column per task (laterals from frozen earlier "
             "columns), trained by BC on the task's relabelled data; grows with every task", add_task_progressive),
    Baseline("finetune-rl", "lifelong", "sequential fine-tuning of one goal-conditioned DrQ-v2 agent by RL + BC "
             "on each new task alone (fixed size; forgets)", partial(run_lifelong_rl, "finetune-rl")),
    Baseline("progressive-rl", "lifelong", "progressive nets trained by RL + BC: a new actor column per task "
             "(laterals from frozen earlier columns, per-task critic); grows with every task",
             partial(run_lifelong_rl, "progressive-rl")),
)}


def get(name: str) -> Baseline:
    if name not in BASELINES:
        raise KeyError(f"baseline {name!r} unknown; known: {', '.join(BASELINES)}")
    return BASELINES[name]
