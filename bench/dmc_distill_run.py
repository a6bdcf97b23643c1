"""PolyTask on DMC: distil the 10 cheetah torso experts into one state student with sinusoidal task goals.

Input: the folder `bench/dmc_torso_experts.py` filled (runs/torso<k>/ with each expert and its replay store,
demos/ with 10 demos per variant). Three rows on the same evaluation (10 episodes per variant, reset seeds
from --eval-seed, score = return / 1000, the paper's DMC rule):
  experts   each variant's own expert on its variant
  polytask  every replay store relabelled with its expert's actions (Table V cap: 30000 transitions per task),
            one student distilled over all ten (Eq. 2), sinusoidal goal of the variant id
  gcbc      the same student network trained on the 10 demos per variant (goal-conditioned BC)
Writes <root>/<out>/dmc_distill.md; the distillation itself resumes (learning/distill/pipeline.py).

  .venv/bin/python bench/dmc_distill_run.py --root /tmp/dmc --base-run /tmp/dmc/runs/torso0 --steps 20000 \
      --set student.hidden=256 student.layers=3 lr=1e-3 lr_schedule=cosine
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from polytask.learning import goals as G
from polytask.learning.baselines import demo_datasets, gcbc
from polytask.learning.config import load_config, parse_overrides
from polytask.learning.data.atomic import write_text
from polytask.learning.data.episodes import EpisodeStore
from polytask.learning.distill.config import DistillConfig
from polytask.learning.distill.pipeline import DistillJob, run_distillation
from polytask.learning.policies.evaluate import evaluate
from polytask.learning.policies.expert import load_policy
from polytask.learning.policies.student import StudentPolicy
from polytask.sim.dmc_suite import TORSO_HALF_LENGTHS

PAPER_EFFECTIVE = {"experts": 7.31, "polytask": 7.12, "gcbc": 1.76}  # the paper's DMC (10) headline row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True, help="the folder of bench/dmc_torso_experts.py")
    ap.add_argument("--base-run", help="variant 0's run folder when it is not <root>/runs/torso0")
    ap.add_argument("--steps", type=int, default=20000, help="gradient steps of the student (and of GCBC)")
    ap.add_argument("--variants", type=int, nargs="+", default=list(range(len(TORSO_HALF_LENGTHS))))
    ap.add_argument("--out", default="distill", help="subfolder of --root for the distillation and GCBC runs")
    ap.add_argument("--eval-episodes", type=int, default=10)
    ap.add_argument("--eval-seed", type=int, default=1000)
    ap.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                    help="distillation config overrides (config/distill.yaml keys)")
    args = ap.parse_args()

    root = Path(args.root)
    tasks = [f"dmc/cheetah-run-torso-{k}" for k in args.variants]
    runs = [Path(args.base_run) if (k == 0 and args.base_run) else root / "runs" / f"torso{k}"
            for k in args.variants]
    experts = [str(r / "checkpoints" / "expert.safetensors") for r in runs]
    overrides = {**parse_overrides(args.set), "threads": 1}
    rows: dict[str, dict[str, float]] = {}

    rows["experts"] = {t: evaluate(load_policy(e, task=t), t, episodes=args.eval_episodes,
                                   seed=args.eval_seed).mean_score for t, e in zip(tasks, experts, strict=True)}
    print(json.dumps({"experts": rows["experts"]}), flush=True)

    out = run_distillation(DistillJob(experts=experts, stores=[r / "replay" for r in runs],
                                      out=root / args.out / "polytask", overrides=overrides, goal="sinusoid",
                                      steps=args.steps,
                                      eval_episodes=args.eval_episodes, eval_seed=args.eval_seed))
    rows["polytask"] = dict(out.scores)
    print(json.dumps({"polytask": rows["polytask"], "parameters": out.parameters}), flush=True)

    cfg = replace(load_config(DistillConfig, None, overrides), goal="sinusoid", steps=args.steps)
    goals = G.task_goals("sinusoid", tasks, cfg.student.sinusoid_dim)
    demos = demo_datasets(EpisodeStore(root / "demos"), tasks, 10)
    distiller, _ = gcbc(demos, goals, cfg, run_dir=root / args.out / "gcbc")
    distiller.save_student()
    policy = StudentPolicy(distiller.student, goals)
    rows["gcbc"] = {t: evaluate(policy, t, episodes=args.eval_episodes, seed=args.eval_seed).mean_score
                    for t in tasks}
    print(json.dumps({"gcbc": rows["gcbc"]}), flush=True)
    write_table(root / args.out / "dmc_distill.md", tasks, rows, out.parameters, args)


def write_table(path: Path, tasks: list[str], rows: dict[str, dict[str, float]], params: int,
                args: argparse.Namespace) -> None:
    names = list(rows)
    lines = ["| variant | torso length (m) | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for k, t in zip(args.variants, tasks, strict=True):
        cells = " | ".join(f"{1000 * rows[n][t]:.0f}" for n in names)
        lines.append(f"| {k} | {2 * TORSO_HALF_LENGTHS[k]:.1f} | {cells} |")
    means = " | ".join(f"**{1000 * sum(rows[n].values()) / len(tasks):.0f}**" for n in names)
    lines.append(f"| mean return | | {means} |")
    effective = " | ".join(f"{sum(rows[n].values()):.2f}" for n in names)
    lines.append(f"| effective tasks (sum of return/1000) | | {effective} |")
    paper = " | ".join(f"{PAPER_EFFECTIVE[n]:.2f}" for n in names)
    lines.append(f"| the paper's effective tasks | | {paper} |")
    lines.append(f"\nStudent: {params} parameters, {args.steps} steps, overrides {args.set}; "
                 f"{args.eval_episodes} episodes per variant from seed {args.eval_seed}.")
    write_text(path, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
