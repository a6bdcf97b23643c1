"""Progressive Nets (Rusu et al. 2016) as a lifelong baseline, trained by behaviour cloning on the relabelled data.

Each new task gets a new column (an MLP like the student's, from the same `networks.mlp_layers`); earlier columns
are frozen and feed the new one through lateral connections at every layer, so nothing is forgotten, but the
parameter count grows with every task — the trade-off the paper contrasts with PolyTask's fixed-size student. The
paper trains its columns with RL plus the BC regulariser; here a column regresses the teacher's relabelled actions
on its task's store (the same data and loss as distillation), which isolates the architectural difference. The
task -> column map is in the checkpoint header, so acting needs only the task's name.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from polytask.learning.data.checkpoint import CheckpointError, load_checkpoint, load_module, module_tensors
from polytask.learning.data.checkpoint import save_checkpoint as _save
from polytask.learning.distill.data import TaskData, normalizer
from polytask.learning.distill.lifelong import HISTORY, Stage, read_history, write_history
from polytask.learning.nets.drqv2 import mlp_layers
from polytask.learning.nets.student import NORM_CLIP, STD_FLOOR
from polytask.learning.policies.evaluate import evaluate
from polytask.sim.task import Step

KIND = "progressive"


class ProgressiveNet(nn.Module):
    def __init__(self, obs_dim: int, action_dim: int, hidden: int, layers: int, columns: int = 0) -> None:
        super().__init__()
        self.obs_dim, self.action_dim, self.hidden, self.layers = obs_dim, action_dim, hidden, layers
        self.columns = nn.ModuleList()
        self.laterals = nn.ModuleList()
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))
        for _ in range(columns):
            self.add_column()

    def add_column(self) -> int:
        """Freeze every existing column and add a new one (with laterals from all of them); returns its index."""
        for p in self.parameters():
            p.requires_grad_(False)
        k = len(self.columns)
        col = nn.ModuleList(mlp_layers(self.obs_dim, self.hidden, self.layers, self.action_dim))
        # lateral l feeds layer l (l >= 1, and the head) from layer l-1 of every earlier column
        lat = nn.ModuleList([nn.Linear(self.hidden * k, self.hidden if i < self.layers else self.action_dim,
                                       bias=False) for i in range(1, self.layers + 1)]) if k else nn.ModuleList()
        self.columns.append(col)
        self.laterals.append(lat)
        return k

    def forward(self, obs: Tensor, column: int) -> Tensor:
        x = torch.clamp((obs.float() - self.obs_mean) / self.obs_std, -NORM_CLIP, NORM_CLIP)
        acts: list[list[Tensor]] = []  # acts[c][l]: activation of layer l of column c
        for c in range(column + 1):
            col, lat = self.columns[c], self.laterals[c]
            h, mine = x, []
            for i, layer in enumerate(col):
                z = layer(h)
                if c > 0 and i >= 1:
                    z = z + lat[i - 1](torch.cat([acts[j][i - 1] for j in range(c)], dim=-1))
                h = torch.relu(z) if i < self.layers else torch.tanh(z)
                mine.append(h)
            acts.append(mine)
        return acts[column][-1]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def save_progressive(path: str | Path, net: ProgressiveNet, task_columns: Mapping[str, int], step: int) -> Path:
    header = {"kind": KIND, "tasks": list(task_columns), "columns": dict(task_columns), "step": int(step),
              "spec": {"obs_dim": net.obs_dim, "action_dim": net.action_dim, "hidden": net.hidden,
                       "layers": net.layers, "n_columns": len(net.columns)}, "parameters": net.num_parameters()}
    return _save(path, module_tensors("net", net), header)


def load_progressive(path: str | Path) -> tuple[ProgressiveNet, dict[str, int]]:
    tensors, header = load_checkpoint(path, expect={"kind": KIND})
    try:
        s = header["spec"]
        net = ProgressiveNet(int(s["obs_dim"]), int(s["action_dim"]), int(s["hidden"]), int(s["layers"]),
                             int(s["n_columns"]))
        columns = {str(t): int(c) for t, c in header["columns"].items()}
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: progressive header incomplete ({err})") from err
    load_module(net, tensors, "net", str(path))
    return net.eval(), columns


class ProgressivePolicy:
    def __init__(self, net: ProgressiveNet, task_columns: Mapping[str, int]) -> None:
        self.net, self.columns = net.eval(), dict(task_columns)

    def reset(self, step: Step) -> None:
        pass

    @torch.no_grad()
    def act(self, step: Step) -> np.ndarray:
        if step.goal.name not in self.columns:
            raise KeyError(f"progressive net has no column for {step.goal.name!r}; it knows {sorted(self.columns)}")
        obs = torch.from_numpy(np.asarray(step.state, np.float32)).reshape(1, -1)
        return np.clip(self.net(obs, self.columns[step.goal.name])[0].numpy(), -1.0, 1.0).astype(np.float32)


def add_task_progressive(method_dir: str | Path, datasets: Mapping[str, TaskData], order: Sequence[str],
                         hidden: int, layers: int, steps: int, lr: float = 5e-4, batch: int = 256,
                         eval_episodes: int = 10, eval_seed: int = 1000, seed: int = 0,
                         log: Callable[[str], None] = print) -> Stage:
    """Add the next task of `order`: a new column trained on that task's relabelled data only."""
    method_dir = Path(method_dir)
    history = read_history(method_dir)
    done = [s["task"] for s in history]
    if done != list(order[: len(done)]) or len(done) >= len(order):
        raise ValueError(f"{method_dir / HISTORY}: tasks {done} do not leave a next task in order {list(order)}")
    k = len(done)
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
    ckpt = save_progressive(method_dir / f"stage_{k + 1:02d}" / "progressive.safetensors", net, columns, steps)
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
