"""Distil per-task teachers into one unified student (PolyTask phase 2, Eq. 2 / Algorithm 2).

Each --stores folder is an episode store (e.g. an expert's replay buffer); the --experts entry at the same
position is its teacher: an expert checkpoint, or `scripted` for the task's scripted policy (one entry applies to
all stores). Every stored state is relabelled with the teacher's action (into <out>/relabelled/, resumable), then
a randomly initialised student is trained on all tasks (resumable: rerun the same command after a crash) and
evaluated; the policy is <out>/student.safetensors, the per-task table <out>/eval.csv.

With --lifelong, the stores' tasks are ADDED to the lifelong run in <out> one at a time (one command per added
task works too): the student is re-distilled over the relabelled stores of every task seen so far, with the same
parameter count, and each stage's policy and evaluation are kept in <out>/lifelong/<method>/history.json.

  polytask distill --experts scripted --stores data/replay/door-open data/replay/drawer-open --out runs/d1
  polytask distill --experts scripted --stores data/replay/hammer --out runs/ll --lifelong
"""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "distill"
HELP = "relabel stores with teachers and distil one unified student (multi-task or lifelong)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--experts", nargs="+", required=True,
                   help="one teacher per store: an expert checkpoint or 'scripted' (a single entry applies to all)")
    p.add_argument("--stores", nargs="+", required=True, help="episode stores to relabel (one task each)")
    p.add_argument("--out", required=True, help="run folder (relabelled stores, checkpoints, tables)")
    p.add_argument("--config", default=None, help="distillation YAML (default: Table V, see config/distill.yaml)")
    p.add_argument("--goal", choices=("onehot", "language", "image", "sinusoid"), default=None,
                   help="student goal modality (overrides the config)")
    p.add_argument("--goal-images", default=None,
                   help="demo store whose successful demos' last frames are the image goals (--goal image)")
    p.add_argument("--steps", type=int, default=None, help="gradient steps (per added task with --lifelong)")
    p.add_argument("--lifelong", action="store_true", help="add the stores' tasks to a lifelong run in --out")
    p.add_argument("--method", choices=("polytask", "finetune"), default="polytask",
                   help="lifelong method (finetune: the Fine-tuning baseline)")
    p.add_argument("--eval-episodes", type=int, default=10, help="episodes per task (0: skip evaluation)")
    p.add_argument("--eval-seed", type=int, default=1000)
    p.add_argument("--no-resume", action="store_true", help="refuse to continue an existing distillation state")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides, e.g. lr=1e-3 student.hidden=512 (YAML values)")
    p.add_argument("--no-progress", action="store_true")


def _overrides(items: list[str]) -> dict:
    import yaml

    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        parsed = yaml.safe_load(value)
        if isinstance(parsed, str):  # YAML 1.1 reads '1e-3' as text
            try:
                parsed = float(parsed)
            except ValueError:
                pass
        out[key] = parsed
    return out


def _teacher(expert: str, task_name: str, device: str):
    from polytask.learning.distill.relabel import PolicyTeacher, ScriptedTeacher
    from polytask.sim import registry

    task = registry.make(task_name, render=False)
    if expert == "scripted":
        return ScriptedTeacher(task)
    from polytask.learning.expert_policy import load_policy

    if not Path(expert).is_file():
        raise FileNotFoundError(f"--experts: {expert!r} is neither 'scripted' nor a checkpoint file")
    return PolicyTeacher(load_policy(expert, device=device, task=task_name), task.goal)


