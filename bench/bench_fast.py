"""The fast learner paths against eager code, measured in the same process: expert updates (eager vs CUDA graph vs
torch.compile), K experts in one batched update vs one after another, batch-1 policy inference (eager vs graph),
and graph == eager checks on the device.

Each comparison builds identical agents (same seed), interleaves the timed calls iteration by iteration (so that
load from other jobs hits every side alike), and prints updates/s (or ms) and the ratio to eager. On a CPU the
CUDA-graph path is the eager step (nothing to capture), so only "compile" is compared there.

  .venv/bin/python bench/bench_fast.py                  # CPU, the paper's sizes (pixel updates take seconds)
  .venv/bin/python bench/bench_fast.py --toy            # small networks, seconds in all
  python3 bench/bench_fast.py --device cuda             # on the GPU machine (bench/gpu_suite.sh runs this)
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import time
from collections.abc import Callable

import numpy as np
import torch

from polytask.learning.accel.graphed_policy import accelerate_policy
from polytask.learning.data.atomic import write_json
from polytask.learning.nets.drqv2 import NetworkSpec
from polytask.learning.policies.expert import ExpertPolicy
from polytask.learning.rl.agent import ExpertAgent
from polytask.learning.rl.batched import BatchedExperts
from polytask.learning.rl.expert_config import AgentConfig
from polytask.learning.rl.synthetic import random_batches
from polytask.sim.task import Goal, Step


def specs(kind: str, toy: bool) -> tuple[NetworkSpec, np.ndarray | None, int]:
    """(network, goal, batch): the paper's sizes (hidden 1024, 512-d features, image goal, batch 256) or toy."""
    if kind == "pixel":
        side = 32 if toy else 84
        width = dict(hidden=32, feature_dim=16) if toy else {}
        spec = NetworkSpec("pixels", (3, side, side), 4, "image", frame_stack=3, **width)
        return spec, np.random.default_rng(1).integers(0, 256, (3, side, side), dtype=np.uint8), 16 if toy else 256
    spec = NetworkSpec("state", (17,), 6, "sinusoid", goal_dim=16, **(dict(hidden=64) if toy else {}))
    return spec, np.linspace(-1, 1, 16).astype(np.float32), 32 if toy else 256


def sig(x: float, digits: int = 3) -> float:
    """`x` to `digits` significant digits (0.0523 updates/s stays 0.0523, 1089.4 becomes 1090)."""
    return float(f"{x:.{digits}g}")


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def agent(kind: str, toy: bool, device: str, mode: str, seed: int = 0) -> ExpertAgent:
    spec, goal, n = specs(kind, toy)
    torch.manual_seed(seed)
    return ExpertAgent(spec, AgentConfig(batch_size=n, num_expl_steps=0, compile=mode), device, goal=goal)


def interleaved(fns: dict[str, Callable[[int], object]], iters: int, device: str) -> dict[str, float]:
    """Median calls/s of each function, called in turn `iters` times after one untimed call each."""
    for fn in fns.values():
        fn(0)
    sync(device)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for i in range(iters):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn(i + 1)
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return {name: 1.0 / float(np.median(t)) for name, t in times.items()}


def bench_update(kind: str, toy: bool, device: str, modes: list[str], iters: int) -> dict:
    """updates/s of the eager update and each fast mode on the same batch; first-call (capture/compile) seconds."""
    spec, _goal, n = specs(kind, toy)
    b, d = random_batches(spec, n, np.random.default_rng(0))
    agents = {m: agent(kind, toy, device, m) for m in ["none", *modes]}
    first = {}
    for m, a in agents.items():
        t0 = time.perf_counter()
        dict(a.update(b, d, 0))
        sync(device)
        first[m] = round(time.perf_counter() - t0, 2)
    rates = interleaved({m: (lambda s, a=a: dict(a.update(b, d, s))) for m, a in agents.items()}, iters, device)
    out: dict = {"batch": n, "first_call_s": first, "updates_per_s": {k: sig(v) for k, v in rates.items()}}
    out["ratio"] = {m: round(rates[m] / rates["none"], 2) for m in modes}
    return out


