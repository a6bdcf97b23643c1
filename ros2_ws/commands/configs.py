"""Print, or write, the documented default YAML of each training config.

The dataclasses are the one place the defaults (paper Tables IV and V) and their explanations are declared; the
reference files config/expert.yaml, config/multitask_rl.yaml and config/distill.yaml are generated from them
(`polytask configs --write config`), and a test checks they are up to date.

  polytask configs expert            # print config/expert.yaml
  polytask configs --write config    # regenerate all three
"""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "configs"
HELP = "print or write the documented default YAML of the expert, multi-task RL and distillation configs"


def reference_files() -> dict[str, str]:
    """file name -> its generated text."""
    from polytask.learning.config import document
    from polytask.learning.distill.config import DistillConfig
    from polytask.learning.rl.expert_config import ExpertConfig
    from polytask.learning.rl.multitask_config import MultiTaskConfig

    units = "Units: *_frames are simulator frames (Table IV); steps are agent steps (after action repeat)."
    generated = "Generated from the dataclass by `polytask configs --write config`; edit the dataclass, not this file."
    return {
        "expert.yaml": document(ExpertConfig(), [
            "Per-task expert training (polytask train-expert --config config/expert.yaml).",
            "Defaults: Table IV of the paper and the authors' code; every key is a field of",
            "polytask.learning.rl.expert_config.ExpertConfig (unknown keys are errors naming the key).", units,
            generated]),
        "multitask_rl.yaml": document(MultiTaskConfig(), [
            "Multi-task RL baselines (polytask train-multitask --config config/multitask_rl.yaml).",
            "Every key is a field of polytask.learning.rl.multitask_config.MultiTaskConfig; agent/network/replay/bc",
            "are the expert's own sections. Steps are counted over ALL tasks.", units, generated]),
        "distill.yaml": document(DistillConfig(), [
            "Behaviour distillation (polytask distill --config config/distill.yaml). Defaults: Table V of the paper;",
            "every key is a field of polytask.learning.distill.config.DistillConfig.", generated]),
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", choices=("expert", "multitask_rl", "distill"),
                   help="the config to print (default: all, each after a header line)")
    p.add_argument("--write", metavar="DIR", help="write the files into DIR instead of printing them")


def run(args: argparse.Namespace) -> int:
    files = reference_files()
    chosen = [f"{args.name}.yaml"] if args.name else list(files)
    for name in chosen:
        if args.write:
            path = Path(args.write) / name
            path.write_text(files[name])
            print(f"wrote {path}")
        else:
            if not args.name:
                print(f"--- {name}")
            print(files[name], end="")
    return 0