def run(args: argparse.Namespace) -> int:
    import json

    from polytask.learning.config import load_config
    from polytask.learning.distill import goals as G
    from polytask.learning.distill.data import load_task
    from polytask.learning.distill.distill import distill
    from polytask.learning.distill.lifelong import add_task, read_history
    from polytask.learning.distill.relabel import relabel_store
    from polytask.learning.distill.student import StudentPolicy
    from polytask.learning.distill_config import DistillConfig
    from polytask.learning.episodes import EpisodeStore
    from polytask.learning.evaluate import effective_tasks, evaluate, write_csv
    from polytask.sim import registry

    overrides = _overrides(args.set)
    if args.goal:
        overrides["goal"] = args.goal
    cfg = load_config(DistillConfig, args.config, overrides)
    if len(args.experts) not in (1, len(args.stores)):
        raise ValueError(f"--experts has {len(args.experts)} entries for {len(args.stores)} stores; give one "
                         "per store or a single one for all")
    experts = args.experts * len(args.stores) if len(args.experts) == 1 else args.experts
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import torch

    torch.set_num_threads(cfg.threads)

    # 1. relabel every store (resumable)
    new_tasks = []
    for expert, root in zip(experts, args.stores, strict=True):
        store = EpisodeStore(root, create=False)
        tasks = store.tasks()
        if not tasks:
            raise ValueError(f"store {root}: no readable episodes")
        for task in tasks:
            rep = relabel_store(store, out / "relabelled" / task.replace("/", "_"), task,
                                _teacher(expert, task, cfg.device), cap=cfg.buffer_per_task)
            print(f"relabelled {task}: {rep.episodes}/{rep.source_episodes} episodes, {rep.transitions} "
                  f"transitions ({rep.written} new)")
            new_tasks.append(task)

    # 2. the task list (lifelong: those already in the run first, in their order)
    known_path = out / "tasks.json"
    known = json.loads(known_path.read_text()) if known_path.exists() else []
    tasks = list(known) + [t for t in new_tasks if t not in known] if args.lifelong else list(dict.fromkeys(new_tasks))
    known_path.write_text(json.dumps(tasks))
    data = {t: load_task(out / "relabelled" / t.replace("/", "_"), t, cap=cfg.buffer_per_task,
                         pixels=cfg.obs == "pixels", frame_stack=cfg.student.frame_stack) for t in tasks}
    specs = {t: registry.make(t, render=False).spec for t in tasks}
    suite = specs[tasks[0]].suite
    capacity = cfg.student.goal_capacity or len(registry.names(f"{suite}/*")) or len(tasks)
    ids = [specs[t].task_id for t in tasks]
    if cfg.goal == "onehot":
        goals = G.goal_vectors("onehot", tasks, ids, capacity)
    elif cfg.goal == "sinusoid":
        goals = G.goal_vectors("sinusoid", tasks, ids, cfg.student.sinusoid_dim)
    elif cfg.goal == "language":
        goals = G.goal_vectors("language", tasks, ids, G.LANGUAGE_DIM,
                               [G.sentence_for(t, specs[t].language) for t in tasks])
    else:
        if not args.goal_images:
            raise ValueError("--goal image needs --goal-images <demo store> (last frame of a successful demo)")
        demo_store = EpisodeStore(args.goal_images, create=False)
        goals = {t: G.goal_image_from_store(demo_store, t) for t in tasks}

    # 3. distil (multi-task) or add tasks one at a time (lifelong)
    if args.lifelong:
        method_dir = out / "lifelong" / args.method
        while len(read_history(method_dir)) < len(tasks):
            add_task(method_dir, args.method, data, tasks, goals, cfg, steps=args.steps or cfg.steps,
                     eval_episodes=max(1, args.eval_episodes), eval_seed=args.eval_seed,
                     progress=not args.no_progress)
        hist = read_history(method_dir)
        print(f"lifelong {args.method}: {len(hist)} tasks, effective tasks {hist[-1]['effective']:.2f}, "
              f"parameters {hist[-1]['parameters']}")
        return 0
    distiller, res = distill(list(data.values()), goals, cfg, run_dir=out, steps=args.steps,
                             resume=not args.no_resume, progress=not args.no_progress,
                             header_extra={"method": "polytask"})
    ckpt = distiller.save_student()
    if res.resumed_from:
        print(f"resumed from step {res.resumed_from}")
    print(f"student: {ckpt} ({distiller.student.num_parameters()} parameters, step {res.step}, "
          f"{res.samples_per_s:.0f} samples/s)")
    if args.eval_episodes > 0:
        policy = StudentPolicy(distiller.student, goals)
        results = {t: evaluate(policy, t, episodes=args.eval_episodes, seed=args.eval_seed,
                               render=cfg.obs == "pixels") for t in tasks}
        write_csv(results, out / "eval.csv")
        for t, r in results.items():
            print(f"  {t:45s} {r.mean_score:.2f}")
        print(f"effective tasks: {effective_tasks(results):.2f} / {len(tasks)}")
    return 0
