"""Stages 2 and 3 of `polytask demo`: small, CPU-sized versions of the real pipeline, through the library code.

Stage 2 follows the documented distillation run (bench/metaworld_distill_run.py) on a handful of tasks:
exploratory stores of noisy scripted teachers -> the distillation job of `polytask distill` (relabelled with the
clean teachers, one one-hot student, evaluated) -> beside it GCBC trained on one demo per task, on the same seeds.
Stage 3 starts the deploy graph on the sim bridge with that student and reports the monitor's summary.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

DISTILL_TASKS = ("metaworld/button-press-topdown", "metaworld/drawer-close", "metaworld/door-unlock",
                 "metaworld/plate-slide")
TRANSITIONS_PER_TASK = 3000
STUDENT_STEPS = 3000
GCBC_STEPS = 1500
EVAL_EPISODES = 5
EVAL_SEED = 1000


@dataclass
class DistillOutcome:
    student_path: Path
    polytask: dict[str, float]
    gcbc: dict[str, float]


def _slug(task: str) -> str:
    return task.replace("/", "_")


def stage_distill(out: Path) -> DistillOutcome:
    import torch

    from polytask.learning import goals as G
    from polytask.learning.baselines import demo_datasets, gcbc
    from polytask.learning.config import load_config
    from polytask.learning.data.episodes import EpisodeStore
    from polytask.learning.distill.collect import collect_noisy_store, record_demo
    from polytask.learning.distill.config import DistillConfig
    from polytask.learning.distill.pipeline import DistillJob, run_distillation
    from polytask.learning.policies.evaluate import evaluate
    from polytask.learning.policies.student import StudentPolicy
    from polytask.sim import registry

    torch.set_num_threads(2)
    root = out / "distill"
    tasks = list(DISTILL_TASKS)
    t0 = time.perf_counter()
    for t in tasks:
        rep = collect_noisy_store(t, root / "raw" / _slug(t), TRANSITIONS_PER_TASK)
        record_demo(t, root / "demos", seed=50_000, render=False)
        print(f"{t:<32} {rep.transitions} exploratory transitions (noisy-teacher success "
              f"{rep.success_rate:.2f})", flush=True)
    capacity = len(registry.names("metaworld/*"))
    # Table V's lr 5e-5 / hidden 1024 need ~100k steps; the demo uses a smaller, faster schedule (see docs).
    overrides = {"goal": "onehot", "lr": 1e-3, "lr_schedule": "cosine", "warmup_steps": 200, "threads": 2,
                 "checkpoint_every": STUDENT_STEPS, "log_every": STUDENT_STEPS, "student.hidden": 256,
                 "student.layers": 3, "student.goal_capacity": capacity}
    # the distillation job of `polytask distill`: relabel every store with its scripted teacher, distil, evaluate
    polytask = run_distillation(DistillJob(
        experts=["scripted"], stores=[root / "raw" / _slug(t) for t in tasks], out=root / "polytask",
        overrides=overrides, steps=STUDENT_STEPS, eval_episodes=EVAL_EPISODES, eval_seed=EVAL_SEED,
        show_progress=True))
    res = polytask.result
    print(f"student: {polytask.parameters} parameters, {polytask.step} steps, final loss {res.final_loss:.4f}, "
          f"{res.seconds:.0f} s", flush=True)
    # the baseline: the same student network on one demo per task
    cfg = load_config(DistillConfig, None, {**overrides, "steps": STUDENT_STEPS})
    goals = G.task_goals("onehot", tasks, capacity)
    demos = demo_datasets(EpisodeStore(root / "demos"), tasks, 1)
    gcbc_distiller, _ = gcbc(demos, goals, cfg, run_dir=root / "gcbc", steps=GCBC_STEPS, progress=True)
    policy = StudentPolicy(gcbc_distiller.student, goals)
    scores = {"polytask": dict(polytask.scores),
              "gcbc": {t: evaluate(policy, t, episodes=EVAL_EPISODES, seed=EVAL_SEED).mean_score for t in tasks}}
    print(f"\n{'task':<32} {'PolyTask':>9} {'GCBC':>9}   (success over {EVAL_EPISODES} episodes, unseen seeds)")
    for t in tasks:
        print(f"{t:<32} {scores['polytask'][t]:>9.2f} {scores['gcbc'][t]:>9.2f}")
    print(f"{'effective number of tasks':<32} {sum(scores['polytask'].values()):>9.2f} "
          f"{sum(scores['gcbc'].values()):>9.2f}   (of {len(tasks)}; {time.perf_counter() - t0:.0f} s)")
    (root / "effective_tasks.json").write_text(json.dumps(scores, indent=1))
    return DistillOutcome(student_path=polytask.checkpoint, polytask=scores["polytask"], gcbc=scores["gcbc"])


def stage_deploy(out: Path, seconds: float, student_path: Path | None = None,
                 task: str = "metaworld/drawer-close") -> dict:
    from polytask.launch.graphs import resolve
    from polytask.launcher import Launcher

    checkpoint = str(student_path) if student_path else f"scripted:{task}"
    summary_path = (out / "deploy_summary.json").resolve()
    env = dict(os.environ)
    env.setdefault("ROS_DOMAIN_ID", "31")
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    nodes = resolve("deploy", {"robot": "sim", "task": task, "checkpoint": checkpoint, "rviz": "false",
                                       "summary": str(summary_path)})
    print(f"deploy: robot:=sim task:={task} checkpoint:={checkpoint} for {seconds:.0f} s "
          f"({', '.join(n.name for n in nodes)})", flush=True)
    log_path = out / "deploy.log"
    with open(log_path, "w") as log, Launcher(nodes, env=env, output=log) as launcher:
        launcher.run(duration=seconds)
    if not summary_path.exists():
        raise RuntimeError(f"deploy: the monitor wrote no summary to {summary_path}; node logs: {log_path}")
    summary = json.loads(summary_path.read_text())
    print("monitor saw: " + json.dumps(summary, indent=1, sort_keys=True))
    return summary
