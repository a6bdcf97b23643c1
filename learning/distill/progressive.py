"""Progressive Nets (nets/progressive.py) as a lifelong baseline, trained by behaviour cloning on the relabelled data.

The paper trains its columns with RL plus the BC regulariser (rl/lifelong.py does that); here a column regresses
the teacher's relabelled actions on its task's store (the same data and loss as distillation), which isolates the
architectural difference from the training method. The checkpoint is policies/progressive.py's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from polytask.learning.distill.data import TaskData, normalizer
from polytask.learning.nets.progressive import ProgressiveNet
from polytask.learning.nets.student import STD_FLOOR
from polytask.learning.policies.evaluate import evaluate
from polytask.learning.policies.progressive import ProgressivePolicy, load_progressive, save_progressive
from polytask.learning.reporting.lifelong import Stage, next_stage, write_history


def add_task_progressive(method_dir: str | Path, datasets: Mapping[str, TaskData], order: Sequence[str],
                         hidden: int, layers: int, steps: int, lr: float = 5e-4, batch: int = 256,
                         eval_episodes: int = 10, eval_seed: int = 1000, seed: int = 0,
                         log: Callable[[str], None] = print) -> Stage:
    """Add the next task of `order`: a new column trained on that task's relabelled data only."""
    method_dir = Path(method_dir)
    history, k = next_stage(method_dir, order)
    new, seen = order[k], list(order[: k + 1])
    start = time.perf_counter()
    torch.manual_seed(seed + k)
    if history:
        net, columns = load_progressive(history[-1]["checkpoint"])
    else:
        d0 = datasets[new]
        net, columns = ProgressiveNet(d0.states.shape[1], d0.actions.shape[1], hidden, layers), {}
        mean, std = normalizer([d0])  # the first task's statistics, frozen with the first column
        net.obs_mean.copy_(torch.from_numpy(mean))
        net.obs_std.copy_(torch.clamp(torch.from_numpy(std), min=STD_FLOOR))
    col = net.add_column()
    columns[new] = col
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    states, actions = torch.from_numpy(datasets[new].states), torch.from_numpy(datasets[new].actions)
    gen = torch.Generator().manual_seed(seed + k)
    net.train()
    for _ in range(steps):
        idx = torch.randint(states.shape[0], (batch,), generator=gen)
        loss = (net(states[idx], col) - actions[idx]).pow(2).sum(-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    net.eval()
    ckpt = save_progressive(method_dir / f"stage_{k + 1:02d}" / "progressive.safetensors", net, columns, step=steps)
    policy = ProgressivePolicy(net, columns)
    scores = {t: evaluate(policy, t, episodes=eval_episodes, seed=eval_seed).mean_score for t in seen}
    stage = Stage(index=k + 1, task=new, tasks=seen, scores=scores, effective=float(sum(scores.values())),
                  parameters=net.num_parameters(), checkpoint=str(ckpt), seconds=time.perf_counter() - start,
                  train_steps=steps)
    write_history(method_dir, [*history, stage.to_dict()])
    log(f"[lifelong progressive] +{new}: {k + 1} tasks, effective {stage.effective:.2f}, "
        f"params {stage.parameters}, {stage.seconds:.0f}s")
    return stage


def describe(net: ProgressiveNet) -> dict[str, Any]:
    return {"columns": len(net.columns), "parameters": net.num_parameters()}
