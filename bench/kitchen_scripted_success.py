"""Scripted-expert success on the six Franka Kitchen tasks under the strict threshold (docs/results-kitchen.md).

    MUJOCO_GL=egl .venv/bin/python bench/kitchen_scripted_success.py --seeds 10 --init-noise 0 0.1
    MUJOCO_GL=egl .venv/bin/python bench/kitchen_scripted_success.py --play-chains 30 --init-noise 0.1

Rendering is off (the verdict needs only the simulator state), so a full run takes a few minutes on 2 CPU cores.
For every task and start-noise level it prints successes / seeds, the mean first step of strict success, the mean
score (+1 target, -2 per other element) and the loose-threshold success for comparison.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from polytask.learning.data.atomic import write_json
from polytask.sim import registry
from polytask.sim.kitchen_elements import loose_complete


def run(task_name: str, seeds: int, init_noise: float) -> dict:
    task = registry.make(task_name, render=False, init_noise=init_noise)
    wins, scores, first, loose = 0, [], [], 0
    t0 = time.time()
    for seed in range(seeds):
        step = task.reset(seed=seed)
        loose_hit = False
        while not step.done:
            step = task.step(task.scripted_action(step))
            loose_hit = loose_hit or loose_complete(task.data.qpos, task.element)
        wins += int(task.episode_success())
        loose += int(loose_hit)
        scores.append(task.score())
        if task.element in task.completion_step:
            first.append(task.completion_step[task.element])
    task.close()
    return {"task": task_name, "init_noise": init_noise, "seeds": seeds, "strict_success": wins,
            "loose_success": loose, "mean_score": float(np.mean(scores)),
            "mean_success_step": float(np.mean(first)) if first else None, "seconds": round(time.time() - t0, 1)}


def run_chains(n: int, init_noise: float, length: int = 4) -> dict:
    """Random play chains of `length` distinct elements: per-element success inside chains, and whether the
    segmenter recovers exactly the achieved elements in order."""
    from polytask.sim.kitchen_play import ELEMENT_TASK, record_play, segment

    elements = list(ELEMENT_TASK)
    rng = np.random.default_rng(0)
    tried = dict.fromkeys(elements, 0)
    achieved = dict.fromkeys(elements, 0)
    agree, steps = 0, []
    for i in range(n):
        order = [str(e) for e in rng.choice(elements, size=length, replace=False)]
        traj = record_play(order, seed=i, init_noise=init_noise)
        for e in order:
            tried[e] += 1
        for e in traj.extra["achieved"]:
            achieved[e] += 1
        agree += int([s.element for s in segment(traj)] == traj.extra["achieved"])
        steps.append(len(traj))
        print(f"chain {i}: {' -> '.join(order)}: achieved {traj.extra['achieved']}", flush=True)
    return {"chains": n, "tried": tried, "achieved": achieved, "segmenter_agrees": agree,
            "mean_length": float(np.mean(steps))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="*", default=None, help="task names (default: every kitchen/* task)")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--init-noise", type=float, nargs="+", default=[0.0, 0.1],
                        help="uniform noise (rad) on the arm's start joints; 0 is the paper's fixed start")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--play-chains", type=int, default=0,
                        help="instead: record N random 4-element play chains and check the segmenter on them")
    args = parser.parse_args(argv)
    if args.play_chains:
        r = run_chains(args.play_chains, args.init_noise[0])
        print("| element | achieved in chains |\n|---|---|")
        for e in r["tried"]:
            print(f"| {e} | {r['achieved'][e]}/{r['tried'][e]} |")
        print(f"segmenter recovered exactly the achieved elements in order: {r['segmenter_agrees']}/{r['chains']} "
              f"chains (mean length {r['mean_length']:.0f} agent steps)")
        return 0
    tasks = args.tasks or registry.names("kitchen/*")
    rows = []
    print("| task | start noise (rad) | strict success | loose success | mean score | mean step of success |")
    print("|---|---|---|---|---|---|")
    for noise in args.init_noise:
        for name in tasks:
            r = run(name, args.seeds, noise)
            rows.append(r)
            step = "-" if r["mean_success_step"] is None else f"{r['mean_success_step']:.0f}"
            print(f"| {name} | {noise:g} | {r['strict_success']}/{r['seeds']} | {r['loose_success']}/{r['seeds']} "
                  f"| {r['mean_score']:+.2f} | {step} |", flush=True)
    if args.json:
        write_json(args.json, rows, indent=1)  # atomic: a killed run leaves no half file
    return 0


if __name__ == "__main__":
    sys.exit(main())
