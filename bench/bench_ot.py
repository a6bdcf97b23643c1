"""OT rewards for many episodes at once: the project's batched Sinkhorn against POT, same inputs, same process.

64 (episode, demo) pairs of 126 observations (125 steps), 512-d features, cosine cost, reg 0.01, 100 iterations
(Table IV). Solved three ways on the CPU: POT's `ot.sinkhorn` one pair at a time (what the authors' code does),
POT's batched solver (`ot.batch.solve_batch`, torch backend, its Sinkhorn), and ours (`sinkhorn_batched`). Each
is timed on the same cost tensor (median of `--repeats`, interleaved); the rewards r_i = -sum_j P_ij C_ij are
compared with POT's one-by-one rewards. With `--device cuda` ours also runs on the GPU, eagerly and replaying one
CUDA graph of its iterations.

  .venv/bin/python bench/bench_ot.py                 # CPU
  python3 bench/bench_ot.py --device cuda --no-pot   # on the GPU machine (no POT there)
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch

from polytask.learning.accel.cuda_graph import GraphedCall
from polytask.learning.accel.sinkhorn import _lean_cuda, sinkhorn_batched
from polytask.learning.data.atomic import write_json
from polytask.learning.rl.ot_rewards import cosine_cost

REG, ITERS = 0.01, 100


def costs(b: int, n: int, d: int, seed: int = 0) -> torch.Tensor:
    """Cosine costs of feature trajectories around one shared path, noisier pair by pair (like encoder features:
    POT stops some pairs at the first check, runs others all 100 iterations)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, d))
    scale = np.linspace(0.5, 4.0, b)[:, None, None]
    x = scale * rng.normal(size=(b, n, d)) + 2 * base
    y = scale * rng.normal(size=(b, n, d)) + 2 * base
    return cosine_cost(torch.tensor(x), torch.tensor(y))


def rewards(plan: torch.Tensor | np.ndarray, cost: torch.Tensor) -> np.ndarray:
    p = plan.detach().cpu().numpy() if isinstance(plan, torch.Tensor) else plan
    return -(p * cost.cpu().numpy()).sum(-1)


def pot_loop(cost: torch.Tensor) -> np.ndarray:
    import ot

    c = cost.numpy()
    n, m = c.shape[1:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "did not converge" for the pairs that run all 100 iterations
        return np.stack([ot.sinkhorn(np.full(n, 1 / n), np.full(m, 1 / m), ci, REG, numItermax=ITERS) for ci in c])


def pot_batch(cost: torch.Tensor) -> torch.Tensor:
    from ot.batch import solve_batch

    return solve_batch(cost, REG, max_iter=ITERS, tol=1e-9, method="sinkhorn", grad="detach").plan


def ours(cost: torch.Tensor) -> torch.Tensor:
    b, n, m = cost.shape
    a = torch.full((b, n), 1 / n, dtype=torch.float64, device=cost.device)
    return sinkhorn_batched(cost, a, torch.full((b, m), 1 / m, dtype=torch.float64, device=cost.device), REG, ITERS)


def graphed(cost: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """Ours on CUDA with the kernel, the iterations and the plan in one graph (the finite check stays outside)."""
    b, n, m = cost.shape
    a = torch.full((b, n), 1 / n, dtype=torch.float64, device=cost.device)
    bb = torch.full((b, m), 1 / m, dtype=torch.float64, device=cost.device)

    def solve(c: torch.Tensor) -> torch.Tensor:
        K = torch.exp(-c / REG)
        u, v = _lean_cuda(K, a, bb, ITERS, 1e-9)
        return u[:, :, None] * K * v[:, None, :]

    return GraphedCall(solve)


def timed(fns: dict[str, Callable[[], object]], repeats: int, cuda: bool) -> dict[str, float]:
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if cuda:
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t0)
    return {k: round(1000 * float(np.median(v)), 3) for k, v in times.items()}


def run(device: str, pairs: int, steps: int, dim: int, repeats: int, with_pot: bool) -> dict:
    cost = costs(pairs, steps + 1, dim)
    ref = rewards(pot_loop(cost), cost) if with_pot else rewards(ours(cost), cost)
    fns: dict[str, Callable[[], object]] = {"ours_cpu": lambda: ours(cost)}
    if with_pot:
        fns = {"pot_loop": lambda: pot_loop(cost), "pot_batch_torch": lambda: pot_batch(cost), **fns}
    out: dict = {
        "pairs": pairs,
        "steps": steps,
        "dim": dim,
        "reg": REG,
        "iters": ITERS,
        "reference": "pot_loop" if with_pot else "ours_cpu",
        "load_before": os.getloadavg(),
    }
    diffs = {"ours_cpu": float(np.abs(rewards(ours(cost), cost) - ref).max())}
    if with_pot:
        diffs["pot_batch_torch"] = float(np.abs(rewards(pot_batch(cost), cost) - ref).max())
    cuda = device.startswith("cuda")
    if cuda:
        cc = cost.to(device)
        g = graphed(cc)
        fns["ours_cuda"] = lambda: ours(cc)
        fns["ours_cuda_graph"] = lambda: g(cc)
        diffs["ours_cuda"] = float(np.abs(rewards(ours(cc), cost) - ref).max())
        diffs["ours_cuda_graph"] = float(np.abs(rewards(g(cc), cost) - ref).max())
    ms = timed(fns, repeats, cuda)
    base = "pot_loop" if with_pot else "ours_cpu"
    out.update(
        ms=ms,
        max_reward_diff=diffs,
        ratio_vs={base: {k: round(ms[base] / v, 2) for k, v in ms.items()}},
        ours_equal_within_1e6=all(d < 1e-6 for k, d in diffs.items() if k.startswith("ours")),
        load_after=os.getloadavg(),
    )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--pairs", type=int, default=64)
    p.add_argument("--steps", type=int, default=125)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--no-pot", action="store_true", help="skip POT (the GPU machine has none)")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    res = run(args.device, args.pairs, args.steps, args.dim, args.repeats, not args.no_pot)
    res["torch_threads"] = torch.get_num_threads()
    print(json.dumps(res, indent=1))
    if args.json:
        write_json(args.json, res, indent=1)  # atomic: a killed run leaves no half file


if __name__ == "__main__":
    main()
