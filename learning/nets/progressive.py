"""Progressive Nets (Rusu et al. 2016): one MLP column per task, earlier columns frozen, laterals between them.

Each new task gets a new column (an MLP like the student's, from the same `drqv2.mlp_layers`); earlier columns are
frozen and feed the new one through lateral connections at every layer, so nothing is forgotten, but the parameter
count grows with every task — the trade-off the paper contrasts with PolyTask's fixed-size student. Inputs are
standardised by buffers (`obs_mean`, `obs_std`) that the first column's training sets (identity when unset).
Trained by BC on relabelled data in distill/progressive.py, by RL + BC in rl/lifelong.py.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polytask.learning.nets.drqv2 import mlp_layers
from polytask.learning.nets.student import NORM_CLIP


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