def check_equal(kind: str, toy: bool, device: str, mode: str, updates: int) -> dict:
    """Eager vs `mode` over `updates` updates from one seed, same RNG state before each: max parameter difference
    relative to the largest parameter, and whether the draws matched."""
    eager, fast = agent(kind, toy, device, "none"), agent(kind, toy, device, mode)
    spec, _goal, n = specs(kind, toy)
    rng = np.random.default_rng(0)
    cuda = device.startswith("cuda")
    get = torch.cuda.get_rng_state if cuda else torch.get_rng_state
    put = torch.cuda.set_rng_state if cuda else torch.set_rng_state
    draws_equal, losses = True, []
    for i in range(updates):
        b, d = random_batches(spec, n, rng)
        state = get()
        m1 = eager.update(b, d, i)
        after = get()
        put(state)
        m2 = dict(fast.update(b, d, i))
        draws_equal &= bool(torch.equal(get(), after))
        losses.append((m1["critic_loss"], m2["critic_loss"]))
    diff = max(float((p - q).detach().abs().max()) for p, q in zip(eager.nets.parameters(), fast.nets.parameters()))
    scale = max(float(p.detach().abs().max()) for p in eager.nets.parameters())
    rel = diff / scale
    loss_rel = max(abs(a - c) / max(abs(a), 1e-8) for a, c in losses)
    return {
        "updates": updates,
        "max_param_diff": diff,
        "rel_param_diff": rel,
        "max_rel_loss_diff": loss_rel,
        "draws_equal": draws_equal,
        "ok": draws_equal and rel < 1e-4 and loss_rel < 1e-3,
    }


def bench_batched(kind: str, k: int, toy: bool, device: str, iters: int) -> dict:
    """Aggregate updates/s: K experts in one batched update vs the same K updated one after another (eager, and
    on CUDA also each in its own CUDA graph)."""
    spec, _goal, n = specs(kind, toy)
    cuda = device.startswith("cuda")
    rng = np.random.default_rng(0)
    data = [random_batches(spec, n, rng) for _ in range(k)]
    singles = [agent(kind, toy, device, "none", seed=j) for j in range(k)]
    graphs = [agent(kind, toy, device, "graph", seed=j) for j in range(k)] if cuda else []
    stacked = BatchedExperts([copy.deepcopy(a) for a in singles], mode="graph" if cuda else "none")

    def one_after_another(s: int, agents: list[ExpertAgent]) -> None:
        for a, (b, d) in zip(agents, data):
            dict(a.update(b, d, s))

    fns: dict[str, Callable[[int], object]] = {
        "sequential_eager": lambda s: one_after_another(s, singles),
        "batched": lambda s: stacked.update([b for b, _ in data], [d for _, d in data], s).tolist(),
    }
    if cuda:
        fns["sequential_graph"] = lambda s: one_after_another(s, graphs)
    rates = interleaved(fns, iters, device)
    agg = {name: sig(r * k) for name, r in rates.items()}
    out = {
        "k": k,
        "batch": n,
        "aggregate_updates_per_s": agg,
        "ratio": round(agg["batched"] / agg["sequential_eager"], 2),
    }
    if cuda:
        out["ratio_vs_sequential_graph"] = round(agg["batched"] / agg["sequential_graph"], 2)
        # the learner alone: replays on inputs already on the device (no numpy batches, no host-to-device copies)
        plans = [next(iter(a._fast.steps)) for a in graphs]
        replay = interleaved(
            {
                "sequential_graph": lambda s: [a._fast.steps[p]() for a, p in zip(graphs, plans)],
                "batched": lambda s: stacked.step_fn[True](),
            },
            iters,
            device,
        )
        out["learner_only_aggregate_updates_per_s"] = {name: sig(r * k) for name, r in replay.items()}
        out["learner_only_ratio"] = round(replay["batched"] / replay["sequential_graph"], 2)
    return out


