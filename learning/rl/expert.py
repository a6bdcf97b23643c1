"""A per-task expert: BC pretraining on the task's demos, then DrQ-v2 finetuning with the BC regulariser (Eq. 1),
on the environment's reward or OT rewards against the demos — the online-RL loop (rl/loop.py) with a one-task
learner (`AgentLearner`), a reward hook (rl/rewards.py) and the task's goal (learning/goals.py: none by default on
states, the last frame of a successful demo on pixels, or a task vector).

`ExpertTrainer(cfg).run()`, or `ExpertTrainer.resume(run_dir).run()` after a kill (an exact resume: rl/loop.py).
The run folder holds, besides the loop's files, `checkpoints/expert.safetensors`: the policy alone (encoder, actor,
goal) that `polytask eval`, `record-demos --policy`, relabelling and the policy server load.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from polytask.learning import goals as goal_lib
from polytask.learning.config import ConfigError
from polytask.learning.data.checkpoint import (
    load_checkpoint,
    load_module,
    module_tensors,
    read_header,
    save_checkpoint,
    unprefixed,
)
from polytask.learning.data.frames import goal_image_chw
from polytask.learning.data.replay import ReplayBuffer
from polytask.learning.policies.expert import KIND
from polytask.learning.rl.agent import ExpertAgent
from polytask.learning.rl.expert_config import ExpertConfig
from polytask.learning.rl.learners import AgentLearner
from polytask.learning.rl.loop import LATEST, STATE_KIND, OnlineRL
from polytask.learning.rl.parts import RunParts, goal_modality, load_demos, make_tasks, network_spec, observes_pixels
from polytask.learning.rl.rewards import EnvReward, OTReward
from polytask.learning.rl.torch_setup import prepare_torch
from polytask.sim.task import Task

log = logging.getLogger(__name__)

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config" / "expert.yaml"  # the documented defaults
EXPERT = "expert.safetensors"
METHOD = "expert"


def check_from_scratch(cfg: ExpertConfig) -> None:
    """Without demos a run learns from the environment's reward alone (how the DMC demonstrators are trained)."""
    wrong = []
    if cfg.reward.kind != "env":
        wrong.append(f"reward.kind is {cfg.reward.kind!r} (OT rewards match demos; need 'env')")
    if cfg.bc.pretrain_steps > 0:
        wrong.append(f"bc.pretrain_steps is {cfg.bc.pretrain_steps} (need 0)")
    if cfg.agent.bc_regularize:
        wrong.append("agent.bc_regularize is true (need false)")
    if cfg.network.goal_modality == "image":
        wrong.append("network.goal_modality is 'image' (the goal image comes from a demo)")
    if wrong:
        raise ConfigError("train.demos is empty, so the run learns from scratch, but " + "; ".join(wrong)
                          + ". Give --demos <episode store>, or --bc-steps 0 --set agent.bc_regularize=false")


def resolve_checkpoint(path: str | Path) -> Path:
    """A run folder means its latest full checkpoint (critic included), else its policy-only expert file."""
    path = Path(path)
    if path.is_dir():
        for name in (LATEST, EXPERT):
            if (path / "checkpoints" / name).exists():
                return path / "checkpoints" / name
        raise FileNotFoundError(f"{path}: no checkpoints/{LATEST} or checkpoints/{EXPERT}")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    return path


def warm_start(agent: ExpertAgent, path: str | Path) -> Path:
    """Seed `agent`'s networks from another run of the same architecture (e.g. the neighbouring DMC torso variant).

    Optimiser state, step counters and replay are not taken: the new run starts at step 0. A policy-only file
    seeds encoder and actor; a full checkpoint also seeds the critics and their targets.
    """
    ckpt = resolve_checkpoint(path)
    full = read_header(ckpt).get("kind") == STATE_KIND
    tensors, _ = load_checkpoint(ckpt, expect={"kind": STATE_KIND if full else KIND, "network": agent.spec},
                                 device="cpu")
    if full:
        tensors = unprefixed("agent", tensors)
    load_module(agent.nets.encoder, tensors, "encoder", str(ckpt))
    load_module(agent.nets.actor, tensors, "actor", str(ckpt))
    if any(k.startswith("critic/") for k in tensors):
        load_module(agent.nets.critic, tensors, "critic", str(ckpt))
        load_module(agent.critic_target, tensors, "critic_target", str(ckpt))
    else:
        agent.critic_target.load_state_dict(agent.nets.critic.state_dict())
    log.info("warm start from %s", ckpt)
    return ckpt


