"""Franka Kitchen's column of Table I on states: experts, PolyTask (one-hot) and GCBC on the same evaluation.

The experts are the scripted teachers (sim/kitchen_scripted.py); PolyTask distils them into one goal-conditioned
student (Eq. 2, the project's distiller); GCBC trains the same student on the play-data snippets, the paper's
Kitchen demos (sim/kitchen_play.py: scripted play chains cut at each completion). Every method is evaluated on
the same 10 episodes per task (the env's fixed start, reset seeds EVAL_SEED..EVAL_SEED+9) and scored by the
paper's rule (+1 the target, -2 per other element completed).

Why the teacher labels are taken while collecting: the Kitchen controller is stateful (its waypoint list) and
reads the simulator, so a stored state cannot be handed back to it later; instead each exploratory episode runs
the teacher with Gaussian action noise and records, at every visited state, the teacher's clean action as
`expert_action` (what relabelling writes for a stateless teacher). The noisy actions taken are the episode's
`action`, as in an RL replay buffer.

Why the student then drives (DAgger rounds, `--dagger-rounds`): a student distilled from the teacher's own
(noisy) visits drifts, over a 280-step closed loop, into states the teacher never showed it (it closes the
gripper a few cm early, and its own closed fingers then tell it to keep them closed). Each round rolls the
current student out from the task's own start (the teacher's clean action executed instead at a step with
probability beta, halved each round, none in the last), the teacher running alongside on the true simulator state
and labelling every state the student visits; the labelled episodes join the store and the same student trains on
all of it. The teacher's waypoint machine advances on what the hand reaches, so its labels are the corrections it
would make from there, until a waypoint's step budget runs out short of it: the episode is stored up to that
step only (`before_teacher_gave_up`).

Stages (cached in --root, so a killed run continues):
  play      --chains random 4-element play chains, segmented into snippets (<root>/play: GCBC's demos), or
            --play-store DIR: snippets imported from real play data (`polytask import-demos --kitchen-play`)
  collect   --episodes-per-task noisy-teacher episodes per task, labelled with the clean teacher action
  teachers  the scripted teachers on the evaluation episodes (the experts' row)
  polytask  one-hot student distilled from every task's labelled store, then --dagger-rounds rounds of
            student-driven, teacher-labelled episodes (added to the store) and further distillation
  gcbc      the same student network on every play snippet of the six tasks
  report    <root>/table.md and <root>/results.json

  .venv/bin/python bench/kitchen_table1.py --root /tmp/kitchen-table1
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
import torch

from polytask.learning import goals as G
from polytask.learning.baselines import demo_datasets
from polytask.learning.config import load_config
from polytask.learning.data.atomic import write_text
from polytask.learning.data.episodes import EpisodeStore
from polytask.learning.data.kitchen_import import record_play_snippets
from polytask.learning.distill.config import DistillConfig
from polytask.learning.distill.data import load_task, normalizer
from polytask.learning.distill.distill import distill, new_student
from polytask.learning.distill.online_labels import (
    DaggerPolicy,
    LabellingTeacher,
    before_teacher_gave_up,
    labelled_rollout,
)
from polytask.learning.policies.base import ScriptedPolicy
from polytask.learning.policies.evaluate import evaluate
from polytask.learning.policies.student import StudentPolicy
from polytask.learning.rl.loop import EVAL_SEED
from polytask.sim import registry

STAGES = ("play", "collect", "teachers", "polytask", "gcbc", "report")
PAPER = {"experts": 4.8, "polytask": 4.5, "gcbc": 1.7}
NOISE = (0.0, 0.1, 0.2, 0.3)


def slug(task: str) -> str:
    return task.replace("/", "_")


class KitchenTable:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.root = Path(args.root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.tasks = [t for t in registry.names("kitchen/*") if any(fnmatch.fnmatch(t, p) for p in args.tasks)]
        self.path = self.root / "results.json"
        self.results: dict[str, Any] = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.t0 = time.time()
        self.goals = G.task_goals("onehot", self.tasks, 0)

    def log(self, msg: str) -> None:
        print(f"[kitchen-table1 {time.strftime('%H:%M:%S')} +{time.time() - self.t0:.0f}s] {msg}", flush=True)

    def save(self) -> None:
        write_text(self.path, json.dumps(self.results, indent=1, default=float))

    def cfg(self, steps: int) -> DistillConfig:
        a = self.args
        return load_config(
            DistillConfig,
            None,
            {
                "goal": "onehot",
                "obs": "state",
                "lr": a.lr,
                "lr_schedule": "cosine",
                "warmup_steps": 200,
                "steps": steps,
                "batch_size": 256,
                "student.hidden": a.hidden,
                "student.layers": a.layers,
                "threads": 1,
                "seed": a.seed,
            },
        )

    def evaluate(self, policy_for: Any) -> dict[str, Any]:
        scores, successes = {}, {}
        for t in self.tasks:
            task = registry.make(t, render=False)
            try:
                r = evaluate(policy_for(task), t, episodes=self.args.eval_episodes, seed=EVAL_SEED, task=task)
            finally:
                task.close()
            scores[t], successes[t] = r.mean_score, int(sum(r.successes))
            self.log(f"  {t}: score {r.mean_score:+.2f}, {successes[t]}/{r.episodes} successful")
        return {"scores": scores, "successes": successes, "effective": float(sum(scores.values()))}

    # --- stages ------------------------------------------------------------------------------------------
    @property
    def play_store(self) -> Path:
        return Path(self.args.play_store) if self.args.play_store else self.root / "play"

    def play(self) -> None:
        store = EpisodeStore(self.play_store)
        done = self.args.chains if self.args.play_store else int(self.results.get("play_chains", 0))
        for i in range(done, self.args.chains):
            eps = record_play_snippets(1, store, seed=self.args.seed * 1000 + i, init_noise=0.1)
            self.results["play_chains"] = i + 1
            self.save()
            self.log(f"play chain {i + 1}/{self.args.chains}: {[ep.task for ep in eps]}")
        counts = {t: sum(1 for ep in store.episodes(t) if ep.episode_success) for t in self.tasks}
        self.results["snippets"] = counts
        self.log(f"snippets per task: {counts}")

    def collect(self) -> None:
        a = self.args
        for t in self.tasks:
            store = EpisodeStore(self.root / "labelled" / slug(t))
            task = registry.make(t, render=False, init_noise=a.collect_init_noise)
            rng = np.random.default_rng([a.seed, task.spec.task_id])
            try:
                for i in range(len(store.paths()), a.episodes_per_task):
                    teacher = LabellingTeacher(task, NOISE[i % len(NOISE)], rng)
                    ep = labelled_rollout(task, teacher, a.seed * 100_000 + i)
                    ep.extra.update(noise_std=teacher.noise_std, teacher="scripted, labelled online")
                    store.append(ep)
                    self.log(
                        f"collect {t} {i + 1}/{a.episodes_per_task}: noise {teacher.noise_std}, "
                        f"success {ep.episode_success}, score {ep.score:+.0f}"
                    )
            finally:
                task.close()

    def teachers(self) -> None:
        if "teachers" not in self.results:
            self.results["teachers"] = self.evaluate(lambda task: ScriptedPolicy(task))
            self.save()

    def student(self, cfg: DistillConfig, data: list[Any]) -> Any:
        """A new student whose input standardisation floors each state dimension's std at --std-floor: many of the
        59 dimensions (velocities of elements a task never touches) vary only by the env's observation noise, and
        dividing by that noise's std turns them into unit-variance noise inputs."""
        student = new_student(cfg, data, self.goals)
        mean, std = normalizer(data)
        student.set_normalizer(mean, np.maximum(std, self.args.std_floor))
        return student

    def polytask(self) -> None:
        if "polytask" in self.results:
            return
        start = time.time()
        cfg = self.cfg(self.args.steps)
        rounds: list[dict[str, Any]] = self.results.setdefault("dagger", [])
        if rounds:  # a killed run: the student of the last finished round carries on
            student = load_student_round(self.root, len(rounds) - 1)
        else:
            data = self.labelled_data()
            student = self.student(cfg, data)
            distiller, res = distill(
                data,
                self.goals,
                cfg,
                run_dir=self.root / "polytask" / "round0",
                student=student,
                header_extra={"method": "polytask", "round": 0},
            )
            distiller.save_student()
            rounds.append({"round": 0, "rows": {d.task: len(d) for d in data}, "final_loss": res.final_loss})
            self.save()
        for r in range(len(rounds), self.args.dagger_rounds + 1):
            beta = 0.0 if r == self.args.dagger_rounds else self.args.dagger_beta * 0.5 ** (r - 1)
            on_policy = self.dagger_collect(r, beta, StudentPolicy(student, self.goals))
            data = self.labelled_data()
            distiller, res = distill(
                data,
                self.goals,
                self.cfg(self.args.dagger_steps),
                run_dir=self.root / "polytask" / f"round{r}",
                student=student,
                header_extra={"method": "polytask", "round": r},
            )
            distiller.save_student()
            rounds.append(
                {
                    "round": r,
                    "beta": beta,
                    "rollout_success": on_policy,
                    "final_loss": res.final_loss,
                    "rows": {d.task: len(d) for d in data},
                }
            )
            self.save()
            self.log(f"dagger round {r}: beta {beta:.3f}, rollout success {on_policy}, loss {res.final_loss:.4f}")
        row = self.evaluate(lambda task: StudentPolicy(student, self.goals))
        self.results["polytask"] = {
            **row,
            "rows": rounds[-1]["rows"],
            "final_loss": rounds[-1]["final_loss"],
            "train_seconds": round(time.time() - start, 1),
            "dagger_rounds": len(rounds) - 1,
        }
        self.save()

    def labelled_data(self) -> list[Any]:
        return [load_task(self.root / "labelled" / slug(t), t, cap=10**6) for t in self.tasks]

    def dagger_collect(self, r: int, beta: float, policy: StudentPolicy) -> dict[str, int]:
        """--dagger-episodes student-driven, teacher-labelled episodes per task for round `r` (a killed round
        keeps the episodes it stored); returns each task's successes among this round's episodes."""
        a, successes = self.args, {}
        for t in self.tasks:
            store = EpisodeStore(self.root / "labelled" / slug(t))
            mine = [ep for ep in store.episodes(t) if ep.extra.get("dagger_round") == r]
            task = registry.make(t, render=False, init_noise=a.dagger_init_noise)
            rng = np.random.default_rng([a.seed, task.spec.task_id, r])
            try:
                for i in range(len(mine), a.dagger_episodes):
                    ep = labelled_rollout(task, DaggerPolicy(task, policy, beta, rng), (a.seed + r) * 100_000 + i)
                    ep = before_teacher_gave_up(ep, task)
                    ep.extra.update(dagger_round=r, beta=beta, teacher="scripted, labelled online")
                    store.append(ep)
                    mine.append(ep)
            finally:
                task.close()
            successes[t] = sum(1 for ep in mine if ep.episode_success)
        return successes

    def gcbc(self) -> None:
        if "gcbc" in self.results:
            return
        store = EpisodeStore(self.play_store, create=False)
        n = min(sum(1 for ep in store.episodes(t) if ep.episode_success) for t in self.tasks)
        if n == 0:
            raise SystemExit(f"{store.root}: a task has no play snippet; record more chains (--chains)")
        demos = demo_datasets(store, self.tasks, n)
        cfg, data = self.cfg(self.args.gcbc_steps), list(demos.values())
        distiller, res = distill(
            data,
            self.goals,
            cfg,
            run_dir=self.root / "gcbc",
            student=self.student(cfg, data),
            header_extra={"method": "gcbc"},
        )  # baselines.gcbc with the floored normaliser
        distiller.save_student()
        row = self.evaluate(lambda task: StudentPolicy(distiller.student, self.goals))
        self.results["gcbc"] = {**row, "snippets_per_task": n, "final_loss": res.final_loss, "steps": res.step}
        self.save()

    def report(self) -> None:
        r = self.results
        methods = [
            ("experts", "teachers", "scripted teachers"),
            ("polytask", "polytask", "PolyTask (one-hot)"),
            ("gcbc", "gcbc", "GCBC (play snippets)"),
        ]
        methods = [m for m in methods if m[1] in r]
        lines = ["| task | " + " | ".join(m[2] for m in methods) + " |", "|" + "---|" * (len(methods) + 1)]
        n = self.args.eval_episodes
        for t in self.tasks:
            cells = [f"{r[k]['scores'][t]:+.1f} ({r[k]['successes'][t]}/{n})" for _, k, _ in methods]
            lines.append(f"| `{t}` | " + " | ".join(cells) + " |")
        lines.append(
            "| **effective tasks (of 6)** | " + " | ".join(f"**{r[k]['effective']:.1f}**" for _, k, _ in methods) + " |"
        )
        lines.append("| paper (pixels, human play data) | " + " | ".join(str(PAPER[p]) for p, _, _ in methods) + " |")
        text = "\n".join(lines) + "\n"
        if "polytask" in r:
            ok = r["polytask"]["effective"] >= 4.5
            text += f"\n- PolyTask {r['polytask']['effective']:.1f} >= 4.5: {'met' if ok else 'MISSED'}\n"
        write_text(self.root / "table.md", text)
        print(text, flush=True)

    def main(self) -> None:
        torch.set_num_threads(1)
        for name in STAGES:
            if name in self.args.stages:
                start = time.time()
                getattr(self, name)()
                self.log(f"stage {name}: done in {time.time() - start:.0f}s")
        self.results.setdefault("seconds", []).append(round(time.time() - self.t0, 1))
        self.save()


