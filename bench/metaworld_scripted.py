"""Scripted-expert success on the paper's 16 Meta-World tasks, at the paper's action repeat 2 and horizons.

Usage (state only, no rendering; ~3 min for all 16 tasks on 2 CPU cores):
    MUJOCO_GL=egl .venv/bin/python bench/metaworld_scripted.py --seeds 10
    MUJOCO_GL=egl .venv/bin/python bench/metaworld_scripted.py --placements all --stock

`--seeds N` runs episodes reset(seed=0..N-1), each drawing its placement as training does; `--placements all`
runs every one of the 50 MT1 placements once, which removes the luck of the draw. `--stock` adds a column for
the unmodified `metaworld.policies` policy. Success is the authors' rule (flag on for more than 10 agent steps),
counted two ways: `Task.step`'s (flag on at either simulator step of an action repeat) and the authors' (flag
of the repeat's last simulator step); the table shows the first and flags any disagreement.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np

from polytask.sim import registry
from polytask.sim.metaworld_suite import N_PLACEMENTS, TASKS, episode_succeeded


class _StockExpert:
    def __init__(self, env_name: str) -> None:
        from metaworld.policies import ENV_POLICY_MAP

        self._policy = ENV_POLICY_MAP[env_name]()

    def get_action(self, state: np.ndarray) -> np.ndarray:
        return np.clip(self._policy.get_action(np.asarray(state, dtype=np.float64).copy()), -1.0, 1.0)


def run_episodes(name: str, episodes: list[tuple[int | None, int | None]], stock: bool) -> tuple[int, int, int]:
    """Run (seed, fixed_placement) episodes; return (successes, successes by the last-flag rule, disagreements)."""
    task = registry.make(f"metaworld/{name}", render=False)
    expert = _StockExpert(task.info.env_name) if stock else None
    last_flag = {"on": False}
    real_step = task._step

    def recording_step(action):
        out = real_step(action)
        last_flag["on"] = bool(out[2])
        return out

    task._step = recording_step
    ok = ok_last = 0
    try:
        for seed, placement in episodes:
            task.fixed_placement = placement
            step = task.reset(seed=seed)
            last_count = 0
            while not step.done:
                action = expert.get_action(step.state) if expert else task.scripted_action(step)
                step = task.step(action)
                last_count += int(last_flag["on"])
            ok += int(task.episode_success())
            ok_last += int(episode_succeeded(last_count))
    finally:
        task.close()
    return ok, ok_last, abs(ok - ok_last)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--seeds", type=int, default=10, help="episodes reset(seed=0..N-1), placements drawn")
    group.add_argument("--placements", choices=["all"], help="every MT1 placement once instead of drawn ones")
    parser.add_argument("--stock", action="store_true", help="also run the unmodified metaworld.policies")
    parser.add_argument("--tasks", nargs="*", default=[t.name for t in TASKS], help="task names (no -v3)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="Constant")

    if args.placements == "all":
        episodes: list[tuple[int | None, int | None]] = [(None, k) for k in range(N_PLACEMENTS)]
        what = f"all {N_PLACEMENTS} MT1 placements"
    else:
        if args.seeds < 1:
            parser.error(f"--seeds must be >= 1, got {args.seeds}")
        episodes = [(s, None) for s in range(args.seeds)]
        what = f"seeds 0..{args.seeds - 1}, placements drawn"
    n = len(episodes)
    start = time.perf_counter()
    header = "| task | ours | ours (last-flag rule) |" + (" stock policy |" if args.stock else "")
    print(f"Scripted success over {what}, action repeat 2, success = flag on > 10 agent steps\n")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    total = 0
    for name in args.tasks:
        ok, ok_last, _ = run_episodes(name, episodes, stock=False)
        total += ok
        row = f"| {name} | {ok}/{n} | {ok_last}/{n} |"
        if args.stock:
            stock_ok, _, _ = run_episodes(name, episodes, stock=True)
            row += f" {stock_ok}/{n} |"
        print(row, flush=True)
    print(f"\nmean success {total / (n * len(args.tasks)):.3f}; {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
