"""The paper's lifelong baselines trained its way, by RL + Eq. 1's BC regulariser: Fine-tuning and Progressive Nets.

Tasks arrive one at a time, in a given order. Adding task k is one stage of MTRL-Demo (learning/rl/multitask.py)
restricted to task k ONLY — its environment reward, its demos (BC pretraining, then Eq. 1's BC term), its replay —
after which every task seen so far is evaluated, so forgetting shows. BC pretraining (bc.pretrain_steps) runs at
the start of every stage, on the new task's demos, from the weights the stage starts with — what a per-task expert
does with its task's demos. What carries over from stage to stage differs:

- `finetune-rl` (Fine-tuning): one goal-conditioned DrQ-v2 agent (learning/rl/agent.py) whose one-hot goal has a
  slot for every task of the suite (learning/goals.py), so its parameter count never changes. Stage k starts from
  the weights (encoder, actor, critic and target critic) after stage k-1, with fresh Adam moments, and learns task
  k alone: nothing keeps it from overwriting what tasks 1..k-1 needed.
- `progressive-rl` (Progressive Nets, Rusu et al. 2016): stage k adds a new actor column with lateral connections
  from the frozen columns of tasks 1..k-1 (`ProgressiveNet` of learning/nets/progressive.py, the same lateral
  design as the BC-trained baseline of learning/distill/progressive.py), so earlier tasks' actions never change,
  and the parameter count grows. The critic is per task: a fresh twin critic for every column, used only to train
  it and not kept in the policy (the column's task is known, so the critic does not need to transfer). The encoder
  must hold no weights (state observations with the identity state encoder): a shared trained encoder would change
  under the frozen columns.

Layout of a run folder: `history.json` (one `Stage` per added task: per-task scores of every seen task, effective
number of tasks, policy parameter count, checkpoint; the forgetting plot reads it, as for
learning/distill/lifelong.py), `forgetting.png`, and `stage_NN/` (the stage's run folder of the online-RL loop,
learning/rl/loop.py, whose policy checkpoint, checkpoints/policy.safetensors, is the method's: a `multitask-rl`
policy of every task seen so far plus, for fine-tuning, checkpoints/agent.safetensors, the full agent the next stage
starts from; or a `progressive-rl` checkpoint of every column. `polytask eval` loads both, and the stage is scored
from the file it wrote). Rerunning on the same folder continues with the next task of the
order. A stage killed midway continues from its last full checkpoint (stage_NN/checkpoints/latest.safetensors,
every `train.save_every` steps and after BC pretraining: the loop's exact resume, with the stage's saved config and
this command's `train.steps`); without one it starts over.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from polytask.learning import goals as goal_lib
from polytask.learning.config import ConfigError, load_config, to_dict
from polytask.learning.data.checkpoint import (
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from polytask.learning.nets.drqv2 import NetworkSpec, count_parameters
from polytask.learning.nets.progressive import ProgressiveNet
from polytask.learning.policies.evaluate import evaluate
from polytask.learning.policies.loaders import load_any_policy
from polytask.learning.policies.multitask import save_multitask_policy
from polytask.learning.policies.progressive import RL_KIND, load_progressive, save_progressive
from polytask.learning.reporting.lifelong import HISTORY, Stage, next_stage, read_history, write_history
from polytask.learning.reporting.report import forgetting_plot
from polytask.learning.reporting.run_logging import make_run_dir
from polytask.learning.rl.agent import ExpertAgent
from polytask.learning.rl.learners import AgentLearner, BuildFn, Learner
from polytask.learning.rl.loop import EVAL_SEED, OnlineRL, latest_checkpoint
from polytask.learning.rl.multitask import MultiTaskRLTrainer
from polytask.learning.rl.multitask_config import MultiTaskConfig
from polytask.learning.rl.parts import PolicyWriter, goal_modality

AGENT_KIND = "lifelong-rl-agent"  # the full fine-tuning agent (not a policy: the next stage's starting point)
AGENT_FILE = "agent.safetensors"

# --- the two methods ---------------------------------------------------------------------------------------
class LifelongMethod(Protocol):
    """What a stage needs of a method: a learner for the new task (built from the previous stage), the writer of
    the policy of every task seen so far, and the policy's parameter count."""

    name: str

    def builder(self, previous: Mapping[str, Any] | None) -> BuildFn: ...

    def writer(self, seen: Mapping[str, np.ndarray], header: Mapping[str, Any]) -> PolicyWriter: ...

    def parameters(self, learner: Learner) -> int: ...