def write_expert_policy(run: OnlineRL, path: Path) -> Path:
    """The policy alone (encoder, actor and the task's goal), for everything that acts with an expert."""
    encoder, actor = run.learner.policy_modules()
    tensors = {**module_tensors("encoder", encoder), **module_tensors("actor", actor)}
    goal = run.learner.agent.goal  # type: ignore[attr-defined]  (an expert's learner is one agent)
    if goal is not None:
        tensors["goal"] = goal[0]
    task = run.names[0]
    return save_checkpoint(path, tensors, {
        "kind": KIND, "network": run.spec.to_dict(), "goal_modality": run.spec.goal_modality, "task": task,
        "tasks": [task], "step": run.step, "frames": run.step * run.action_repeat, "config_hash": run.hash})


class ExpertTrainer(OnlineRL):
    """One task's expert run. `make_task(name, render)` replaces the registry's factory for the training task (the
    online trainer node drives the sim bridge or the robot through topics); evaluation always runs in-process."""

    config_type = ExpertConfig

    def __init__(self, cfg: ExpertConfig, run_dir: str | Path | None = None,
                 make_task: Callable[[str, bool], Task] | None = None, _resume: bool = False) -> None:
        tc, nc = cfg.train, cfg.network
        if not tc.task:
            raise ConfigError("train.task is empty; give --task (e.g. metaworld/button-press-topdown)")
        if not tc.demos:
            check_from_scratch(cfg)
        device = prepare_torch(tc.device, tc.threads, tc.seed)
        pixels = observes_pixels(nc, tc.task)
        tasks = make_tasks([tc.task], pixels, tc.render_quality, make_task, tc.env_workers)
        try:
            ts = tasks[tc.task].spec
            demos = load_demos(tc.demos, [tc.task], tc.max_demos) if tc.demos else {}
            goal_mod = goal_modality(nc, "image" if pixels else "none", ("none", *goal_lib.GOAL_KINDS), "experts")
            goal: np.ndarray | None = None
            if goal_mod == "image":
                goal = goal_image_chw(goal_lib.demo_goal_image(demos.get(tc.task, [])))
            elif goal_mod != "none":
                goal = goal_lib.vector_goals(goal_mod, [ts], nc.goal_dim)[tc.task]
            spec = network_spec(nc, ts, pixels, goal_mod, 0 if goal is None or goal_mod == "image" else len(goal))
            agent = ExpertAgent(spec, cfg.agent, device, goal)
            if agent.nets.encoder.standardises:  # frozen to the demos' states (a resumed run reloads its own)
                if not demos.get(tc.task):
                    raise ConfigError("network.state_encoder 'standardise' takes its mean/std from the demos; "
                                      "train.demos has none for this task")
                agent.nets.encoder.set_normalizer(np.concatenate([d.state for d in demos[tc.task]]))
            if tc.init_from and not _resume:
                warm_start(agent, tc.init_from)
            learner = AgentLearner(agent, {tc.task: goal}, cfg, use_demos=True, shared=False)
            reward = (OTReward(cfg.reward, agent.nets.encoder, demos[tc.task], spec.frame_stack, pixels, device)
                      if cfg.reward.kind == "ot" else EnvReward())
            goal_hwc = goal_lib.demo_goal_image(demos[tc.task]) if goal_mod == "image" else None
        except Exception:
            for task in tasks.values():
                task.close()
            raise
        parts = RunParts(method=METHOD, tasks=tasks, spec=spec, goals={tc.task: goal}, learner=learner, reward=reward,
                         demos=demos, replay_dirs={tc.task: ""}, policy_file=EXPERT, write_policy=write_expert_policy,
                         run_name=f"{tc.task.replace('/', '-')}-{cfg.reward.kind}", goal_pixels={tc.task: goal_hwc},
                         device=device)
        super().__init__(cfg, parts, run_dir, resume=_resume)

    # the expert's one task, agent and replay
    @property
    def task(self) -> Task:
        return self.tasks[self.names[0]]

    @property
    def agent(self) -> ExpertAgent:
        return self.learner.agent  # type: ignore[attr-defined]

    @property
    def replay(self) -> ReplayBuffer:
        return self.data.replay[self.names[0]]

    def progress(self) -> dict[str, Any]:
        """What a watcher reports of the run (the online trainer node publishes it)."""
        st = self.state
        return {"step": st.step, "episode": st.episode, "updates": st.updates,
                "episodes_stored": self.replay.episodes_added, "losses": dict(self.last_metrics),
                "eval": self.last_eval, "checkpoint": str(self.policy_path) if self.policy_path.exists() else None}


def train_expert(cfg: ExpertConfig) -> dict[str, Any]:
    trainer = ExpertTrainer(cfg)
    try:
        return trainer.run()
    finally:
        trainer.close()


