"""The learners the online-RL loop (rl/loop.py) trains, and the registry of the multi-task RL baselines.

A learner acts in a task, updates from the run's replay (`TaskReplay`), pretrains by BC on the demos, and hands
out the modules of the policy it trains and its whole state for an exact resume. Two kinds:
- `AgentLearner`: one DrQ-v2 + BC agent (rl/agent.py, Eq. 1). Alone on its task it is a per-task expert and
  samples that task's replay and demos; shared by several tasks (MTRL, MTRL-Demo, MTRL-PCGrad) it samples batches
  spread over all of them, each row with its task's goal vector, and sets the goal of the task it plays.
- `DistralLearner`: one agent per task regularised toward π0, and π0 trained on all tasks' replay states every
  update; π0 is the unified policy (rl/multitask_agents.py).
`LEARNERS` names the multi-task RL baselines: a baseline is a learner variant registered by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from polytask.learning.data.checkpoint import (
    CheckpointError,
    load_module,
    load_optimizer,
    module_tensors,
    optimizer_tensors,
    prefixed,
    unprefixed,
)
from polytask.learning.data.replay import TaskReplay
from polytask.learning.nets.drqv2 import Actor, Encoder, NetworkSpec
from polytask.learning.rl.agent import ExpertAgent
from polytask.learning.rl.bc import pretrain_bc
from polytask.learning.rl.multitask_agents import Centroid, DistralAgent, PCGradAgent


class Learner(Protocol):
    def act(self, task: str, obs: np.ndarray, step: int) -> np.ndarray: ...

    def update(self, data: TaskReplay, task: str, step: int) -> dict[str, float]:
        """One update while `task` is played; returns the metrics the loop logs."""
        ...

    def pretrain(self, data: TaskReplay) -> list[float]:
        """BC pretraining on the demos; the loss of every step ([] when the learner does none)."""
        ...

    def policy_modules(self) -> tuple[Encoder, Actor]: ...

    def state_tensors(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """Everything a resumed run needs of the learner: weights, optimiser moments, its own RNGs."""
        ...

    def load_state_tensors(self, tensors: Mapping[str, Tensor], meta: Mapping[str, Any], where: str) -> None: ...


class AgentLearner:
    """One DrQ-v2 + BC agent: a per-task expert (`shared=False`), or one goal-conditioned agent for every task."""

    def __init__(self, agent: ExpertAgent, goals: Mapping[str, np.ndarray | None], cfg: Any, use_demos: bool,
                 shared: bool) -> None:
        if not shared and len(goals) != 1:
            raise ValueError(f"a per-task learner learns one task, got {list(goals)}")
        self.agent, self.goals, self.cfg, self.use_demos, self.shared = agent, dict(goals), cfg, use_demos, shared
        self._goal_of: str | None = None

    def act(self, task: str, obs: np.ndarray, step: int) -> np.ndarray:
        if task != self._goal_of:
            self.agent.set_goal(self.goals[task])
            self._goal_of = task
        return self.agent.act(obs, step, eval_mode=False)

    def update(self, data: TaskReplay, task: str, step: int) -> dict[str, float]:
        return self.agent.update(*self.sample(data, task), step)

    def sample(self, data: TaskReplay, task: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]:
        """One update's batch and demo batch (None without the BC term); a batched driver (rl/batched_run.py)
        samples each expert's through this and updates them all at once."""
        ac = self.cfg.agent
        demo_batch = self.cfg.replay.demo_batch_size or ac.batch_size
        use_bc = self.use_demos and ac.bc_regularize
        if self.shared:
            return data.sample(ac.batch_size), data.sample_bc(demo_batch) if use_bc else None
        return data.replay[task].sample(ac.batch_size), data.demos[task].sample_bc(demo_batch) if use_bc else None

    def pretrain(self, data: TaskReplay) -> list[float]:
        bc = self.cfg.bc
        if not (self.use_demos and bc.pretrain_steps > 0):
            return []
        demos = data if self.shared else data.demos[next(iter(self.goals))]
        return pretrain_bc(self.agent, demos, bc.pretrain_steps, bc.batch_size, bc.lr)  # type: ignore[arg-type]

    def policy_modules(self) -> tuple[Encoder, Actor]:
        return self.agent.nets.encoder, self.agent.nets.actor

    def state_tensors(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        tensors, agent_meta = self.agent.state_tensors(with_optim=True)
        tensors.pop("goal", None)  # the goal of the task played last: the next `act` sets its own task's goal
        meta: dict[str, Any] = {"agent": agent_meta}
        if isinstance(self.agent, PCGradAgent):  # PCGrad shuffles the task order of its projections
            meta["pcgrad_rng"] = self.agent.rng.bit_generator.state
        return prefixed("agent", tensors), meta

    def load_state_tensors(self, tensors: Mapping[str, Tensor], meta: Mapping[str, Any], where: str) -> None:
        self.agent.load_state_tensors(unprefixed("agent", dict(tensors)), meta["agent"], where)
        if isinstance(self.agent, PCGradAgent):
            if "pcgrad_rng" not in meta:
                raise CheckpointError(f"{where}: PCGrad agent without its RNG state (saved by another method?)")
            self.agent.rng.bit_generator.state = meta["pcgrad_rng"]
        self._goal_of = None  # the next act sets the goal of the task it plays


class DistralLearner:
    """Distral: per-task agents regularised toward π0; π0 matches each task policy on its replay states."""

    def __init__(self, agents: Mapping[str, DistralAgent], centroid: Centroid, cfg: Any) -> None:
        self.agents, self.centroid, self.cfg = dict(agents), centroid, cfg

    def act(self, task: str, obs: np.ndarray, step: int) -> np.ndarray:
        return self.agents[task].act(obs, step, eval_mode=False)

    def update(self, data: TaskReplay, task: str, step: int) -> dict[str, float]:
        bs = self.cfg.agent.batch_size
        metrics: dict[str, float] = {}
        if len(data.replay[task]) > 0:  # the playing task's agent: one expert-like update on its own data
            metrics.update(self.agents[task].update(data.replay[task].sample(bs), None, step))
        batch = data.sample(bs)
        dev = self.centroid.device
        obs, goal = torch.as_tensor(batch["obs"], device=dev), torch.as_tensor(batch["goal"], device=dev)
        target = torch.empty((obs.shape[0], self.centroid.spec.action_dim), device=dev)
        with torch.no_grad():
            for t, agent in self.agents.items():
                rows = torch.as_tensor((batch["goal"] == data.goals[t]).all(-1), device=dev)
                if bool(rows.any()):
                    target[rows] = agent.nets.act_mean(obs[rows], goal[rows])
        metrics.update(self.centroid.update(obs, goal, target))
        return metrics

    def pretrain(self, data: TaskReplay) -> list[float]:
        return []  # Distral learns from the environment alone

    def policy_modules(self) -> tuple[Encoder, Actor]:
        return self.centroid.encoder, self.centroid.actor

    def state_tensors(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """Every task's agent under `agent/<task>/`, π0 and its Adam state under `centroid/`."""
        c = self.centroid
        tensors = {**module_tensors("centroid/encoder", c.encoder), **module_tensors("centroid/actor", c.actor)}
        opt_t, opt_meta = optimizer_tensors("centroid/opt", c.opt)
        tensors.update(opt_t)
        meta: dict[str, Any] = {"centroid_opt": opt_meta, "agents": {}}
        for t, agent in self.agents.items():
            agent_t, meta["agents"][t] = agent.state_tensors(with_optim=True)
            tensors.update(prefixed(f"agent/{t}", agent_t))
        return tensors, meta

    def load_state_tensors(self, tensors: Mapping[str, Tensor], meta: Mapping[str, Any], where: str) -> None:
        missing = [t for t in self.agents if t not in meta.get("agents", {})]
        if missing:
            raise CheckpointError(f"{where}: no Distral agent state for tasks {missing}")
        c, tensors = self.centroid, dict(tensors)
        load_module(c.encoder, tensors, "centroid/encoder", where)
        load_module(c.actor, tensors, "centroid/actor", where)
        load_optimizer(c.opt, tensors, meta["centroid_opt"], "centroid/opt", where)
        for t, agent in self.agents.items():
            agent.load_state_tensors(unprefixed(f"agent/{t}", tensors), meta["agents"][t], where)


BuildFn = Callable[[NetworkSpec, Any, torch.device, Mapping[str, np.ndarray]], Learner]


@dataclass(frozen=True)
class Method:
    """A multi-task RL baseline: a learner variant, and whether it learns from demos."""

    name: str
    uses_demos: bool
    build: BuildFn


def _shared(pcgrad: bool, use_demos: bool) -> BuildFn:
    def build(spec: NetworkSpec, cfg: Any, device: torch.device, goals: Mapping[str, np.ndarray]) -> Learner:
        first = next(iter(goals.values()))
        agent = (PCGradAgent(spec, cfg.agent, device, first, seed=cfg.train.seed) if pcgrad
                 else ExpertAgent(spec, cfg.agent, device, first))
        return AgentLearner(agent, goals, cfg, use_demos, shared=True)
    return build


def _distral(spec: NetworkSpec, cfg: Any, device: torch.device, goals: Mapping[str, np.ndarray]) -> Learner:
    centroid = Centroid(spec, cfg.distral.std, cfg.distral.lr, device)
    agents = {t: DistralAgent(spec, cfg.agent, device, g, centroid=centroid, kl_coef=cfg.distral.kl_coef)
              for t, g in goals.items()}
    return DistralLearner(agents, centroid, cfg)


LEARNERS: dict[str, Method] = {m.name: m for m in (
    Method("mtrl", False, _shared(pcgrad=False, use_demos=False)),
    Method("mtrl-demo", True, _shared(pcgrad=False, use_demos=True)),
    Method("mtrl-pcgrad", False, _shared(pcgrad=True, use_demos=False)),
    Method("distral", False, _distral),
)}