class FineTune:
    """One fixed-size goal-conditioned agent, warm-started from the previous stage's full agent."""

    name = "finetune-rl"

    def builder(self, previous: Mapping[str, Any] | None) -> BuildFn:
        def build(spec: NetworkSpec, cfg: MultiTaskConfig, device: torch.device,
                  goals: Mapping[str, np.ndarray]) -> Learner:
            agent = ExpertAgent(spec, cfg.agent, device, next(iter(goals.values())))
            if previous is not None:
                path = Path(previous["checkpoint"]).with_name(AGENT_FILE)
                tensors, header = load_checkpoint(path, expect={"kind": AGENT_KIND}, device="cpu")
                before = NetworkSpec.from_dict(header.get("network"), str(path))
                if before != spec:
                    raise CheckpointError(f"{path}: the previous stage's networks differ from this stage's "
                                          f"({'; '.join(before.differences(spec))}); keep the config fixed")
                agent.load_state_tensors(tensors, {}, str(path))
            return AgentLearner(agent, goals, cfg, use_demos=True, shared=True)
        return build

    def writer(self, seen: Mapping[str, np.ndarray], header: Mapping[str, Any]) -> PolicyWriter:
        def write(run: OnlineRL, path: Path) -> Path:
            agent: ExpertAgent = run.learner.agent  # type: ignore[attr-defined]
            tensors, _ = agent.state_tensors(with_optim=False)
            save_checkpoint(path.with_name(AGENT_FILE), tensors,
                            {"kind": AGENT_KIND, "network": run.spec.to_dict(), **header, "step": run.step})
            encoder, actor = run.learner.policy_modules()
            return save_multitask_policy(path, encoder, actor, run.spec, seen, {**header, "step": run.step})
        return write

    def parameters(self, learner: Learner) -> int:
        return sum(count_parameters(m) for m in learner.policy_modules())


class ProgressiveActor(nn.Module):
    """The expert's actor interface (obs features, goal features) -> action over one column of a ProgressiveNet.
    The column is the task's own, so the goal features are not needed (the per-task critic still reads them)."""

    def __init__(self, net: ProgressiveNet, column: int) -> None:
        super().__init__()
        self.net, self.column = net, column

    def forward(self, obs_feat: Tensor, goal_feat: Tensor) -> Tensor:
        return self.net(obs_feat, self.column)


class ProgressiveAgent(ExpertAgent):
    """DrQ-v2 + Eq. 1 whose actor is a new column of `net` (earlier columns frozen) and whose critic is fresh."""

    def __init__(self, spec: NetworkSpec, cfg: Any, device: torch.device, goal: np.ndarray,
                 net: ProgressiveNet) -> None:
        if spec.obs_modality != "state" or spec.state_encoder != "identity":
            raise ConfigError(f"progressive-rl needs state observations with the identity state encoder (got "
                              f"{spec.obs_modality}, {spec.state_encoder}): a trained encoder would be shared by "
                              f"every column and change under the frozen ones")
        if (net.obs_dim, net.action_dim, net.hidden, net.layers) != (spec.obs_repr_dim, spec.action_dim,
                                                                    spec.hidden, spec.actor_layers):
            raise CheckpointError(f"progressive-rl: the previous columns are {net.obs_dim}->{net.action_dim} with "
                                  f"{net.layers}x{net.hidden}, this stage's network is {spec.obs_repr_dim}->"
                                  f"{spec.action_dim} with {spec.actor_layers}x{spec.hidden}; keep the config fixed")
        super().__init__(spec, cfg, device, goal)
        column = net.add_column()  # freezes every earlier column and lateral
        self.nets.actor = ProgressiveActor(net, column).to(self.device)
        self.actor_opt = torch.optim.Adam([p for p in self.nets.actor.parameters() if p.requires_grad], lr=cfg.lr)


