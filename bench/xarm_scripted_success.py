"""Scripted-expert success and simulation speed on the xArm tasks (docs/results-xarm.md).

    MUJOCO_GL=egl .venv/bin/python bench/xarm_scripted_success.py --seeds 10
    MUJOCO_GL=egl .venv/bin/python bench/xarm_scripted_success.py --seeds 100 --noise 0.2 --pixel-steps 0

Per task: successes of the scripted expert (which reads the state vector only) over seeds 0..N-1, the mean
first step at which the success rule held, successes of a do-nothing policy (zero motion, tool at -1), agent
steps/s with the scripted expert and rendering off, and with 84x84 pixels at the "fast" quality. Speeds are
also given as a ratio to `xarm/reach` (the baseline: the bare arm, 50 physics substeps per agent step) measured
in the same process right before each task, so a machine whose load drifts shows in both and the ratio stays
comparable.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from polytask.sim import registry

BASELINE = "xarm/reach"


def success_run(name: str, seeds: int, noise: float) -> dict:
    task = registry.make(name, render=False)
    rng = np.random.default_rng(0)
    wins, still, first, steps, seconds = 0, 0, [], 0, 0.0
    for seed in range(seeds):
        step = task.reset(seed=seed)
        t0 = time.perf_counter()
        hit = None
        while not step.done:
            action = task.scripted_action(step)
            if noise > 0:
                action = np.clip(action + rng.normal(0.0, noise, size=action.shape), -1.0, 1.0)
            step = task.step(action)
            steps += 1
            if step.success and hit is None:
                hit = task.t
        seconds += time.perf_counter() - t0
        wins += int(task.episode_success())
        if hit is not None:
            first.append(hit)
    for seed in range(min(seeds, 3)):  # doing nothing must never pass the success rule
        step = task.reset(seed=seed)
        while not step.done:
            step = task.step(np.array([0.0, 0.0, 0.0, -1.0]))
        still += int(task.episode_success())
    task.close()
    return {
        "task": name,
        "seeds": seeds,
        "wins": wins,
        "still": still,
        "still_seeds": min(seeds, 3),
        "first": float(np.mean(first)) if first else None,
        "horizon": task.spec.horizon,
        "state_steps_s": steps / seconds,
    }


def pixel_speed(name: str, n_steps: int) -> float:
    """Agent steps/s with 84x84 rendering at every step (the scripted expert acting)."""
    task = registry.make(name, render=True, quality="fast")
    step = task.reset(seed=0)
    t0 = time.perf_counter()
    for _ in range(n_steps):
        step = task.step(task.scripted_action(step))
        if step.done:
            step = task.reset()
    rate = n_steps / (time.perf_counter() - t0)
    task.close()
    return rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="*", default=None, help="task names or globs (default: xarm/*)")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--noise", type=float, default=0.0, help="Gaussian noise (action units) on the expert")
    parser.add_argument("--pixel-steps", type=int, default=60, help="steps for the pixel speed (0: skip)")
    args = parser.parse_args(argv)
    names = [n for pattern in (args.tasks or ["xarm/*"]) for n in registry.names(pattern)]
    print(
        f"load average before: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs); seeds 0..{args.seeds - 1}, "
        f"expert noise {args.noise:g}"
    )
    print(
        f"| task | horizon | scripted success | mean first success step | do-nothing success | steps/s (state; "
        f"x {BASELINE}'s) | steps/s (84x84 pixels; x {BASELINE}'s) |"
    )
    print("|---|---|---|---|---|---|---|")
    total = 0.0
    for name in names:
        base = success_run(BASELINE, 3, 0.0)["state_steps_s"]  # the baseline, measured next to each task
        base_px = pixel_speed(BASELINE, args.pixel_steps) if args.pixel_steps else None
        r = success_run(name, args.seeds, args.noise)
        total += r["wins"] / r["seeds"]
        px = pixel_speed(name, args.pixel_steps) if args.pixel_steps else None
        first = "-" if r["first"] is None else f"{r['first']:.1f}"
        px_cell = "-" if px is None else f"{px:.0f} ({px / base_px:.2f}x of {base_px:.0f})"
        print(
            f"| `{name}` | {r['horizon']} | {r['wins']}/{r['seeds']} | {first} | {r['still']}/{r['still_seeds']} "
            f"| {r['state_steps_s']:.0f} ({r['state_steps_s'] / base:.2f}x of {base:.0f}) | {px_cell} |",
            flush=True,
        )
    print(f"effective number of tasks (sum of success rates): {total:.1f} of {len(names)}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
