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

Usage (states on a CPU, the experts in one process per core; pixels on a GPU machine, one group of tasks per job,
then the rest):
  .venv/bin/python bench/xarm_protocol.py --root /tmp/xarm-protocol --workers 2
  .venv/bin/python bench/xarm_protocol.py --root R --pixels --device cuda --tasks 'xarm/peg-*' --stages demos experts
  .venv/bin/python bench/xarm_protocol.py --root R --pixels --device cuda --stages bc multitask lifelong report
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")

import torch
import yaml

from polytask.learning import goals as G
from polytask.learning.baselines import demo_datasets, gcbc
from polytask.learning.config import load_config
from polytask.learning.data.atomic import update_json, write_text
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

sys.path.insert(0, str(Path(__file__).resolve().parent))  # its parts, beside it (also when loaded by path)
from xarm_protocol_parts import STAGES, bar_verdicts, forwarded_argv, ot_returns, parser

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

    def done(self, section: str, task: str) -> dict[str, Any] | None:
        return self.results.get(section, {}).get(task)

    def merge(self, mutate: Callable[[dict[str, Any]], Any]) -> None:
        """Apply `mutate` to results.json as it is on disk, under a lock: processes given disjoint --tasks may
        share a root (one expert stage per core, `--workers`), each adding its rows without dropping others'."""
        self.results = update_json(self.path, mutate)

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
        pending = [t for t in self.tasks if not self.done("experts", t)]
        if self.args.workers > 1 and len(pending) > 1:
            self.experts_in_workers(pending)
            return
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

    def experts_in_workers(self, pending: list[str]) -> None:
        """One process per worker, each training its share of the experts (round-robin in the paper's order, so
        the slow pours land in different shares) into this root; results.json merges their rows."""
        shares = [pending[i :: self.args.workers] for i in range(min(self.args.workers, len(pending)))]
        base = [sys.executable, str(Path(__file__).resolve()), *forwarded_argv(self.args)]
        procs = [subprocess.Popen([*base, "--stages", "experts", "--tasks", *share]) for share in shares]
        self.log(f"experts in {len(procs)} workers: {' | '.join(' '.join(s) for s in shares)}")
        try:
            codes = [p.wait() for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.terminate()
        if any(codes):
            raise SystemExit(f"expert workers exited with {codes}; rerun the same command to continue")
        self.results = json.loads(self.path.read_text())

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


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    return parser(__doc__).parse_args(argv)


if __name__ == "__main__":
    Protocol(parse(sys.argv[1:])).main()