class Progressive:
    """A new frozen-after-use actor column per task; the checkpoint maps each task to its column."""

    name = "progressive-rl"

    def builder(self, previous: Mapping[str, Any] | None) -> BuildFn:
        def build(spec: NetworkSpec, cfg: MultiTaskConfig, device: torch.device,
                  goals: Mapping[str, np.ndarray]) -> Learner:
            if previous is None:
                net = ProgressiveNet(spec.obs_repr_dim, spec.action_dim, spec.hidden, spec.actor_layers)
            else:
                net, _ = load_progressive(previous["checkpoint"])
            agent = ProgressiveAgent(spec, cfg.agent, device, next(iter(goals.values())), net.to(device))
            return AgentLearner(agent, goals, cfg, use_demos=True, shared=True)
        return build

    @staticmethod
    def _net(learner: Learner) -> ProgressiveNet:
        actor: ProgressiveActor = learner.policy_modules()[1]  # type: ignore[assignment]
        return actor.net

    def writer(self, seen: Mapping[str, np.ndarray], header: Mapping[str, Any]) -> PolicyWriter:
        def write(run: OnlineRL, path: Path) -> Path:
            return save_progressive(path, self._net(run.learner), {t: i for i, t in enumerate(seen)}, kind=RL_KIND,
                                    **header, step=run.step, network=run.spec.to_dict())
        return write

    def parameters(self, learner: Learner) -> int:
        return self._net(learner).num_parameters()


METHODS: dict[str, LifelongMethod] = {m.name: m for m in (FineTune(), Progressive())}


def stage_goals(cfg: MultiTaskConfig, tasks: Sequence[str]) -> dict[str, np.ndarray]:
    """The goal vector of each task (learning/goals.py: keyed on the task's spec, one-hot over its whole suite by
    default), so a stage's network input has the same size whichever tasks came before."""
    kind = goal_modality(cfg.network, "onehot", goal_lib.VECTOR_KINDS, "lifelong RL learners")
    return goal_lib.task_goals(kind, tasks, cfg.network.goal_dim)


# --- one stage -----------------------------------------------------------------------------------------------
@dataclass
class LifelongResult:
    stage: Stage
    bc_loss_first: float | None
    bc_loss_last: float | None
    updates: int


