"""The documented distillation run: Meta-World, the paper's 16 tasks, state observations, scripted teachers.

Stages (each cached in the run root, so an interrupted run continues where it stopped):
  collect   exploratory stores: scripted teachers with per-episode Gaussian action noise, placements drawn at
            every reset (what an RL replay buffer holds), `--transitions` per task
  demos     one clean successful scripted demo per task (rendered: its last frame is the image goal)
  relabel   every stored state gets the clean teacher action (scripted teacher = the task's scripted policy)
  teachers  the clean scripted teachers on the same evaluation episodes (the experts' row)
  polytask  the student distilled from all 16 relabelled stores (one-hot goals), evaluated 10 episodes per task
  gcbc      the same student network trained on the 1 demo per task, same evaluation
  goals     the student with language, sinusoid and image goals (--modality-steps)
  onehot_same_steps  one-hot again at --modality-steps, for a like-for-like modality table
  pcgrad    PolyTask-PCGrad (one-hot, --modality-steps, 4 tasks per step)
  lifelong  16 tasks added one at a time: PolyTask (stores 1..N+1) vs Fine-tuning (store N+1 only)
  progressive  Progressive Nets over the same 16 additions (a column per task)
  sizes     the one-hot student at other widths (--size-hidden, --modality-steps)
  report    per-task table, modality table, forgetting plot, parameter counts (CSV + PNG); always redrawn

Usage (one process, one torch thread; see docs/results-distill.md for the figures of the documented run):
  .venv/bin/python bench/metaworld_distill_run.py --root /tmp/mw16 2>&1 | tee /tmp/mw16.log
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch

from polytask.learning import goals as G
from polytask.learning.baselines import demo_datasets, gcbc
from polytask.learning.data.episodes import EpisodeStore
from polytask.learning.distill.collect import collect_noisy_store, record_demo
from polytask.learning.distill.config import DistillConfig, StudentConfig
from polytask.learning.distill.data import load_task
from polytask.learning.distill.distill import action_error
from polytask.learning.distill.lifelong import add_task
from polytask.learning.distill.pipeline import DistillJob, run_distillation, student_goal_width
from polytask.learning.distill.relabel import ScriptedTeacher, relabel_store
from polytask.learning.policies.evaluate import evaluate
from polytask.learning.policies.student import StudentPolicy, load_student
from polytask.learning.reporting import report
from polytask.learning.reporting.lifelong import read_history
from polytask.sim import registry

STAGES = ("collect", "demos", "relabel", "teachers", "polytask", "gcbc", "goals", "onehot_same_steps", "pcgrad",
          "lifelong", "progressive", "sizes", "report")


def slug(task: str) -> str:
    return task.replace("/", "_")


def flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A config as the dotted-key overrides a distillation job takes."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.root = Path(args.root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.tasks = registry.names(args.tasks)
        if not self.tasks:
            raise SystemExit(f"no tasks match {args.tasks!r}")
        self.results_path = self.root / "results.json"
        self.results: dict[str, Any] = json.loads(self.results_path.read_text()) if self.results_path.exists() else {}
        self.t0 = time.perf_counter()
        self.specs = {t: registry.make(t, render=False) for t in self.tasks}
        self.cfg = DistillConfig(
            goal="onehot", buffer_per_task=30000, lr=args.lr, lr_schedule=args.lr_schedule,
            warmup_steps=args.warmup, batch_size=args.batch, steps=args.steps, seed=args.seed, threads=1,
            checkpoint_every=2000, log_every=1000,
            student=StudentConfig(hidden=args.hidden, layers=args.layers, feature_dim=args.feature_dim,
                                  goal_capacity=len(registry.names(self.tasks[0].split("/")[0] + "/*"))))
        self._data: dict[str, Any] | None = None

    def log(self, msg: str) -> None:
        print(f"[{time.perf_counter() - self.t0:7.0f}s] {msg}", flush=True)

    def save(self) -> None:
        tmp = self.results_path.with_name(".tmp-results.json")
        tmp.write_text(json.dumps(self.results, indent=1))
        os.replace(tmp, self.results_path)

    def stage(self, name: str, fn) -> None:
        if name in self.results.get("stages", {}) and name != "report":  # the report is always redrawn
            self.log(f"stage {name}: cached ({self.results['stages'][name]['seconds']:.0f}s when run)")
            return
        if name not in self.args.stages:
            return
        self.log(f"stage {name}: start")
        t = time.perf_counter()
        out = fn()
        self.results.setdefault("stages", {})[name] = {"seconds": time.perf_counter() - t, **(out or {})}
        self.save()
        self.log(f"stage {name}: done in {time.perf_counter() - t:.0f}s")

    # --- data --------------------------------------------------------------------------------------
    def collect(self) -> dict:
        rates = {}
        for t in self.tasks:
            r = collect_noisy_store(t, self.root / "raw" / slug(t), self.args.transitions, seed=self.args.seed)
            rates[t] = r.success_rate
            self.log(f"collect {t}: {r.transitions} transitions, {r.episodes} episodes, noisy-teacher success "
                     f"{r.success_rate:.2f}, {r.seconds:.0f}s")
        return {"noisy_teacher_success": rates}

    def demos(self) -> dict:
        for t in self.tasks:
            store = EpisodeStore(self.root / "demos")
            if any(True for _ in store.iter_episodes(t)):
                continue
            record_demo(t, self.root / "demos", seed=self.args.seed + 50_000, render=True)
        return {}

    def relabel(self) -> dict:
        out = {}
        for t in self.tasks:
            r = relabel_store(EpisodeStore(self.root / "raw" / slug(t)), self.root / "relabelled" / slug(t), t,
                              ScriptedTeacher(self.specs[t]), cap=self.cfg.buffer_per_task)
            out[t] = {"episodes": r.episodes, "transitions": r.transitions, "source_episodes": r.source_episodes}
            self.log(f"relabel {t}: {r.episodes}/{r.source_episodes} episodes, {r.transitions} transitions, "
                     f"{r.seconds:.1f}s")
        return {"relabelled": out}

    def data(self) -> dict[str, Any]:
        if self._data is None:
            self._data = {t: load_task(self.root / "relabelled" / slug(t), t, cap=self.cfg.buffer_per_task)
                          for t in self.tasks}
        return self._data

    def goals(self, kind: str) -> dict:
        if kind in G.VECTOR_KINDS:
            return G.task_goals(kind, self.tasks, student_goal_width(self.cfg))
        store = EpisodeStore(self.root / "demos")
        return {t: G.goal_image_from_store(store, t) for t in self.tasks}

    def evaluate(self, policy, episodes: int | None = None) -> dict[str, float]:
        n = episodes or self.args.eval_episodes
        return {t: evaluate(policy, t, episodes=n, seed=self.args.eval_seed).mean_score for t in self.tasks}

    def teachers(self) -> dict:
        """The clean scripted teachers on the same evaluation episodes (the experts' row)."""
        from polytask.learning.policies.base import ScriptedPolicy

        scores = {}
        for t in self.tasks:
            task = registry.make(t, render=False)
            scores[t] = evaluate(ScriptedPolicy(task), t, episodes=self.args.eval_episodes, seed=self.args.eval_seed,
                                 task=task).mean_score
        eff = sum(scores.values())
        self.log(f"scripted teachers: effective tasks {eff:.2f} / {len(self.tasks)}")
        return {"scores": scores, "effective": eff}

    # --- students ----------------------------------------------------------------------------------
    def train_eval(self, name: str, kind: str, steps: int, gcbc_demos: bool = False, pcgrad: bool = False,
                   hidden: int | None = None) -> dict:
        """One student: GCBC on the demos, or the distillation job of `polytask distill` on the shared relabelled
        stores (relabelled once, by the `relabel` stage)."""
        cfg = replace(self.cfg, goal=kind, steps=steps, pcgrad=pcgrad)
        if hidden is not None:
            cfg = replace(cfg, student=replace(cfg.student, hidden=hidden))
        run_dir = self.root / "runs" / name
        if gcbc_demos:
            goals = self.goals(kind)
            demos = demo_datasets(EpisodeStore(self.root / "demos"), self.tasks, 1)
            distiller, res = gcbc(demos, goals, cfg, run_dir=run_dir)
            distiller.save_student()
            student, scores = distiller.student, self.evaluate(StudentPolicy(distiller.student, goals))
        else:
            outcome = run_distillation(DistillJob(
                experts=["scripted"], stores=[self.root / "raw" / slug(t) for t in self.tasks], out=run_dir,
                relabelled=self.root / "relabelled", overrides=flat(asdict(cfg)), steps=steps,
                goal_images=self.root / "demos" if kind == "image" else None, eval_episodes=self.args.eval_episodes,
                eval_seed=self.args.eval_seed), log=self.log)
            res = outcome.result
            student, goals, _header, _ = load_student(outcome.checkpoint)
            scores = outcome.scores
        err = action_error(student, goals, list(self.data().values()))
        eff = sum(scores.values())
        self.log(f"{name}: effective tasks {eff:.2f} / {len(self.tasks)}, train {res.seconds:.0f}s "
                 f"({res.samples_per_s:.0f} samples/s), final loss {res.final_loss:.4f}")
        return {"scores": scores, "effective": eff, "train_seconds": res.seconds, "steps": res.step,
                "samples_per_s": res.samples_per_s, "parameters": student.num_parameters(),
                "action_mse_on_relabelled": err, "final_loss": res.final_loss}

    def polytask(self) -> dict:
        return self.train_eval("polytask-onehot", "onehot", self.args.steps)

    def gcbc(self) -> dict:
        return self.train_eval("gcbc-onehot", "onehot", self.args.gcbc_steps, gcbc_demos=True)

    def goal_modalities(self) -> dict:
        out = {}
        for kind in self.args.modalities:
            out[kind] = self.train_eval(f"polytask-{kind}", kind, self.args.modality_steps)
        return {"modalities": out}

    def onehot_same_steps(self) -> dict:
        """One-hot at the modality table's step count, so the four goal modalities compare like for like."""
        return self.train_eval(f"polytask-onehot-{self.args.modality_steps}", "onehot", self.args.modality_steps)

    def pcgrad(self) -> dict:
        """PolyTask-PCGrad: each step takes 4 tasks (a batch each) and projects their conflicting gradients."""
        return self.train_eval(f"polytask-pcgrad-{self.args.modality_steps}", "onehot", self.args.modality_steps,
                               pcgrad=True)

    def lifelong(self) -> dict:
        goals = self.goals("onehot")
        cfg = replace(self.cfg, lr_schedule="constant", warmup_steps=0, lr=self.args.lifelong_lr)
        out = {}
        for method in ("polytask", "finetune"):
            method_dir = self.root / "lifelong" / method
            while len(read_history(method_dir)) < len(self.tasks):
                k = len(read_history(method_dir))
                episodes = self.args.eval_episodes if k + 1 == len(self.tasks) else self.args.lifelong_eval_episodes
                add_task(method_dir, method, self.data(), self.tasks, goals, cfg, steps=self.args.lifelong_steps,
                         eval_episodes=episodes, eval_seed=self.args.eval_seed, log=self.log)
            hist = read_history(method_dir)
            out[method] = {"final_effective": hist[-1]["effective"], "effective_per_stage":
                           [s["effective"] for s in hist], "parameters": [s["parameters"] for s in hist]}
        return {"lifelong": out}

    def progressive(self) -> dict:
        from polytask.learning.distill.progressive import add_task_progressive

        method_dir = self.root / "lifelong" / "progressive"
        while len(read_history(method_dir)) < len(self.tasks):
            k = len(read_history(method_dir))
            episodes = self.args.eval_episodes if k + 1 == len(self.tasks) else self.args.lifelong_eval_episodes
            add_task_progressive(method_dir, self.data(), self.tasks, self.args.progressive_hidden, self.args.layers,
                                 self.args.lifelong_steps, lr=self.args.lifelong_lr, batch=self.args.batch,
                                 eval_episodes=episodes, eval_seed=self.args.eval_seed, log=self.log)
        hist = read_history(method_dir)
        return {"final_effective": hist[-1]["effective"], "effective_per_stage": [s["effective"] for s in hist],
                "parameters": [s["parameters"] for s in hist]}

    def sizes(self) -> dict:
        """Student width does not matter much (paper: 0.1M-20M parameters): one-hot at other widths."""
        return {"sizes": {str(h): self.train_eval(f"polytask-onehot-h{h}-{self.args.modality_steps}", "onehot",
                                                  self.args.modality_steps, hidden=h)
                          for h in self.args.size_hidden}}

    def report(self) -> dict:
        st = self.results["stages"]
        out_dir = self.root / "report"
        methods = {"polytask (one-hot)": st["polytask"]["scores"], "gcbc (1 demo)": st["gcbc"]["scores"]}
        if "onehot_same_steps" in st:
            methods[f"polytask (one-hot, {st['onehot_same_steps']['steps']} steps)"] = st["onehot_same_steps"]["scores"]
        if "pcgrad" in st:
            methods[f"polytask-pcgrad ({st['pcgrad']['steps']} steps)"] = st["pcgrad"]["scores"]
        for h, r in st.get("sizes", {}).get("sizes", {}).items():
            methods[f"polytask (one-hot, 3x{h}, {r['steps']} steps)"] = r["scores"]
        if "teachers" in st:
            methods = {"scripted teachers": st["teachers"]["scores"], **methods}
        for kind, r in st.get("goals", {}).get("modalities", {}).items():
            methods[f"polytask ({kind})"] = r["scores"]
        lifelong = [m for m in ("polytask", "finetune", "progressive")
                    if len(read_history(self.root / "lifelong" / m)) == len(self.tasks)]
        for method in lifelong:
            methods[f"lifelong {method}"] = read_history(self.root / "lifelong" / method)[-1]["scores"]
        report.table(report.per_task_rows(methods, self.tasks), out_dir / "per_task",
                     "Meta-World 16, state, 10 episodes per task")
        rows = [{"goal": "onehot", "effective": st["polytask"]["effective"], "steps": st["polytask"]["steps"]}]
        if "onehot_same_steps" in st:
            r = st["onehot_same_steps"]
            rows.append({"goal": "onehot", "effective": r["effective"], "steps": r["steps"]})
        for kind, r in st.get("goals", {}).get("modalities", {}).items():
            rows.append({"goal": kind, "effective": r["effective"], "steps": r["steps"]})
        report.table(rows, out_dir / "goal_modalities", "effective tasks by goal modality")
        params = [{"model": k, "parameters": st[k]["parameters"]} for k in ("polytask", "gcbc")]
        params += [{"model": f"polytask-3x{h}", "parameters": r["parameters"]}
                   for h, r in st.get("sizes", {}).get("sizes", {}).items()]
        params += [{"model": f"polytask-{k}", "parameters": r["parameters"]}
                   for k, r in st.get("goals", {}).get("modalities", {}).items()]
        if lifelong:
            hists = {m: read_history(self.root / "lifelong" / m) for m in lifelong}
            for method, hist in hists.items():
                sizes = [s["parameters"] for s in hist]
                params.append({"model": f"lifelong-{method} (after 16 tasks)", "parameters": sizes[-1],
                               "after 1 task": sizes[0], "grew": len(set(sizes)) > 1})
            report.forgetting_plot(hists, self.tasks, out_dir / "forgetting.png")
            rows = [{"stage": i + 1, **{m: h[i]["effective"] for m, h in hists.items()}}
                    for i in range(len(self.tasks))]
            report.table(rows, out_dir / "lifelong_effective", "lifelong: effective tasks after each addition")
        report.table(params, out_dir / "parameters", "parameter counts")
        return {}

    def main(self) -> None:
        torch.set_num_threads(1)
        self.results["args"] = vars(self.args)
        self.results["config"] = asdict(self.cfg)
        self.stage("collect", self.collect)
        self.stage("demos", self.demos)
        self.stage("relabel", self.relabel)
        self.stage("teachers", self.teachers)
        self.stage("polytask", self.polytask)
        self.stage("gcbc", self.gcbc)
        self.stage("goals", self.goal_modalities)
        self.stage("onehot_same_steps", self.onehot_same_steps)
        self.stage("pcgrad", self.pcgrad)
        self.stage("lifelong", self.lifelong)
        self.stage("progressive", self.progressive)
        self.stage("sizes", self.sizes)
        self.stage("report", self.report)
        self.results["wall_seconds_this_invocation"] = time.perf_counter() - self.t0
        self.save()
        st = self.results.get("stages", {})
        print(json.dumps({k: v.get("effective") for k, v in st.items() if isinstance(v, dict) and "effective" in v}))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="/tmp/mw16", help="run root (stores, runs, report); stages cached here")
    p.add_argument("--tasks", default="metaworld/*")
    p.add_argument("--transitions", type=int, default=15000, help="exploratory transitions per task (cap 30000)")
    p.add_argument("--steps", type=int, default=40000, help="distillation steps of the main one-hot student")
    p.add_argument("--modality-steps", type=int, default=12000)
    p.add_argument("--modalities", nargs="*", default=["language", "sinusoid", "image"])
    p.add_argument("--gcbc-steps", type=int, default=3000)
    p.add_argument("--lifelong-steps", type=int, default=500, help="steps per added task")
    p.add_argument("--lifelong-lr", type=float, default=5e-4)
    p.add_argument("--lifelong-eval-episodes", type=int, default=3, help="episodes per task at stages < 16")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--progressive-hidden", type=int, default=64,
                   help="width of each progressive column (laterals make its size grow ~quadratically with tasks)")
    p.add_argument("--size-hidden", type=int, nargs="*", default=[1024], help="student widths of the sizes stage")
    p.add_argument("--feature-dim", type=int, default=64, help="goal-image trunk width (image goals only)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-schedule", default="cosine", choices=["constant", "cosine"])
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--eval-seed", type=int, default=1000, help="evaluation seeds differ from collection seeds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stages", nargs="*", default=list(STAGES), choices=STAGES)
    return p.parse_args(argv)


if __name__ == "__main__":
    Run(parse(sys.argv[1:])).main()
