"""Train a multi-task RL baseline of the paper on several tasks at once, with the expert's DrQ-v2 agent:

  mtrl         one goal-conditioned agent (one-hot task goal) trained by RL on every task
  mtrl-demo    the same with the demos: multi-task BC pretraining, then Eq. 1's BC term (needs --demos)
  mtrl-pcgrad  mtrl whose per-task critic and actor losses are combined by PCGrad gradient surgery
  distral      per-task agents regularised toward a distilled policy pi0 (the one evaluated)

Lifelong (tasks added one at a time in the --tasks order; each stage is RL + BC on the new task alone, then every
task seen so far is evaluated; needs --demos; --steps is per added task):

  finetune-rl     one fixed-size goal-conditioned agent carried from task to task (it may forget)
  progressive-rl  a new actor column per task, laterals from the frozen earlier ones (grows; never forgets)

A lifelong run folder holds history.json (per stage: every seen task's score, effective tasks, parameter count,
checkpoint), forgetting.png and stage_NN/ (one MTRL-Demo run each). Rerunning with the same --out continues with
the next task of the order; --add N adds at most N tasks per command.

All tasks must share observation and action sizes (Meta-World's 16: 39-D state, 4-D action). Writes
runs/<date>-<method>-<N>tasks/ (or --out): config.yaml, checkpoints/policy.safetensors (the unified policy, one
goal per task), train.csv, eval.csv (every evaluation), eval_table.csv/.png (final per-task success, effective tasks),
and every --set train.save_every steps checkpoints/latest.safetensors, from which a killed run continues exactly
with --resume RUN_DIR (its own config; --steps N to train on to N steps). A killed lifelong stage continues from
its latest checkpoint when rerun with the same --out.

  polytask train-multitask --method mtrl --tasks 'metaworld/*' --steps 1600000 --set network.obs=state
  polytask train-multitask --method mtrl-demo --tasks metaworld/door-open metaworld/drawer-close --demos data/mw
  polytask train-multitask --resume runs/20260101-120000-mtrl-demo-2tasks --steps 200000
  polytask train-multitask --method finetune-rl --tasks metaworld/door-open metaworld/drawer-close --demos data/mw \
      --set network.obs=state --out runs/ft --add 1
"""

from __future__ import annotations

import argparse
import json

NAME = "train-multitask"
HELP = ("train a multi-task RL baseline (MTRL, MTRL-Demo, MTRL-PCGrad, Distral) on several tasks at once, or a "
        "lifelong one (Fine-tuning, Progressive Nets by RL + BC) task after task")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from polytask.learning.rl.lifelong import METHODS as LIFELONG
    from polytask.learning.rl.multitask_config import METHODS

    p.add_argument("--method", choices=[*METHODS, *LIFELONG], help="which baseline (required unless --resume)")
    p.add_argument("--tasks", nargs="+",
                   help="registry task names or globs, e.g. 'metaworld/*' or metaworld/door-open metaworld/hammer "
                        "(required unless --resume)")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue a multi-task run from its checkpoints/latest.safetensors with its own config "
                        "(give only --steps/--device/--seed/--set/--no-progress with it)")
    p.add_argument("--demos", help="episode store holding every task's demos (mtrl-demo)")
    p.add_argument("--steps", type=int, help="agent steps over all tasks (env frames = steps x action repeat)")
    p.add_argument("--config", help="YAML file of MultiTaskConfig values (e.g. config/multitask_rl.yaml)")
    p.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set network.obs=state (value parsed as YAML)")
    p.add_argument("--out", help="run folder (default runs/<date>-<method>-<N>tasks)")
    p.add_argument("--device", help="torch device: cpu or cuda (default cpu)")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--add", type=int, metavar="N",
                   help="lifelong methods: add at most N more tasks in this command (default: all remaining)")


def _overrides(args: argparse.Namespace) -> dict:
    from polytask.learning.config import parse_overrides

    out: dict = {}
    if args.device is not None:
        out["train.device"] = args.device
    if args.seed is not None:
        out["train.seed"] = args.seed
    if args.no_progress:
        out["train.progress"] = False
    out.update(parse_overrides(args.set))
    return out


def _resume(args: argparse.Namespace) -> dict:
    from polytask.learning.rl.multitask import MultiTaskRLTrainer

    given = [f"--{k.replace('_', '-')}" for k in ("method", "tasks", "demos", "config", "out", "add")
             if getattr(args, k) is not None]
    if given:
        raise ValueError(f"--resume uses the run's own config.yaml and folder; drop {' '.join(given)} (lifelong runs "
                         "continue by rerunning with the same --out instead)")
    overrides = _overrides(args)
    if args.steps is not None:
        overrides["train.steps"] = args.steps
    trainer = MultiTaskRLTrainer.resume(args.resume, overrides)
    try:
        return trainer.run()
    finally:
        trainer.close()


def run(args: argparse.Namespace) -> int:
    from polytask.learning.baselines import get
    from polytask.sim import registry

    keys = ["run_dir", "method", "step", "effective_tasks", "eval_final", "stages", "parameters"]
    if args.resume:
        summary = _resume(args)
        print(json.dumps({k: summary[k] for k in keys if k in summary}))
        return 0
    missing = [flag for flag, value in (("--method", args.method), ("--tasks", args.tasks)) if not value]
    if missing:
        raise ValueError(f"train-multitask needs {' and '.join(missing)} (or --resume RUN_DIR)")
    baseline = get(args.method)
    extra: dict = {}
    if baseline.kind == "lifelong":
        if args.add is not None and args.add < 1:
            raise ValueError(f"--add is {args.add}; give a number of tasks >= 1")
        extra["add"] = args.add
    elif args.add is not None:
        raise ValueError(f"--add applies to the lifelong methods only, not --method {args.method}")
    summary = baseline.runner(registry.expand(args.tasks), demos=args.demos or "", steps=args.steps, config=args.config,
                              overrides=_overrides(args), run_dir=args.out, **extra)
    print(json.dumps({k: summary[k] for k in keys if k in summary}))
    return 0
