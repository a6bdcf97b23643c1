"""The paper's robot protocol on the simulated xArm, as one command, and its Table II analogue.

Per task (the paper's 10 robot tasks, in its order): at most 2 demos -> an expert trained on OT rewards alone
(no environment reward) for 6x10^3 agent steps (config/expert_xarm_ot.yaml) -> then, over the experts' replay
relabelled with their own actions, one multi-task student and one lifelong student (tasks added in the paper's
order) -> single-task BC (from the same demos) / expert / PolyTask multi-task / PolyTask lifelong, each on the
same 10 evaluation placements per task (reset seeds EVAL_SEED..EVAL_SEED+9, which no training episode uses).

Stages (cached in --root, so a killed run continues; an expert run resumes from its last checkpoint):
  demos      --num-demos successful demos per task, scripted or from --demos DIR (e.g. teleop), in <root>/demos
  experts    `ExpertTrainer` per task (learning/rl/expert.py): BC pretraining, then DrQ-v2 + Eq. 1 on OT rewards
  bc         single-task BC per task: the distillation student regressing the demo actions (baselines.gcbc)
  multitask  `run_distillation` over every expert's replay store (relabelled by its expert), one-hot goals
  lifelong   the same job with `lifelong=True`: one stage per task, the student never grows
  report     <root>/table.md (markdown rows) and <root>/results.json

Usage (states on a CPU; pixels on a GPU machine, one group of tasks per job, then the rest):
  .venv/bin/python bench/xarm_protocol.py --root /tmp/xarm-protocol
  .venv/bin/python bench/xarm_protocol.py --root R --pixels --device cuda --tasks 'xarm/peg-*' --stages demos experts
  .venv/bin/python bench/xarm_protocol.py --root R --pixels --device cuda --stages bc multitask lifelong report
"""

from __future__ import annotations

import argparse
import csv
import fcntl
import fnmatch
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
import torch
import yaml

from polytask.learning import goals as G
from polytask.learning.baselines import demo_datasets, gcbc
from polytask.learning.config import load_config
from polytask.learning.data.atomic import write_text
from polytask.learning.data.episodes import EpisodeStore
from polytask.learning.distill.collect import record_demo
from polytask.learning.distill.config import DistillConfig
from polytask.learning.distill.pipeline import DistillJob, run_distillation
from polytask.learning.policies.evaluate import evaluate
from polytask.learning.policies.expert import load_policy
from polytask.learning.policies.student import StudentPolicy
from polytask.learning.rl.expert import EXPERT, ExpertTrainer
from polytask.learning.rl.expert_config import ExpertConfig
from polytask.learning.rl.loop import EVAL_SEED, latest_checkpoint

ROOT = Path(__file__).resolve().parents[1]
EXPERT_CONFIG = ROOT / "config" / "expert_xarm_ot.yaml"
# Table II's six in its column order (the lifelong order), then the four variants of Table VII.
PAPER_ORDER = (
    "xarm/peg-green",
    "xarm/box-open-left",
    "xarm/pour-left",
    "xarm/peg-yellow",
    "xarm/reach",
    "xarm/drawer-close-left",
    "xarm/peg-blue",
    "xarm/pour-right",
    "xarm/box-open-right",
    "xarm/drawer-close-right",
)
STAGES = ("demos", "experts", "bc", "multitask", "lifelong", "report")
METHODS = ("bc", "expert", "multitask", "lifelong")
LABELS = {
    "bc": "single-task BC",
    "expert": "expert (OT only)",
    "multitask": "PolyTask multi-task",
    "lifelong": "PolyTask lifelong",
}


def slug(task: str) -> str:
    return task.replace("/", "_")


def select_tasks(patterns: list[str]) -> list[str]:
    """The paper's tasks matching any pattern, in the paper's order (the lifelong order)."""
    chosen = [t for t in PAPER_ORDER if any(fnmatch.fnmatch(t, p) for p in patterns)]
    if not chosen:
        raise SystemExit(f"--tasks {patterns}: none of the paper's robot tasks match ({', '.join(PAPER_ORDER)})")
    return chosen


