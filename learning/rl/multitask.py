"""Multi-task RL baselines of the paper: MTRL, MTRL-Demo, MTRL-PCGrad and Distral, on the expert's DrQ-v2 code.

The loop is the expert trainer's (learning/rl/expert.py) stretched over several tasks: episodes cycle over the tasks
(episode e plays task e mod N, reset with seed `seed*1000003 + e`), each task keeps its own ReplayBuffer (n-step
sampling, episodes persisted under `<run>/replay/<task>/`), and every update samples one batch spread evenly over
the tasks, each row carrying its task's goal vector. The paper samples a task per rollout and a batch uniformly
over all tasks; cycling and stratifying give the same expectation with less variance.

Methods (one registry, `METHOD_LEARNERS`):
- mtrl: one goal-conditioned agent (one-hot task goal), environment reward, no demos.
- mtrl-demo: the same, plus the demos: multi-task BC pretraining on every task's demos, then Eq. 1's BC term with
  per-task demo batches carrying their goals (the paper's "initialization and regularization").
- mtrl-pcgrad: mtrl whose per-task critic and actor losses are combined by PCGrad (learning/rl/multitask_agents.py).
- distral: one agent per task (it updates while its task is being played, as a per-task expert would) regularised
  toward π0, and π0 trained on all tasks' replay states every update; π0 is the unified policy.

A run folder holds config.yaml, checkpoints/policy.safetensors (the unified policy: encoder, actor, one goal per
task; `load_multitask_policy` rebuilds it, never unpickling), checkpoints/latest.safetensors (the full training
state, below), replay/<task>/ (each task's episodes), train.csv (one row per episode), eval_history.csv (per-task
score and the effective number of tasks at every evaluation) and eval.csv/eval.png (final per-task table with the
effective number of tasks, learning/reporting/report.py).

Runs resume exactly after a kill, as the expert's do (learning/rl/expert.py), and for the same reason checkpoints
land at episode ends (every `train.save_every` steps, after BC pretraining, and at the end): an episode boundary
needs no simulator state. latest.safetensors holds every learner's weights and Adam moments (the shared agent; or
Distral's per-task agents, π0 and π0's optimiser; each learner's `state_tensors`), the PCGrad and batch-split
numpy RNGs, torch/numpy/Python RNG states, every task's replay and demo sampler state, the counters (`RunState`)
and the evaluation history. `MultiTaskRLTrainer.resume(run_dir)` reloads exactly the first `episodes_stored` of
each task's replay episodes (later ones, written by the killed process, move to `replay-orphans/<task>/`), drops
train.csv rows past the checkpoint's step and rewrites eval_history.csv from the checkpoint, so on CPU with the
same thread count a resumed run repeats the uninterrupted one bit for bit (tests/test_multitask_resume.py).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from polytask.learning import goals as goal_lib
from polytask.learning.config import ConfigError, dump_yaml, load_config, to_dict
from polytask.learning.data.atomic import write_text
from polytask.learning.data.checkpoint import (
    CheckpointError,
    config_hash,
    load_checkpoint,
    load_module,
    load_optimizer,
    module_tensors,
    optimizer_tensors,
    restore_rng,
    rng_tensors,
    save_checkpoint,
)
from polytask.learning.data.episodes import Episode, EpisodeStore
from polytask.learning.data.frames import FrameStacker
from polytask.learning.data.recorder import EpisodeRecorder
from polytask.learning.data.replay import ReplayBuffer
from polytask.learning.nets.drqv2 import Actor, Encoder, NetworkSpec
from polytask.learning.policies.multitask import MultiTaskPolicy, save_multitask_policy
from polytask.learning.reporting.report import per_task_rows, table, write_rows
from polytask.learning.reporting.run_logging import Progress, append_csv_row, open_run_dir, truncate_csv
from polytask.learning.rl.agent import ExpertAgent
from polytask.learning.rl.bc import pretrain_bc
from polytask.learning.rl.multitask_agents import Centroid, DistralAgent, PCGradAgent
from polytask.learning.rl.multitask_config import MultiTaskConfig
from polytask.learning.rl.torch_setup import prepare_torch
from polytask.sim import registry
from polytask.sim.task import Task, TaskSpec

log = logging.getLogger(__name__)

STATE_KIND = "multitask-rl-state"  # the full training state (not a policy: `polytask eval` refuses it by kind)
POLICY_FILE = "policy.safetensors"
LATEST = "latest.safetensors"
EVAL_SEED = 1_000_000  # evaluation placements never coincide with training ones (as for experts)
VECTOR_GOALS = ("onehot", "sinusoid", "language")
TRAIN_COLUMNS = ["step", "frames", "episode", "task", "episode_return", "episode_score", "episode_success",
                 "critic_loss", "actor_loss", "bc_loss", "distral_kl", "centroid_loss", "critic_q1", "batch_reward",
                 "stddev", "wall_s"]


def check_compatible(specs: Sequence[TaskSpec], pixels: bool) -> None:
    """One network acts in every task, so all tasks must share observation and action sizes; name the odd one."""
    first = specs[0]
    for s in specs[1:]:
        if s.action_dim != first.action_dim:
            raise ValueError(f"task {s.name!r} has action dim {s.action_dim}, but {first.name!r} has "
                             f"{first.action_dim}: one multi-task policy needs one action size")
        if pixels and s.image_size != first.image_size:
            raise ValueError(f"task {s.name!r} renders {s.image_size}x{s.image_size} frames, but {first.name!r} "
                             f"renders {first.image_size}x{first.image_size}")
        if not pixels and s.state_dim != first.state_dim:
            raise ValueError(f"task {s.name!r} has state dim {s.state_dim}, but {first.name!r} has "
                             f"{first.state_dim}: one multi-task policy needs one observation size")


def task_goals(kind: str, tasks: Sequence[str], specs: Sequence[TaskSpec], dim: int) -> dict[str, np.ndarray]:
    """Goal vector per task; one-hot and sinusoid index the task's position in the run's task list."""
    sentences = [goal_lib.sentence_for(t, s.language) for t, s in zip(tasks, specs, strict=True)]
    return goal_lib.goal_vectors(kind, tasks, list(range(len(tasks))), dim, sentences)


class MultiTaskReplay:
    """One replay (and one demo buffer) per task; batches spread evenly over the tasks with per-row goals."""

    def __init__(self, tasks: Sequence[str], goals: Mapping[str, np.ndarray], make_buffer: Callable[[str, int],
                 ReplayBuffer], make_demo_buffer: Callable[[str, int], ReplayBuffer], seed: int) -> None:
        self.tasks = list(tasks)
        self.goals = {t: np.asarray(goals[t], np.float32) for t in self.tasks}
        self.replay = {t: make_buffer(t, i) for i, t in enumerate(self.tasks)}
        self.demos = {t: make_demo_buffer(t, i) for i, t in enumerate(self.tasks)}
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return sum(len(b) for b in self.replay.values())

    def _split(self, batch: int, tasks: list[str]) -> list[int]:
        counts = np.full(len(tasks), batch // len(tasks))
        counts[self.rng.permutation(len(tasks))[: batch % len(tasks)]] += 1  # the remainder to random tasks
        return [int(c) for c in counts]

    def _mix(self, buffers: Mapping[str, ReplayBuffer], batch: int, method: str) -> dict[str, np.ndarray]:
        tasks = [t for t in self.tasks if len(buffers[t]) > 0]
        if not tasks:
            raise ValueError("multi-task replay: every task's buffer is empty")
        parts, goals = [], []
        for t, k in zip(tasks, self._split(batch, tasks), strict=True):
            if k > 0:
                parts.append(getattr(buffers[t], method)(k))
                goals.append(np.repeat(self.goals[t][None], k, axis=0))
        out = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
        out["goal"] = np.concatenate(goals)
        return out

    def sample(self, batch: int) -> dict[str, np.ndarray]:
        """n-step transitions from every task with data, `goal` per row."""
        return self._mix(self.replay, batch, "sample")

    def sample_bc(self, batch: int) -> dict[str, np.ndarray]:
        """Demo (obs, action) rows from every task, `goal` per row (what Eq. 1's BC term and BC pretraining read)."""
        return self._mix(self.demos, batch, "sample_bc")

    def state(self) -> dict[str, Any]:
        """The samplers' state: the batch split's RNG and every task's replay and demo buffer (JSON)."""
        return {"rng": self.rng.bit_generator.state,
                "replay": {t: b.state() for t, b in self.replay.items()},
                "demos": {t: b.state() for t, b in self.demos.items()}}

    def load_state(self, state: Mapping[str, Any], where: str = "checkpoint") -> None:
        """Restore `state()` (the replay episodes themselves are reloaded from the stores beforehand)."""
        missing = [t for t in self.tasks if t not in state["replay"] or t not in state["demos"]]
        if missing:
            raise CheckpointError(f"{where}: no replay state for tasks {missing}")
        self.rng.bit_generator.state = state["rng"]
        for t in self.tasks:
            self.replay[t].load_state(state["replay"][t])
            self.demos[t].load_state(state["demos"][t])


def _prefixed(prefix: str, tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {f"{prefix}/{k}": v for k, v in tensors.items()}


def _unprefixed(prefix: str, tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + "/")}


class Learner(Protocol):
    """What the loop needs of a method: act in a task, learn from the replay, and the unified policy's modules."""

    def act(self, task: str, obs: np.ndarray, step: int) -> np.ndarray: ...

    def update(self, data: MultiTaskReplay, task: str, step: int) -> dict[str, float]: ...

    def policy_modules(self) -> tuple[Encoder, Actor]: ...

    def state_tensors(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """Everything a resumed run needs of the learner: weights, optimiser moments, its own RNGs."""
        ...

    def load_state_tensors(self, tensors: Mapping[str, Tensor], meta: Mapping[str, Any], where: str) -> None: ...


class SharedLearner:
    """MTRL / MTRL-Demo / MTRL-PCGrad: one goal-conditioned agent for every task."""

    def __init__(self, agent: ExpertAgent, goals: Mapping[str, np.ndarray], cfg: MultiTaskConfig,
                 use_demos: bool) -> None:
        self.agent, self.goals, self.cfg, self.use_demos = agent, goals, cfg, use_demos
        self._goal_of: str | None = None

    def act(self, task: str, obs: np.ndarray, step: int) -> np.ndarray:
        if task != self._goal_of:
            self.agent.set_goal(self.goals[task])
            self._goal_of = task
        return self.agent.act(obs, step, eval_mode=False)

    def update(self, data: MultiTaskReplay, task: str, step: int) -> dict[str, float]:
        ac = self.cfg.agent
        demo = None
        if self.use_demos and ac.bc_regularize:
            demo = data.sample_bc(self.cfg.replay.demo_batch_size or ac.batch_size)
        return self.agent.update(data.sample(ac.batch_size), demo, step)

    def policy_modules(self) -> tuple[Encoder, Actor]:
        return self.agent.nets.encoder, self.agent.nets.actor

    def state_tensors(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        tensors, agent_meta = self.agent.state_tensors(with_optim=True)
        tensors.pop("goal", None)  # the goal of the task played last: the next `act` sets its own task's goal
        meta: dict[str, Any] = {"agent": agent_meta}
        if isinstance(self.agent, PCGradAgent):  # PCGrad shuffles the task order of its projections
            meta["pcgrad_rng"] = self.agent.rng.bit_generator.state
        return _prefixed("agent", tensors), meta

    def load_state_tensors(self, tensors: Mapping[str, Tensor], meta: Mapping[str, Any], where: str) -> None:
        self.agent.load_state_tensors(_unprefixed("agent", tensors), meta["agent"], where)
        if isinstance(self.agent, PCGradAgent):
            if "pcgrad_rng" not in meta:
                raise CheckpointError(f"{where}: PCGrad agent without its RNG state (saved by another method?)")
            self.agent.rng.bit_generator.state = meta["pcgrad_rng"]
        self._goal_of = None  # the next act sets the goal of the task it plays


class DistralLearner:
    """Distral: per-task agents regularised toward π0; π0 matches each task policy on its replay states."""

    def __init__(self, agents: Mapping[str, DistralAgent], centroid: Centroid, cfg: MultiTaskConfig) -> None:
        self.agents, self.centroid, self.cfg = dict(agents), centroid, cfg

    def act(self, task: str, obs: np.ndarray, step: int) -> np.ndarray:
        return self.agents[task].act(obs, step, eval_mode=False)

    def update(self, data: MultiTaskReplay, task: str, step: int) -> dict[str, float]:
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
            tensors.update(_prefixed(f"agent/{t}", agent_t))
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
            agent.load_state_tensors(_unprefixed(f"agent/{t}", tensors), meta["agents"][t], where)


@dataclass(frozen=True)
class Method:
    name: str
    uses_demos: bool
    build: Callable[[NetworkSpec, MultiTaskConfig, torch.device, Mapping[str, np.ndarray]], Learner]


def _shared(pcgrad: bool, use_demos: bool) -> Callable[..., Learner]:
    def build(spec: NetworkSpec, cfg: MultiTaskConfig, device: torch.device,
              goals: Mapping[str, np.ndarray]) -> Learner:
        first = next(iter(goals.values()))
        agent = (PCGradAgent(spec, cfg.agent, device, first, seed=cfg.train.seed) if pcgrad
                 else ExpertAgent(spec, cfg.agent, device, first))
        return SharedLearner(agent, goals, cfg, use_demos)
    return build


def _distral(spec: NetworkSpec, cfg: MultiTaskConfig, device: torch.device,
             goals: Mapping[str, np.ndarray]) -> Learner:
    centroid = Centroid(spec, cfg.distral.std, cfg.distral.lr, device)
    agents = {t: DistralAgent(spec, cfg.agent, device, g, centroid=centroid, kl_coef=cfg.distral.kl_coef)
              for t, g in goals.items()}
    return DistralLearner(agents, centroid, cfg)


METHOD_LEARNERS: dict[str, Method] = {m.name: m for m in (
    Method("mtrl", False, _shared(pcgrad=False, use_demos=False)),
    Method("mtrl-demo", True, _shared(pcgrad=False, use_demos=True)),
    Method("mtrl-pcgrad", False, _shared(pcgrad=True, use_demos=False)),
    Method("distral", False, _distral),
)}


# --- the loop --------------------------------------------------------------------------------------------
@dataclass
class RunState:
    """The run's counters, saved in the full checkpoint's header."""

    step: int = 0  # agent steps over all tasks
    episode: int = 0
    updates: int = 0
    pretrained: bool = False  # BC pretraining done (or none to do)
    started: bool = False  # the evaluation at step 0 done
    last_eval: int = 0
    last_save: int = 0
    episodes_stored: dict[str, int] = field(default_factory=dict)  # per task: replay episodes in the store
    wall_s: float = 0.0  # training seconds before the last (re)start, so wall_s columns run on after a resume
    bc_loss_first: float | None = None
    bc_loss_last: float | None = None


BuildFn = Callable[[NetworkSpec, MultiTaskConfig, torch.device, Mapping[str, np.ndarray]], Learner]


class MultiTaskRLTrainer:
    """`MultiTaskRLTrainer(cfg).run()`: one multi-task RL run of `cfg.train.method` on `cfg.train.tasks`;
    `MultiTaskRLTrainer.resume(run_dir).run()` continues a killed one."""

    def __init__(self, cfg: MultiTaskConfig, run_dir: str | Path | None = None,
                 goals: Mapping[str, np.ndarray] | None = None, build: BuildFn | None = None,
                 _resume: bool = False) -> None:
        """`goals` and `build` are hooks for runs that train on a subset of a larger task set (the lifelong
        baselines, learning/rl/lifelong.py): `goals` fixes each task's goal vector (e.g. one-hot slots for every
        task of a sequence, so the network never changes size) instead of indexing `train.tasks`; `build`
        replaces the method's learner (e.g. one warm-started from the previous stage, or a progressive net)."""
        self.cfg = cfg
        tc, nc = cfg.train, cfg.network
        if not tc.tasks:
            raise ConfigError("train.tasks is empty; give --tasks (e.g. metaworld/door-open metaworld/drawer-close)")
        self.method = METHOD_LEARNERS[tc.method]
        if self.method.uses_demos and not tc.demos:
            raise ConfigError(f"train.method {tc.method!r} learns from demos; give --demos <episode store>")
        if tc.demos and not self.method.uses_demos:
            raise ConfigError(f"train.method {tc.method!r} learns without demos, but train.demos is "
                              f"{tc.demos!r}; use --method mtrl-demo, or drop --demos")
        self.device = prepare_torch(tc.device, tc.threads, tc.seed)

        entries = [registry.entry(t) for t in tc.tasks]  # unknown names fail here, before any simulator starts
        obs_kind = nc.obs if nc.obs != "auto" else ("state" if entries[0].suite == "dmc" else "pixels")
        self.pixels = obs_kind == "pixels"
        self.tasks: dict[str, Task] = {}
        try:
            for t in tc.tasks:
                self.tasks[t] = registry.make(t, render=self.pixels, quality=tc.render_quality)
            specs = [self.tasks[t].spec for t in tc.tasks]
            check_compatible(specs, self.pixels)
        except Exception:
            self.close()
            raise
        self.names = list(tc.tasks)
        self.action_repeat = specs[0].action_repeat

        goal_kind = nc.goal_modality if nc.goal_modality != "auto" else "onehot"
        if goal_kind not in VECTOR_GOALS:
            raise ConfigError(f"network.goal_modality is {goal_kind!r}; multi-task RL conditions on a task vector: "
                              f"one of {VECTOR_GOALS}")
        if goals is None:
            dim = goal_lib.goal_dim(goal_kind, len(self.names))
            if nc.goal_dim:
                if goal_kind == "onehot" and nc.goal_dim < len(self.names):
                    raise ConfigError(f"network.goal_dim {nc.goal_dim} is too small for {len(self.names)} one-hot "
                                      f"tasks")
                dim = nc.goal_dim if goal_kind != "language" else dim
            self.goals = task_goals(goal_kind, self.names, specs, dim)
        else:
            missing = [t for t in self.names if t not in goals]
            if missing:
                raise ValueError(f"multi-task RL: no goal vector given for tasks {missing}")
            self.goals = {t: np.asarray(goals[t], np.float32) for t in self.names}
            dim = int(self.goals[self.names[0]].shape[0])
        obs_shape = (3, specs[0].image_size, specs[0].image_size) if self.pixels else (specs[0].state_dim,)
        self.spec = NetworkSpec(obs_modality=obs_kind, obs_shape=obs_shape, action_dim=specs[0].action_dim,
                                goal_modality=goal_kind, goal_dim=dim, hidden=nc.hidden, feature_dim=nc.feature_dim,
                                frame_stack=nc.frame_stack if self.pixels else 1, actor_layers=nc.actor_layers,
                                critic_layers=nc.critic_layers, critic_action_tile=nc.critic_action_tile,
                                state_encoder=nc.state_encoder)
        self.learner = (build or self.method.build)(self.spec, cfg, self.device, self.goals)

        self.run_dir = open_run_dir(run_dir, tc.runs_dir, tc.name or f"{tc.method}-{len(self.names)}tasks")
        if not _resume:
            write_text(self.run_dir / "config.yaml", dump_yaml(cfg))

        def buffer(t: str, i: int) -> ReplayBuffer:
            store = EpisodeStore(self._replay_dir(t))
            return ReplayBuffer(cfg.replay.capacity, self.pixels, self.spec.frame_stack,
                                cfg.agent.n_step or self.tasks[t].spec.n_step, cfg.agent.gamma,
                                seed=tc.seed + 10 * i, store=store)

        def demo_buffer(t: str, i: int) -> ReplayBuffer:
            return ReplayBuffer(10**9, self.pixels, self.spec.frame_stack, 1, cfg.agent.gamma,
                                seed=tc.seed + 10 * i + 1)

        self.data = MultiTaskReplay(self.names, self.goals, buffer, demo_buffer, seed=tc.seed)
        if self.method.uses_demos:
            self._load_demos()
        self.state = RunState()
        self.hash = config_hash(to_dict(cfg))
        self.last_metrics: dict[str, float] = {}
        self.eval_history: list[dict[str, Any]] = []
        self._eval_tasks: dict[str, Task] = {}
        self._start = time.time()
        self.on_update: Callable[[int, dict[str, float]], None] | None = None  # e.g. tests recording every update

    # The counters live in `state` (saved with checkpoints); these read them as before.
    @property
    def step(self) -> int:
        return self.state.step

    @property
    def episode(self) -> int:
        return self.state.episode

    @property
    def updates(self) -> int:
        return self.state.updates

    def _replay_dir(self, task: str) -> Path:
        return self.run_dir / "replay" / task.replace("/", "-")

    def _wall_s(self) -> float:
        return self.state.wall_s + time.time() - self._start

    @classmethod
    def resume(cls, run_dir: str | Path, overrides: Mapping[str, Any] | None = None,
               goals: Mapping[str, np.ndarray] | None = None, build: BuildFn | None = None) -> MultiTaskRLTrainer:
        """Continue a run from `run_dir/checkpoints/latest.safetensors` with its saved config (+ overrides, e.g.
        `{"train.steps": N}` to train on). `goals` and `build` as for the constructor (the lifelong stages)."""
        run_dir = Path(run_dir)
        ckpt = run_dir / "checkpoints" / LATEST
        if not ckpt.exists():
            raise FileNotFoundError(f"{run_dir}: no checkpoint {ckpt.relative_to(run_dir)} to resume from "
                                    f"(train.save_every > 0 writes one every that many steps)")
        cfg = load_config(MultiTaskConfig, run_dir / "config.yaml", dict(overrides or {}))
        trainer = cls(cfg, run_dir, goals=goals, build=build, _resume=True)
        try:
            trainer._load(ckpt)
        except Exception:
            trainer.close()
            raise
        if overrides:
            write_text(run_dir / "config.yaml", dump_yaml(cfg))
        return trainer

    def _load_demos(self) -> None:
        tc = self.cfg.train
        store = EpisodeStore(tc.demos, create=False)
        for t in self.names:
            demos = store.episodes(t)
            if tc.max_demos > 0:
                demos = demos[: tc.max_demos]
            if not demos:
                raise ValueError(f"demo store {tc.demos} holds no episodes of task {t!r} "
                                 f"(it has: {', '.join(store.tasks()) or 'nothing'})")
            for ep in demos:
                self.data.demos[t].add(ep, persist=False)

    # --- evaluation and checkpoints ------------------------------------------------------------------
    def policy(self) -> MultiTaskPolicy:
        encoder, actor = self.learner.policy_modules()
        return MultiTaskPolicy(encoder, actor, self.spec, self.goals, self.device)

    def evaluate(self) -> dict[str, float]:
        """Every task with the unified policy; returns task -> score (success rate; DMC return/1000)."""
        from polytask.learning.policies.evaluate import evaluate

        tc = self.cfg.train
        policy = self.policy()
        scores, returns = {}, {}
        for t in self.names:
            if t not in self._eval_tasks:
                self._eval_tasks[t] = registry.make(t, render=self.pixels, quality=tc.render_quality)
            res = evaluate(policy, t, episodes=tc.eval_episodes, seed=EVAL_SEED, task=self._eval_tasks[t])
            scores[t], returns[t] = res.mean_score, res.mean_return
        row: dict[str, Any] = {"step": self.step, "frames": self.step * self.action_repeat,
                               "effective_tasks": float(sum(scores.values())),
                               "mean_return": float(np.mean(list(returns.values())))}
        for t in self.names:
            row[f"score/{t}"], row[f"return/{t}"] = scores[t], returns[t]
        self.eval_history.append(row)
        write_rows(self.eval_history, self.run_dir / "eval_history.csv")
        self.state.last_eval = self.step
        return scores

    def save(self) -> Path:
        """The full training state (checkpoints/latest.safetensors) and the unified policy (policy.safetensors);
        returns the policy's path."""
        st = self.state
        st.episodes_stored = {t: b.episodes_added for t, b in self.data.replay.items()}
        st.wall_s, self._start, st.last_save = round(self._wall_s(), 2), time.time(), st.step
        tensors, learner_meta = self.learner.state_tensors()
        rng_t, rng_meta = rng_tensors()
        tensors.update(rng_t)
        base = {"method": self.cfg.train.method, "step": st.step, "frames": st.step * self.action_repeat,
                "config": to_dict(self.cfg)}
        ckpt_dir = self.run_dir / "checkpoints"
        save_checkpoint(ckpt_dir / LATEST, tensors, {
            **base, "kind": STATE_KIND, "network": self.spec.to_dict(), "tasks": self.names,
            "config_hash": self.hash, "run_state": dataclasses.asdict(st), "learner": learner_meta, "rng": rng_meta,
            "replay": self.data.state(), "eval_history": self.eval_history,
            "last_metrics": {k: v for k, v in self.last_metrics.items() if math.isfinite(v)}})  # JSON has no NaN
        encoder, actor = self.learner.policy_modules()
        return save_multitask_policy(ckpt_dir / POLICY_FILE, encoder, actor, self.spec, self.goals, base)

    def _load(self, path: Path) -> None:
        where = str(path)
        tensors, header = load_checkpoint(path, expect={"kind": STATE_KIND, "network": self.spec, "tasks": self.names,
                                                        "method": self.cfg.train.method}, device="cpu")
        names = {f.name for f in dataclasses.fields(RunState)}
        self.state = RunState(**{k: v for k, v in header["run_state"].items() if k in names})
        self.learner.load_state_tensors(tensors, header["learner"], where)
        # Episodes the killed process stored after this checkpoint are not part of the resumed history.
        for t, buf in self.data.replay.items():
            keep = int(self.state.episodes_stored.get(t, 0))
            orphans = EpisodeStore(self._replay_dir(t)).paths()[keep:]
            if orphans:
                dest = self.run_dir / "replay-orphans" / self._replay_dir(t).name
                dest.mkdir(parents=True, exist_ok=True)
                for p in orphans:
                    shutil.move(str(p), dest / p.name)
                log.info("%s: moved %d episodes stored after the checkpoint to %s", t, len(orphans), dest)
            buf.store = EpisodeStore(self._replay_dir(t))
            buf.reload(keep)
        self.data.load_state(header["replay"], where)
        self.eval_history = list(header.get("eval_history", []))
        self.last_metrics = dict(header.get("last_metrics", {}))
        if self.eval_history:
            write_rows(self.eval_history, self.run_dir / "eval_history.csv")
        else:
            (self.run_dir / "eval_history.csv").unlink(missing_ok=True)
        truncate_csv(self.run_dir / "train.csv", TRAIN_COLUMNS, self.state.step)
        restore_rng(tensors, header["rng"])
        self._start = time.time()
        log.info("resumed %s at step %d (episode %d)", self.run_dir, self.state.step, self.state.episode)

    # --- training ------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Pretraining, the evaluation at step 0, `train.steps` steps, the final evaluation and checkpoint; a resumed
        run skips what its checkpoint says is done."""
        tc, st = self.cfg.train, self.state
        summary: dict[str, Any] = {"run_dir": str(self.run_dir), "method": tc.method, **self.pretrain()}
        if not st.started:
            summary["eval_start"] = self.evaluate()
            st.started = True
        self._train()
        if st.last_eval == st.step and self.eval_history:  # resumed from the final checkpoint: nothing new to score
            last = self.eval_history[-1]
            summary["eval_final"] = {t: float(last[f"score/{t}"]) for t in self.names}
        else:
            summary["eval_final"] = self.evaluate()
        if st.last_save != st.step or not (self.run_dir / "checkpoints" / POLICY_FILE).exists():
            self.save()
        rows = per_task_rows({tc.method: summary["eval_final"]}, self.names)
        table(rows, self.run_dir / "eval", title=f"{tc.method}: success per task after {self.step} steps")
        summary.update(step=self.step, updates=self.updates, wall_s=round(self._wall_s(), 1),
                       effective_tasks=float(sum(summary["eval_final"].values())))
        return summary

    def pretrain(self) -> dict[str, float]:
        """Multi-task BC pretraining on every task's demos (demo methods with bc.pretrain_steps > 0), then a
        checkpoint (with train.save_every > 0); returns the first and last loss, or nothing when there was none.
        A resumed run does not pretrain again."""
        cfg, st = self.cfg, self.state
        if not st.pretrained:
            st.pretrained = True
            if not (self.method.uses_demos and cfg.bc.pretrain_steps > 0):
                return {}
            agent = self.learner.agent  # type: ignore[attr-defined]  (demo methods share one agent)
            losses = pretrain_bc(agent, self.data, cfg.bc.pretrain_steps, cfg.bc.batch_size, cfg.bc.lr)  # type: ignore[arg-type]
            st.bc_loss_first, st.bc_loss_last = losses[0], losses[-1]
            if cfg.train.save_every > 0:
                self.save()
        if st.bc_loss_first is None or st.bc_loss_last is None:
            return {}
        return {"bc_loss_first": st.bc_loss_first, "bc_loss_last": st.bc_loss_last}

    def train(self) -> None:
        """The RL loop alone (no pretraining or final evaluation): on to `train.steps` agent steps, with the
        periodic evaluations and checkpoints."""
        self._train()

    def _train(self) -> None:
        cfg, tc, st = self.cfg, self.cfg.train, self.state
        seed_steps = tc.seed_frames // self.action_repeat
        every = cfg.agent.update_every_steps
        stacker = FrameStacker(self.spec.frame_stack, self.pixels)
        progress = Progress(tc.steps, st.step, self.action_repeat, enabled=tc.progress, desc=f"train {tc.method}")
        try:
            while st.step < tc.steps:
                name = self.names[st.episode % len(self.names)]
                task = self.tasks[name]
                step = task.reset(seed=tc.seed * 1_000_003 + st.episode)
                x = stacker.reset(step.pixels if self.pixels else step.state)
                rec = EpisodeRecorder(step)
                while not step.done and st.step < tc.steps:
                    action = self.learner.act(name, x, st.step)
                    step = task.step(action)
                    x = stacker.push(step.pixels if self.pixels else step.state)
                    rec.add(action, step)
                    st.step += 1
                    n_up = 0
                    if st.step >= seed_steps and st.step % every == 0 and len(self.data) > 0:
                        self.last_metrics = self.learner.update(self.data, name, st.step)
                        if self.on_update is not None:
                            self.on_update(st.step, self.last_metrics)
                        st.updates += 1
                        n_up = 1
                    progress.advance(1, n_up)
                episode = rec.episode(task, source="replay", keep_pixels=self.pixels,
                                      extra={"terminal": bool(rec.last.terminal),
                                             "env_return": float(rec.env_reward.sum()),
                                             "episode_index": self.episode})
                self.data.replay[name].add(episode)
                st.episode += 1
                self._log_train(name, episode)
                if tc.eval_every > 0 and st.step - st.last_eval >= tc.eval_every and st.step < tc.steps:
                    self.evaluate()
                if tc.save_every > 0 and st.step - st.last_save >= tc.save_every:
                    self.save()
        finally:
            progress.close()

    def _log_train(self, name: str, episode: Episode) -> None:
        path = self.run_dir / "train.csv"
        row = {"step": self.step, "frames": self.step * self.action_repeat, "episode": self.episode, "task": name,
               "episode_return": float(episode.reward.sum()), "episode_score": episode.score,
               "episode_success": int(episode.episode_success), "wall_s": round(self._wall_s(), 2),
               **self.last_metrics}
        append_csv_row(path, TRAIN_COLUMNS, row)

    def close(self) -> None:
        for t in [*self.tasks.values(), *getattr(self, "_eval_tasks", {}).values()]:
            t.close()


def train_multitask(cfg: MultiTaskConfig, run_dir: str | Path | None = None) -> dict[str, Any]:
    trainer = MultiTaskRLTrainer(cfg, run_dir)
    try:
        return trainer.run()
    finally:
        trainer.close()


def run_multitask(method: str, tasks: Sequence[str], demos: str = "", steps: int | None = None,
                  config: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
                  run_dir: str | Path | None = None) -> dict[str, Any]:
    """One run of `method` on `tasks`: defaults, then `config` (YAML), then `overrides` (dotted keys), then the
    explicit arguments. What the baseline registry and `polytask train-multitask` call."""
    from polytask.learning.config import load_config

    ov: dict[str, Any] = dict(overrides or {})
    ov.update({"train.method": method, "train.tasks": list(tasks)})
    if demos:
        ov["train.demos"] = str(demos)
    if steps is not None:
        ov["train.steps"] = int(steps)
    cfg = load_config(MultiTaskConfig, config, ov)
    if run_dir is not None:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
    return train_multitask(cfg, run_dir)
