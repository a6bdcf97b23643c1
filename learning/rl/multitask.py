"""Multi-task RL baselines of the paper: MTRL, MTRL-Demo, MTRL-PCGrad and Distral, on the expert's DrQ-v2 agent.

The online-RL loop (rl/loop.py) over several tasks: episodes cycle over the tasks, each task keeps its own replay
(persisted under `<run>/replay/<task>/`), and an update of a shared agent samples one batch spread evenly over the
tasks, each row carrying its task's goal vector. The learner is the method's, from `LEARNERS` (rl/learners.py):
- mtrl: one goal-conditioned agent (one-hot task goal), environment reward, no demos.
- mtrl-demo: the same, plus the demos: multi-task BC pretraining on every task's demos, then Eq. 1's BC term with
  per-task demo batches carrying their goals (the paper's "initialization and regularization").
- mtrl-pcgrad: mtrl whose per-task critic and actor losses are combined by PCGrad (rl/multitask_agents.py).
- distral: one agent per task (it updates while its task is being played, as a per-task expert would) regularised
  toward π0, and π0 trained on all tasks' replay states every update; π0 is the unified policy.

Besides the loop's files, the run folder holds checkpoints/policy.safetensors: the unified policy (encoder, actor,
one goal per task; policies/multitask.py loads it, never unpickling). Runs resume exactly after a kill
(`MultiTaskRLTrainer.resume(run_dir)`, tests/test_multitask_resume.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from polytask.learning import goals as goal_lib
from polytask.learning.config import ConfigError, load_config, to_dict
from polytask.learning.policies.multitask import save_multitask_policy
from polytask.learning.rl.learners import LEARNERS, BuildFn
from polytask.learning.rl.loop import OnlineRL
from polytask.learning.rl.multitask_config import MultiTaskConfig
from polytask.learning.rl.parts import (
    PolicyWriter,
    RunParts,
    check_compatible,
    goal_modality,
    load_demos,
    make_tasks,
    network_spec,
    observes_pixels,
)
from polytask.learning.rl.rewards import EnvReward
from polytask.learning.rl.torch_setup import prepare_torch
from polytask.sim import registry

POLICY_FILE = "policy.safetensors"


def write_multitask_policy(run: OnlineRL, path: Path) -> Path:
    """The unified policy: the learner's encoder and actor, and every task's goal."""
    encoder, actor = run.learner.policy_modules()
    return save_multitask_policy(path, encoder, actor, run.spec, run.goals, {
        "method": run.method, "step": run.step, "frames": run.step * run.action_repeat, "config": to_dict(run.cfg)})


class MultiTaskRLTrainer(OnlineRL):
    """`MultiTaskRLTrainer(cfg).run()`: one multi-task RL run of `cfg.train.method` on `cfg.train.tasks`;
    `MultiTaskRLTrainer.resume(run_dir).run()` continues a killed one."""

    config_type = MultiTaskConfig

    def __init__(self, cfg: MultiTaskConfig, run_dir: str | Path | None = None, build: BuildFn | None = None,
                 write_policy: PolicyWriter | None = None, _resume: bool = False) -> None:
        """`build` and `write_policy` replace the method's learner and policy checkpoint (the lifelong stages of
        rl/lifelong.py: a learner warm-started from the previous stage, or a progressive column)."""
        tc, nc = cfg.train, cfg.network
        if not tc.tasks:
            raise ConfigError("train.tasks is empty; give --tasks (e.g. metaworld/door-open metaworld/drawer-close)")
        method = LEARNERS[tc.method]
        if method.uses_demos and not tc.demos:
            raise ConfigError(f"train.method {tc.method!r} learns from demos; give --demos <episode store>")
        if tc.demos and not method.uses_demos:
            raise ConfigError(f"train.method {tc.method!r} learns without demos, but train.demos is "
                              f"{tc.demos!r}; use --method mtrl-demo, or drop --demos")
        if nc.state_encoder == "standardise":  # its statistics come from one task's demos (rl/expert.py)
            raise ConfigError("network.state_encoder 'standardise' is for per-task experts; use identity or mlp")
        device = prepare_torch(tc.device, tc.threads, tc.seed)
        for t in tc.tasks:
            registry.entry(t)  # unknown names fail here, before any simulator starts
        pixels = observes_pixels(nc, tc.tasks[0])
        tasks = make_tasks(tc.tasks, pixels, tc.render_quality, workers=tc.env_workers)
        try:
            names = list(tc.tasks)
            specs = [tasks[t].spec for t in names]
            check_compatible(specs, pixels)
            goal_kind = goal_modality(nc, "onehot", goal_lib.VECTOR_KINDS, "multi-task RL learners")
            task_goal = goal_lib.vector_goals(goal_kind, specs, nc.goal_dim)
            spec = network_spec(nc, specs[0], pixels, goal_kind, len(task_goal[names[0]]))
            learner = (build or method.build)(spec, cfg, device, task_goal)
            demos = load_demos(tc.demos, names, tc.max_demos) if method.uses_demos else {}
        except Exception:
            for task in tasks.values():
                task.close()
            raise
        parts = RunParts(method=tc.method, tasks=tasks, spec=spec, goals=dict(task_goal), learner=learner,
                         reward=EnvReward(), demos=demos, replay_dirs={t: t.replace("/", "-") for t in names},
                         policy_file=POLICY_FILE, write_policy=write_policy or write_multitask_policy,
                         run_name=f"{tc.method}-{len(names)}tasks", device=device)
        super().__init__(cfg, parts, run_dir, resume=_resume)


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