def bench_inference(device: str, toy: bool, iters: int) -> dict:
    """Batch-1 action latency of a pixel expert with an image goal: `ExpertPolicy.act` eager vs graphed."""
    spec, goal, _n = specs("pixel", toy)
    a = agent("pixel", toy, device, "none")
    side = spec.obs_shape[1]
    frames = np.random.default_rng(0).integers(0, 256, (8, side, side, 3), dtype=np.uint8)
    steps = [
        Step(
            state=np.zeros(3, np.float32),
            pixels=f,
            reward=0.0,
            success=False,
            terminal=False,
            truncated=False,
            goal=Goal(task_id=0, name="bench"),
        )
        for f in frames
    ]
    pols = {"eager": ExpertPolicy(a.nets.encoder, a.nets.actor, spec, torch.as_tensor(goal), device)}
    if device.startswith("cuda"):
        pols["graph"] = accelerate_policy(
            ExpertPolicy(a.nets.encoder, a.nets.actor, spec, torch.as_tensor(goal), device)
        )
    for p in pols.values():
        p.reset(steps[0])
    acts = {name: p.act(steps[1]) for name, p in pols.items()}
    times: dict[str, list[float]] = {k: [] for k in pols}
    for i in range(iters):
        for name, p in pols.items():
            t0 = time.perf_counter()
            p.act(steps[i % len(steps)])
            times[name].append(time.perf_counter() - t0)
    out: dict = {f"{k}_ms": round(1000 * float(np.median(v)), 3) for k, v in times.items()}
    if "graph" in pols:
        out["speedup"] = round(out["eager_ms"] / out["graph_ms"], 2)
        out["max_action_diff"] = float(np.abs(acts["graph"] - acts["eager"]).max())
        out["ok"] = out["max_action_diff"] < 1e-5
    return out


def bench_threads(kind: str, toy: bool, iters: int, counts: tuple[int, ...] = (1, 2)) -> dict:
    """Eager updates/s at each torch thread count, alternating the count call by call on one agent and batch (so
    load from other jobs hits every count alike)."""
    spec, _goal, n = specs(kind, toy)
    b, d = random_batches(spec, n, np.random.default_rng(0))
    a = agent(kind, toy, "cpu", "none")
    a.update(b, d, 0)
    times: dict[int, list[float]] = {c: [] for c in counts}
    for i in range(iters):
        for c in counts:
            torch.set_num_threads(c)
            t0 = time.perf_counter()
            a.update(b, d, i + 1)
            times[c].append(time.perf_counter() - t0)
    rates = {c: 1.0 / float(np.median(t)) for c, t in times.items()}
    return {
        "batch": n,
        "updates_per_s": {f"threads_{c}": sig(r) for c, r in rates.items()},
        "ratio_2_over_1": round(rates[counts[-1]] / rates[counts[0]], 2),
    }


def machine(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(0)
    cpu = platform.processor() or platform.machine()
    return f"{cpu} CPU, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--toy", action="store_true", help="small networks and batches (the default: the paper's)")
    p.add_argument("--iters", type=int, default=0, help="timed calls per side (0: 3 pixel / 20 state on CPU)")
    p.add_argument("--k", type=int, default=3, help="experts in the batched comparison")
    p.add_argument("--skip-compile", action="store_true")
    p.add_argument(
        "--only",
        default="state,pixel,batched,inference",
        help="comma list of sections: state, pixel, batched, inference, threads (1 vs 2, CPU)",
    )
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    modes = ([] if not cuda else ["graph"]) + ([] if args.skip_compile else ["compile"])
    it_pix = args.iters or (50 if cuda else 3)
    it_state = args.iters or (200 if cuda else 20)
    res: dict = {
        "device": args.device,
        "machine": machine(args.device),
        "torch": torch.__version__,
        "toy": args.toy,
        "load_before": os.getloadavg(),
    }
    only = set(args.only.split(","))
    if "state" in only:
        res["state_update"] = bench_update("state", args.toy, args.device, modes, it_state)
        print(json.dumps(res["state_update"], indent=1), flush=True)
    if "pixel" in only:
        res["pixel_update"] = bench_update("pixel", args.toy, args.device, modes, it_pix)
        print(json.dumps(res["pixel_update"], indent=1), flush=True)
    if "batched" in only:
        res[f"batched_state_k{args.k}"] = bench_batched("state", args.k, args.toy, args.device, it_state // 2)
        res[f"batched_pixel_k{args.k}"] = bench_batched("pixel", args.k, args.toy, args.device, max(2, it_pix // 2))
    if "inference" in only:
        res["inference_pixel_b1"] = bench_inference(args.device, args.toy, 200 if cuda else 30)
    if "threads" in only and not cuda:
        res["threads_state"] = bench_threads("state", args.toy, it_state)
        res["threads_pixel"] = bench_threads("pixel", args.toy, it_pix)
    if cuda:
        res["check_graph_state"] = check_equal("state", args.toy, args.device, "graph", 20)
        res["check_graph_pixel"] = check_equal("pixel", args.toy, args.device, "graph", 10)
    res["load_after"] = os.getloadavg()
    print(json.dumps(res, indent=1))
    if args.json:
        write_json(args.json, res, indent=1)  # atomic: a killed run leaves no half file


if __name__ == "__main__":
    main()