class Protocol:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.root = Path(args.root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.tasks = select_tasks(args.tasks)
        self.pixels = bool(args.pixels)
        self.path, self.demo_store = self.root / "results.json", self.root / "demos"
        self.results: dict[str, Any] = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.t0 = time.time()

    # --- bookkeeping -------------------------------------------------------------------------------------
    def log(self, msg: str) -> None:
        print(f"[xarm-protocol {time.strftime('%H:%M:%S')} +{time.time() - self.t0:.0f}s] {msg}", flush=True)

    def save(self) -> None:
        write_text(self.path, json.dumps(self.results, indent=1, default=float))

    def done(self, section: str, task: str) -> dict[str, Any] | None:
        return self.results.get(section, {}).get(task)

    def merge(self, mutate: Callable[[dict[str, Any]], Any]) -> Any:
        """Apply `mutate` to results.json as it is on disk, under a lock, and save: processes given disjoint
        --tasks may share a root (e.g. one expert stage per core), each adding its rows without dropping others'."""
        with open(self.root / ".results.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.path.exists():
                self.results = json.loads(self.path.read_text())
            out = mutate(self.results)
            self.save()
        return out

    def record(self, section: str, task: str, value: dict[str, Any]) -> None:
        self.merge(lambda r: r.setdefault(section, {}).__setitem__(task, value))

    def expert_dir(self, task: str) -> Path:
        return self.root / "experts" / slug(task)

    def evaluate(self, policy: Any, task: str) -> dict[str, Any]:
        r = evaluate(policy, task, episodes=self.args.eval_episodes, seed=EVAL_SEED, render=self.pixels)
        return {"score": r.mean_score, "successes": int(sum(r.successes)), "episodes": r.episodes}

    def distill_overrides(self, lr: float, schedule: str) -> dict[str, Any]:
        a = self.args
        return {
            "obs": "pixels" if self.pixels else "state",
            "device": a.device,
            "lr": lr,
            "lr_schedule": schedule,
            "warmup_steps": 200 if schedule == "cosine" else 0,
            "batch_size": a.batch,
            "student.hidden": a.student_hidden,
            "student.layers": a.student_layers,
            "threads": 1,
            "seed": a.seed,
            "log_every": 100,
        }

    # --- stages --------------------------------------------------------------------------------------------
    def demos(self) -> None:
        store = EpisodeStore(self.demo_store)
        for task in self.tasks:
            have = [ep for ep in store.episodes(task) if ep.episode_success]
            if len(have) >= self.args.num_demos:
                continue
            if self.args.demos:
                src = [ep for ep in EpisodeStore(self.args.demos, create=False).episodes(task) if ep.episode_success]
                if not src:
                    raise SystemExit(f"--demos {self.args.demos}: no successful episode of {task}")
                new = src[len(have) : self.args.num_demos]
                for ep in new:
                    store.append(ep)
            else:  # one successful scripted demo per call (its last frame is the goal image with pixels)
                for i in range(len(have), self.args.num_demos):
                    record_demo(task, self.demo_store, seed=self.args.seed * 7919 + 500_000 + i, render=self.pixels)
            self.log(f"demos {task}: {len(store.episodes(task))}")

    def expert_config(self, task: str) -> ExpertConfig:
        a = self.args
        over: dict[str, Any] = {
            "train.task": task,
            "train.demos": str(self.demo_store),
            "train.max_demos": a.num_demos,
            "train.steps": a.expert_steps,
            "train.device": a.device,
            "train.seed": a.seed,
            "train.progress": False,
            "train.runs_dir": str(self.root / "experts"),
            "network.obs": "pixels" if self.pixels else "state",
            "network.hidden": a.expert_hidden,
            "bc.pretrain_steps": a.bc_pretrain_steps,
        }
        if self.pixels:  # the yaml's OT features read the state; pixel experts match their encoder's (the paper's)
            over.update({"reward.features": "encoder", "reward.cost": "cosine"})
        if a.expert_batch:
            over.update({"agent.batch_size": a.expert_batch, "bc.batch_size": a.expert_batch})
        for item in a.set:
            key, _, value = item.partition("=")
            over[key] = yaml.safe_load(value)
        return load_config(ExpertConfig, EXPERT_CONFIG, over)

    def experts(self) -> None:
        for task in self.tasks:
            if self.done("experts", task):
                continue
            run_dir = self.expert_dir(task)
            if run_dir.exists() and latest_checkpoint(run_dir) is None:
                shutil.rmtree(run_dir)  # killed before its first checkpoint: nothing to continue from
            start = time.time()
            trainer = ExpertTrainer.open(self.expert_config(task), run_dir)
            self.log(f"expert {task}: {'resumed at step ' + str(trainer.step) if trainer.resumed else 'started'}")
            try:
                summary = trainer.run()
            finally:
                trainer.close()
            policy = load_policy(run_dir / "checkpoints" / EXPERT, device=self.args.device, task=task)
            row = {
                **self.evaluate(policy, task),
                **ot_returns(run_dir),
                "eval_start": summary.get("eval_start"),
                "seconds_this_call": round(time.time() - start, 1),
                "wall_s": summary["wall_s"],
                "bc_loss_first": summary.get("bc_loss_first"),
                "bc_loss_last": summary.get("bc_loss_last"),
                "steps": summary["step"],
                "updates": summary["updates"],
            }
            self.record("experts", task, row)
            self.log(
                f"expert {task}: {row['successes']}/{row['episodes']} (at start "
                f"{summary.get('eval_start', {}).get(task)}), OT return first {row['ot_return_first']:.2f} "
                f"-> last {row['ot_return_last']:.2f}, {row['seconds_this_call']:.0f}s"
            )

    def bc(self) -> None:
        goals = G.task_goals("onehot", self.tasks, 0)
        for task in self.tasks:
            if self.done("bc", task):
                continue
            start = time.time()
            cfg = load_config(DistillConfig, None, self.distill_overrides(self.args.lr, "cosine"))
            data = demo_datasets(EpisodeStore(self.demo_store, create=False), [task], self.args.num_demos)
            distiller, res = gcbc(
                data, {task: goals[task]}, cfg, run_dir=self.root / "bc" / slug(task), steps=self.args.bc_steps
            )
            row = {
                **self.evaluate(StudentPolicy(distiller.student, {task: goals[task]}), task),
                "final_loss": res.final_loss,
                "rows": len(data[task]),
                "seconds": round(time.time() - start, 1),
            }
            self.record("bc", task, row)
            self.log(
                f"bc {task}: {row['successes']}/{row['episodes']} from {row['rows']} demo rows, "
                f"loss {res.final_loss:.4f}"
            )

    def job(self, out: str, lifelong: bool) -> DistillJob:
        missing = [t for t in self.tasks if not (self.expert_dir(t) / "checkpoints" / EXPERT).exists()]
        if missing:
            raise SystemExit(
                f"distillation needs every expert first; missing: {', '.join(missing)} (run --stages experts for them)"
            )
        a = self.args
        over = self.distill_overrides(a.lifelong_lr, "constant") if lifelong else self.distill_overrides(a.lr, "cosine")
        return DistillJob(
            experts=[str(self.expert_dir(t) / "checkpoints" / EXPERT) for t in self.tasks],
            stores=[self.expert_dir(t) / "replay" for t in self.tasks],
            out=self.root / out,
            overrides=over,
            steps=a.lifelong_steps if lifelong else a.distill_steps,
            lifelong=lifelong,
            eval_episodes=a.eval_episodes,
            eval_seed=EVAL_SEED,
            relabelled=self.root / "relabelled",
        )

    def distill(self, name: str, lifelong: bool) -> None:
        if self.results.get(name, {}).get("tasks") == self.tasks:
            return
        start = time.time()
        outcome = run_distillation(self.job(name, lifelong), log=self.log)
        if set(outcome.scores) != set(self.tasks):
            raise RuntimeError(f"{name}: evaluated {sorted(outcome.scores)}, expected {self.tasks}")
        row: dict[str, Any] = {
            "tasks": self.tasks,
            "scores": outcome.scores,
            "effective": outcome.effective_tasks,
            "parameters": outcome.parameters,
            "steps": outcome.step,
            "seconds_this_call": round(time.time() - start, 1),
        }
        if lifelong:
            hist = json.loads((self.root / name / "lifelong" / "polytask" / "history.json").read_text())
            row["effective_per_stage"] = [s["effective"] for s in hist]
            row["parameters_per_stage"] = [s["parameters"] for s in hist]
        self.merge(lambda r: r.__setitem__(name, row))
        self.log(f"{name}: effective tasks {outcome.effective_tasks:.2f} / {len(self.tasks)}")

    def multitask(self) -> None:
        self.distill("multitask", lifelong=False)

    def lifelong(self) -> None:
        self.distill("lifelong", lifelong=True)

    def scores(self) -> dict[str, dict[str, float]]:
        r = self.results
        out = {
            "bc": {t: v["score"] for t, v in r.get("bc", {}).items()},
            "expert": {t: v["score"] for t, v in r.get("experts", {}).items()},
        }
        for m in ("multitask", "lifelong"):
            out[m] = dict(r.get(m, {}).get("scores", {}))
        return out

    def report(self) -> None:
        scores = self.scores()
        n = self.args.eval_episodes
        methods = [m for m in METHODS if all(t in scores[m] for t in self.tasks)]
        head = "| task | " + " | ".join(LABELS[m] for m in methods) + " |"
        lines = [head, "|" + "---|" * (len(methods) + 1)]
        for t in self.tasks:
            lines.append(f"| `{t}` | " + " | ".join(f"{round(scores[m][t] * n)}/{n}" for m in methods) + " |")
        totals = {m: sum(scores[m][t] for t in self.tasks) for m in methods}
        lines.append(
            f"| **effective tasks (of {len(self.tasks)})** | "
            + " | ".join(f"**{totals[m]:.1f}**" for m in methods)
            + " |"
        )
        bars = bar_verdicts(totals, len(self.tasks))
        text = "\n".join(lines) + "\n\n" + "\n".join(f"- {b}" for b in bars) + "\n"
        write_text(self.root / "table.md", text)
        self.merge(lambda r: r.__setitem__("report", {"effective": totals, "bars": bars, "tasks": self.tasks}))
        print(text, flush=True)

    def main(self) -> None:
        torch.set_num_threads(1)
        run = {"args": vars(self.args), "started": time.strftime("%F %T"), "pid": os.getpid()}
        self.merge(lambda r: r.setdefault("runs", []).append(run))
        for name in STAGES:
            if name in self.args.stages:
                start = time.time()
                self.log(f"stage {name} ...")
                getattr(self, name)()
                self.log(f"stage {name}: done in {time.time() - start:.0f}s")
        seconds = round(time.time() - self.t0, 1)
        mine = (run["pid"], run["started"])

        def finish(r: dict[str, Any]) -> None:
            for x in r["runs"]:
                if (x.get("pid"), x.get("started")) == mine:
                    x["seconds"] = seconds

        self.merge(finish)


def ot_returns(run_dir: Path, k: int = 5) -> dict[str, float]:
    """Mean OT return (the reward the expert trains on) of its first and last `k` training episodes, and its
    success rate over the last quarter of training episodes (with exploration noise)."""
    with open(run_dir / "train.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    ret = np.array([float(r["train_reward_return"]) for r in rows])
    succ = np.array([float(r["episode_success"]) for r in rows])
    q = max(1, len(rows) // 4)
    return {
        "ot_return_first": float(ret[:k].mean()),
        "ot_return_last": float(ret[-k:].mean()),
        "train_success_last_quarter": float(succ[-q:].mean()),
        "train_episodes": len(rows),
    }


def bar_verdicts(totals: dict[str, float], n: int) -> list[str]:
    """The bars: experts >= 7 of 10 (0.7 n), multi-task >= experts - 0.5, lifelong >= 0.9 x multi-task."""
    out = []
    if "expert" in totals:
        out.append(
            f"experts {totals['expert']:.1f} >= {0.7 * n:.1f}: {'met' if totals['expert'] >= 0.7 * n else 'MISSED'}"
        )
    if "expert" in totals and "multitask" in totals:
        ok = totals["multitask"] >= totals["expert"] - 0.5
        out.append(
            f"multi-task {totals['multitask']:.1f} >= experts - 0.5 = {totals['expert'] - 0.5:.1f}: "
            f"{'met' if ok else 'MISSED'}"
        )
    if "multitask" in totals and "lifelong" in totals:
        ok = totals["lifelong"] >= 0.9 * totals["multitask"]
        out.append(
            f"lifelong {totals['lifelong']:.1f} >= 0.9 x multi-task = {0.9 * totals['multitask']:.2f}: "
            f"{'met' if ok else 'MISSED'}"
        )
    return out


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="/tmp/xarm-protocol", help="run root; every stage is cached here")
    p.add_argument("--tasks", nargs="*", default=["*"], help="patterns over the paper's 10 robot tasks")
    p.add_argument("--stages", nargs="*", default=list(STAGES), choices=STAGES)
    p.add_argument("--demos", default="", help="episode store with recorded demos (e.g. teleop); default: scripted")
    p.add_argument("--num-demos", type=int, default=2, help="demos per task (the paper: up to 2)")
    p.add_argument("--pixels", action="store_true", help="84x84 camera experts and students (a GPU machine)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--expert-steps", type=int, default=6000, help="agent steps of online RL per expert")
    p.add_argument("--bc-pretrain-steps", type=int, default=3000, help="the expert's BC pretraining steps")
    p.add_argument("--expert-hidden", type=int, default=256, help="Table IV: 1024 (the CPU default is 256)")
    p.add_argument("--expert-batch", type=int, default=0, help="0: Table IV's 256")
    p.add_argument("--set", nargs="*", default=[], help="further expert config overrides, key=value")
    p.add_argument("--bc-steps", type=int, default=1500, help="single-task BC gradient steps")
    p.add_argument("--distill-steps", type=int, default=12000, help="multi-task distillation steps")
    p.add_argument("--lifelong-steps", type=int, default=1500, help="distillation steps per added task")
    p.add_argument("--lr", type=float, default=1e-3, help="multi-task / BC student lr (cosine schedule)")
    p.add_argument("--lifelong-lr", type=float, default=5e-4, help="lifelong student lr (constant)")
    p.add_argument("--student-hidden", type=int, default=256, help="Table V: 1024")
    p.add_argument("--student-layers", type=int, default=3)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=1)
    return p.parse_args(argv)


if __name__ == "__main__":
    Protocol(parse(sys.argv[1:])).main()
