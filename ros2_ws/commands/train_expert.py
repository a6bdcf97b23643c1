"""Train one per-task expert: BC pretraining on the demos, then DrQ-v2 finetuning with the BC regulariser (Eq. 1),
with the environment's reward or optimal-transport rewards against the demos.

Writes runs/<date>-<name>/ (config.yaml, checkpoints/latest.safetensors + expert.safetensors, train/eval/bc CSVs,
TensorBoard events under tb/, curves.png, eval videos). A killed run continues exactly with --resume.

  polytask train-expert --task metaworld/button-press-topdown --demos data/demos/mw --steps 100000 --device cuda
  polytask train-expert --task xarm/reach --demos data/demos/xarm --reward ot --config config/expert.yaml
  polytask train-expert --resume runs/20260101-120000-xarm-reach-ot
  polytask train-expert --task dmc/cheetah-run-torso-0 --bc-steps 0 --set agent.bc_regularize=false   # no demos
  polytask train-expert --task dmc/cheetah-run-torso-1 --bc-steps 0 --set agent.bc_regularize=false \
      --init-from runs/<date>-dmc-cheetah-run-torso-0-env
"""

from __future__ import annotations

import argparse
import json

NAME = "train-expert"
HELP = "train a per-task expert (BC pretraining + DrQ-v2 with the BC regulariser; env or OT rewards)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", help="registry task name, e.g. metaworld/button-press-topdown")
    p.add_argument("--demos", help="episode store holding the task's demos (omit to learn from scratch on the env "
                   "reward: needs --bc-steps 0 --set agent.bc_regularize=false)")
    p.add_argument("--init-from", metavar="RUN_OR_CKPT",
                   help="warm start: copy the networks of a run (or checkpoint) of the same architecture")
    p.add_argument("--reward", choices=("env", "ot"), help="environment reward or OT trajectory matching")
    p.add_argument("--steps", type=int, help="agent steps of online finetuning (env frames = steps x action repeat)")
    p.add_argument("--device", help="torch device: cpu or cuda (default cpu)")
    p.add_argument("--config", help="YAML file of ExpertConfig values (e.g. config/expert.yaml)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its latest checkpoint")
    p.add_argument("--name", help="run name (folder runs/<date>-<name>)")
    p.add_argument("--runs-dir", help="parent folder of runs (default runs)")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--bc-steps", type=int, help="BC pretraining steps (0 = skip)")
    p.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set agent.batch_size=64 (value parsed as YAML)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _overrides(args: argparse.Namespace) -> dict:
    from polytask.learning.config import parse_overrides

    out: dict = {}
    for key, value in (("train.task", args.task), ("train.demos", args.demos), ("reward.kind", args.reward),
                       ("train.steps", args.steps), ("train.device", args.device), ("train.name", args.name),
                       ("train.runs_dir", args.runs_dir), ("train.seed", args.seed),
                       ("train.init_from", args.init_from), ("bc.pretrain_steps", args.bc_steps)):
        if value is not None:
            out[key] = value
    if args.no_progress:
        out["train.progress"] = False
    out.update(parse_overrides(args.set))
    return out


def run(args: argparse.Namespace) -> int:
    from polytask.learning.config import load_config
    from polytask.learning.rl.expert import ExpertTrainer
    from polytask.learning.rl.expert_config import ExpertConfig

    overrides = _overrides(args)
    if args.resume:
        if args.config or args.task or args.demos:
            raise ValueError("--resume uses the run's own config.yaml; give only --steps/--device/--set with it")
        trainer = ExpertTrainer.resume(args.resume, overrides)
    else:
        cfg = load_config(ExpertConfig, args.config, overrides)
        trainer = ExpertTrainer(cfg)
    print(f"run folder: {trainer.run_dir}")
    try:
        summary = trainer.run()
    finally:
        trainer.close()
    final = summary.get("eval_final_row", {})
    print(json.dumps({"run_dir": summary["run_dir"], "step": summary["step"],
                      "eval_final": {k: final.get(k) for k in ("score", "success_rate", "return")}}))
    return 0