def load_student_round(root: Path, r: int) -> Any:
    from polytask.learning.distill.distill import STUDENT_FILE
    from polytask.learning.policies.student import load_student

    return load_student(root / "polytask" / f"round{r}" / STUDENT_FILE)[0]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="/tmp/kitchen-table1")
    p.add_argument("--tasks", nargs="*", default=["kitchen/*"], help="patterns over the six Kitchen tasks")
    p.add_argument("--stages", nargs="*", default=list(STAGES), choices=STAGES)
    p.add_argument("--chains", type=int, default=12, help="play chains (4 elements each) for GCBC's snippets")
    p.add_argument(
        "--play-store",
        default="",
        help="snippets imported with `polytask import-demos --kitchen-play` "
        "(e.g. from the relay-policy-learning demos) instead of --chains recorded here",
    )
    p.add_argument("--episodes-per-task", type=int, default=12, help="noisy-teacher episodes per task (280 steps)")
    p.add_argument("--collect-init-noise", type=float, default=0.1, help="arm start noise (rad) when collecting")
    p.add_argument("--steps", type=int, default=8000, help="PolyTask distillation steps")
    p.add_argument("--dagger-rounds", type=int, default=10, help="student-driven, teacher-labelled rounds (0: none)")
    p.add_argument("--dagger-episodes", type=int, default=6, help="episodes per task per DAgger round")
    p.add_argument(
        "--dagger-beta", type=float, default=0.5, help="round 1's chance of the teacher acting (halved each round)"
    )
    p.add_argument(
        "--dagger-init-noise",
        type=float,
        default=0.0,
        help="arm start noise (rad) of the DAgger rollouts (0: the task's own fixed start)",
    )
    p.add_argument("--dagger-steps", type=int, default=3000, help="distillation steps after each DAgger round")
    p.add_argument("--gcbc-steps", type=int, default=4000)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--std-floor", type=float, default=0.01, help="floor of the student's input std (state units)")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


if __name__ == "__main__":
    KitchenTable(parse(sys.argv[1:])).main()