def add_task_rl(run_dir: str | Path, method: str, order: Sequence[str], cfg: MultiTaskConfig,
                eval_episodes: int | None = None, log: Callable[[str], None] = print) -> LifelongResult:
    """Add the next task of `order` (the first not yet in `<run_dir>/history.json`) by one RL + BC stage of
    `train.steps` agent steps on that task alone, evaluate every task seen so far, and append the stage."""
    if method not in METHODS:
        raise ValueError(f"lifelong RL method {method!r} unknown; expected one of {sorted(METHODS)}")
    if not cfg.train.demos:
        raise ConfigError(f"lifelong {method} learns with the BC regulariser; give --demos <episode store>")
    impl = METHODS[method]
    run_dir = Path(run_dir)
    history, k = next_stage(run_dir, order)
    other = {s.get("method") for s in history} - {method}
    if other:
        raise ValueError(f"{run_dir / HISTORY}: stages were trained by {sorted(map(str, other))}, not {method!r}")
    new, seen = order[k], list(order[: k + 1])
    seen_goals = stage_goals(cfg, seen)
    stage_dir = run_dir / f"stage_{k + 1:02d}"
    stage_cfg = replace(cfg, train=replace(cfg.train, method="mtrl-demo", tasks=[new], seed=cfg.train.seed + k,
                                           name=""))
    start = time.perf_counter()
    hooks = {"build": impl.builder(history[-1] if history else None),
             "write_policy": impl.writer(seen_goals, {"method": method, "stage": k + 1,
                                                      "config": to_dict(stage_cfg)})}
    if latest_checkpoint(stage_dir) is not None:  # a stage killed after a checkpoint continues from it
        trainer = MultiTaskRLTrainer.resume(stage_dir, {"train.steps": stage_cfg.train.steps,
                                                        "train.progress": stage_cfg.train.progress}, **hooks)
        log(f"[lifelong {method}] stage {k + 1} ({new}) resumes at step {trainer.step}")
    else:
        if stage_dir.exists():
            shutil.rmtree(stage_dir)  # killed before any checkpoint: its replay and logs start over with it
        trainer = MultiTaskRLTrainer(stage_cfg, stage_dir, **hooks)
    try:
        params_before = impl.parameters(trainer.learner)
        bc = trainer.pretrain()
        trainer.train()
        ckpt = trainer.save()
        policy = load_any_policy(ckpt).policy  # what the stage wrote is what gets scored
        episodes = eval_episodes or cfg.train.eval_episodes
        scores = {t: evaluate(policy, t, episodes=episodes, seed=EVAL_SEED, render=trainer.pixels).mean_score
                  for t in seen}
        params = impl.parameters(trainer.learner)
    finally:
        trainer.close()
    if method == "finetune-rl" and params != params_before:
        raise RuntimeError(f"lifelong {method}: parameter count changed from {params_before} to {params}")
    stage = Stage(index=k + 1, task=new, tasks=seen, scores=scores, effective=float(sum(scores.values())),
                  parameters=params, checkpoint=str(ckpt), seconds=time.perf_counter() - start,
                  train_steps=trainer.step)
    stages = [*history, {**stage.to_dict(), "method": method, "updates": trainer.updates, **bc}]
    write_history(run_dir, stages)
    forgetting_plot({method: stages}, order, run_dir / "forgetting.png")
    log(f"[lifelong {method}] +{new}: {k + 1} tasks, effective {stage.effective:.2f}, params {params}, "
        f"{stage.seconds:.0f}s")
    return LifelongResult(stage, bc.get("bc_loss_first"), bc.get("bc_loss_last"), trainer.updates)


def run_lifelong_rl(method: str, tasks: Sequence[str], demos: str = "", steps: int | None = None,
                    config: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
                    run_dir: str | Path | None = None, add: int | None = None,
                    log: Callable[[str], None] = print) -> dict[str, Any]:
    """Add the tasks of `tasks` (the order) not yet in `run_dir`, at most `add` of them (None: all); `steps` is per
    added task. Config as `run_multitask` (train.method is set per stage). What the baseline registry and
    `polytask train-multitask --method finetune-rl|progressive-rl` call; returns the last stage's summary."""
    if method not in METHODS:
        raise ValueError(f"lifelong RL method {method!r} unknown; expected one of {sorted(METHODS)}")
    ov: dict[str, Any] = dict(overrides or {})
    ov.update({"train.method": "mtrl-demo", "train.tasks": list(tasks)})
    if demos:
        ov["train.demos"] = str(demos)
    if steps is not None:
        ov["train.steps"] = int(steps)
    cfg = load_config(MultiTaskConfig, config, ov)
    if not cfg.train.demos:
        raise ConfigError(f"lifelong {method} learns with the BC regulariser; give --demos <episode store>")
    stage_goals(cfg, tasks)  # bad names or goal settings fail before a folder is made
    if run_dir is None:
        run_dir = make_run_dir(cfg.train.runs_dir, cfg.train.name or f"{method}-{len(tasks)}tasks")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    todo = len(tasks) - len(read_history(run_dir))
    if todo <= 0:
        raise ValueError(f"{run_dir}: all {len(tasks)} tasks of {list(tasks)} already added")
    for _ in range(min(todo, add) if add is not None else todo):
        add_task_rl(run_dir, method, tasks, cfg, log=log)
    hist = read_history(run_dir)
    last = hist[-1]
    return {"run_dir": str(run_dir), "method": method, "step": int(last["train_steps"]), "stages": len(hist),
            "tasks": list(last["tasks"]), "parameters": [int(s["parameters"]) for s in hist],
            "effective_tasks": float(last["effective"]), "eval_final": dict(last["scores"]),
            "checkpoint": str(last["checkpoint"])}
