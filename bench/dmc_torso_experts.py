"""The DMC cheetah torso demonstrators (issue #3): one state expert per torso variant, and 10 demos from each.

The paper's DMC demos come from experts trained on the environment reward. Here variant 0 (dm_control's own
cheetah) learns from scratch, and every further variant starts from its neighbour's weights (`--init-from`,
torso half-length +0.1 m) and keeps learning on its own reward: the morphologies are close, so a warm start
buys most of the budget a from-scratch run would need, which matters on a 2-core CPU. A warm-started variant
explores like the end of variant 0's run (its schedule's final std, no uniform-random steps): restarting the
schedule at std 1.0 filled the fresh replay with near-random episodes and undid the transfer (variant 1: eval
return 412 at the warm start, 182 after 30k steps). Then each expert's mean
actions roll out `--demos` episodes (state only) into one episode store, the input of DMC distillation.

Resumable: a variant whose run reached its step budget is skipped, a partial one resumes from its checkpoint,
and demos already in the store are kept. The table of returns (against the paper's expert average, 731) is
rewritten after every variant.

  .venv/bin/python bench/dmc_torso_experts.py --root /tmp/dmc --config /tmp/dmc/cheetah.yaml \
      --base-steps 120000 --variant-steps 30000
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

from polytask.learning.config import load_config
from polytask.learning.data.atomic import write_text
from polytask.learning.data.checkpoint import read_header
from polytask.learning.data.episodes import EpisodeStore
from polytask.learning.policies.demos import record_demos
from polytask.learning.policies.evaluate import evaluate
from polytask.learning.policies.expert import load_policy
from polytask.learning.rl.agent import schedule_value
from polytask.learning.rl.expert import EXPERT, ExpertTrainer
from polytask.learning.rl.expert_config import ExpertConfig
from polytask.learning.rl.loop import EVAL_SEED, latest_checkpoint
from polytask.sim.dmc_suite import TORSO_HALF_LENGTHS

PAPER_EXPERT_RETURN = 731.0  # the paper's average DMC expert return (Table II context)


def trained_steps(run_dir: Path) -> int:
    ckpt = latest_checkpoint(run_dir)
    return int(read_header(ckpt)["step"]) if ckpt is not None else -1


def warm_start_overrides(cfg_path: str | None, base_steps: int, init_from: Path) -> dict[str, object]:
    """Continue where the base run's exploration ended: its schedule's std at `base_steps`, no uniform actions."""
    agent = load_config(ExpertConfig, cfg_path).agent
    return {"train.init_from": str(init_from), "agent.num_expl_steps": 0,
            "agent.stddev_schedule": schedule_value(agent.stddev_schedule, base_steps)}


def train_variant(variant: int, run_dir: Path, cfg_path: str | None, steps: int,
                  extra: dict[str, object]) -> float:
    """Train (or resume) one variant's expert; returns wall seconds spent in this call."""
    start = time.time()
    if trained_steps(run_dir) >= steps:
        return 0.0
    overrides = {"train.task": f"dmc/cheetah-run-torso-{variant}", "train.demos": "", "train.steps": steps,
                 "bc.pretrain_steps": 0, "agent.bc_regularize": False, "train.progress": False, **extra}
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer = ExpertTrainer.open(load_config(ExpertConfig, cfg_path, overrides), run_dir, {"train.steps": steps})
    try:
        trainer.run()
    finally:
        trainer.close()
    return time.time() - start


def final_eval(run_dir: Path) -> dict[str, float]:
    with open(run_dir / "eval.csv") as f:
        rows = list(csv.DictReader(f))
    return {k: float(rows[-1][k]) for k in ("step", "return")} | {"start_return": float(rows[0]["return"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True, help="folder for runs/, demos/ and the results table")
    ap.add_argument("--config", help="ExpertConfig YAML (network size, lr, threads, eval cadence)")
    ap.add_argument("--base-steps", type=int, default=120000, help="agent steps of variant 0 (from scratch)")
    ap.add_argument("--variant-steps", type=int, default=30000, help="agent steps of each warm-started variant")
    ap.add_argument("--variants", type=int, nargs="+", default=list(range(len(TORSO_HALF_LENGTHS))))
    ap.add_argument("--demos", type=int, default=10, help="demos recorded per variant")
    ap.add_argument("--base-run", help="an existing variant-0 run folder to use instead of training one")
    args = ap.parse_args()

    root = Path(args.root)
    store = root / "demos"
    rows: list[dict] = []
    previous: Path | None = None
    for variant in sorted(args.variants):
        run_dir = Path(args.base_run) if (variant == 0 and args.base_run) else root / "runs" / f"torso{variant}"
        steps = args.base_steps if variant == 0 else args.variant_steps
        init = None if variant == 0 else (previous or root / "runs" / f"torso{variant - 1}")
        extra = {} if init is None else warm_start_overrides(args.config, args.base_steps, init)
        wall = train_variant(variant, run_dir, args.config, steps, extra)
        previous = run_dir
        task = f"dmc/cheetah-run-torso-{variant}"
        have = len(EpisodeStore(store).episodes(task)) if store.exists() else 0
        if have < args.demos:
            policy = load_policy(run_dir / "checkpoints" / EXPERT, task=task)
            record_demos(task, args.demos - have, store, seed=10_000 + have, render=False, policy=policy,
                         source="expert", progress=False)
        demo_returns = [1000.0 * e.score for e in EpisodeStore(store).episodes(task)]
        ev = final_eval(run_dir)
        check = evaluate(load_policy(run_dir / "checkpoints" / EXPERT, task=task), task, episodes=10, seed=EVAL_SEED)
        rows.append({"variant": variant, "torso_m": 2 * TORSO_HALF_LENGTHS[variant], "steps": int(ev["step"]),
                     "frames": int(ev["step"]) * 2, "warm_start": init.name if init else "scratch",
                     "start_return": round(ev["start_return"], 1), "eval_return": round(check.mean_return, 1),
                     "demo_return": round(sum(demo_returns) / len(demo_returns), 1), "demos": len(demo_returns),
                     "wall_s": round(wall)})
        print(json.dumps(rows[-1]), flush=True)
        write_table(root / "dmc_torso_experts.md", rows)


def write_table(path: Path, rows: list[dict]) -> None:
    lines = ["| variant | torso length (m) | warm start | agent steps (frames) | eval return at start | "
             "eval return (10 eps) | / 731 | mean return of its demos | demos |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['torso_m']:.1f} | {r['warm_start']} | {r['steps']} ({r['frames']}) | "
                     f"{r['start_return']} | {r['eval_return']} | {r['eval_return'] / PAPER_EXPERT_RETURN:.2f} | "
                     f"{r['demo_return']} | {r['demos']} |")
    mean = sum(r["eval_return"] for r in rows) / len(rows)
    lines.append(f"\nMean eval return over {len(rows)} variants: {mean:.1f} "
                 f"({mean / PAPER_EXPERT_RETURN:.2f} of the paper's 731).")
    write_text(path, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
