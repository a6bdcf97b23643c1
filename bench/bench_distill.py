"""Distillation throughput: samples/s fed from the episode stores vs from tensors already in memory, same run.

Both feeds train the same student (same seed, config and steps) on the same relabelled stores; the store feed
reads episode files in a background thread (a bounded cache of decompressed episodes per task, refreshed every
batch; the first fill is part of the timing), the memory feed indexes tensors.
Target: store feed >= 0.8x the memory feed. Without --relabelled, a small relabelled set (2 Meta-World tasks,
scripted teachers) is built under --scratch first.

  .venv/bin/python bench/bench_distill.py --relabelled /tmp/mw16/relabelled --steps 400
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from polytask.learning import goals as G
from polytask.learning.data.episodes import Episode, EpisodeStore
from polytask.learning.distill.collect import collect_noisy_store
from polytask.learning.distill.config import DistillConfig, StudentConfig
from polytask.learning.distill.data import StoreSampler, load_task
from polytask.learning.distill.distill import distill
from polytask.learning.distill.relabel import ScriptedTeacher, relabel_store
from polytask.sim import registry


def build_small(scratch: Path) -> Path:
    for t in ("metaworld/drawer-close", "metaworld/button-press"):
        slug = t.replace("/", "_")
        collect_noisy_store(t, scratch / "raw" / slug, 2000)
        relabel_store(EpisodeStore(scratch / "raw" / slug), scratch / "relabelled" / slug, t,
                      ScriptedTeacher(registry.make(t, render=False)))
    return scratch / "relabelled"


def build_synthetic(scratch: Path, tasks: int, episodes: int, length: int = 125, state_dim: int = 39) -> Path:
    """Relabelled stores without a simulator (the GPU machine has none): random states, a fixed random teacher per
    task. The feed's speed depends on the files' shapes, not on what is in them."""
    rng = np.random.default_rng(0)
    root = scratch / "synthetic"
    for k in range(tasks):
        store = EpisodeStore(root / f"t{k:02d}")
        if len(store.paths()) >= episodes:
            continue
        w = rng.normal(size=(state_dim, 4)).astype(np.float32)
        for _ in range(episodes):
            state = rng.normal(size=(length + 1, state_dim)).astype(np.float32)
            store.append(Episode(task=f"synthetic/t{k:02d}", state=state, action=rng.uniform(-1, 1, (length, 4)).astype(
                np.float32), reward=np.zeros(length, np.float32), success=np.zeros(length, bool), task_id=k,
                source="relabelled", expert_action=np.tanh(state @ w)))
    return root


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--relabelled", default=None, help="folder of relabelled stores, one sub-folder per task")
    p.add_argument("--scratch", default="/tmp/bench_distill")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cache-episodes", type=int, default=64, help="decompressed episodes kept per task")
    p.add_argument("--refresh", type=int, default=1, help="episode files read per batch")
    p.add_argument("--synthetic", type=int, default=0, help="N tasks of synthetic relabelled stores (no simulator)")
    p.add_argument("--episodes", type=int, default=40, help="episodes per synthetic task")
    p.add_argument("--device", default="cpu")
    p.add_argument("--compile", default="none", choices=("none", "graph", "compile"), help="the distillation step")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.relabelled:
        root = Path(args.relabelled)
    elif args.synthetic:
        root = build_synthetic(Path(args.scratch), args.synthetic, args.episodes)
    else:
        root = build_small(Path(args.scratch))
    folders = sorted(d for d in root.iterdir() if d.is_dir())
    tasks = [EpisodeStore(d, create=False).episodes()[0].task for d in folders]
    t = time.perf_counter()
    data = [load_task(d, task) for d, task in zip(folders, tasks, strict=True)]
    load_s = time.perf_counter() - t
    ids = [d.task_id if args.synthetic else registry.spec(task).task_id for d, task in zip(data, tasks, strict=True)]
    goals = {task: G.onehot(i, max(16, len(tasks))) for task, i in zip(tasks, ids, strict=True)}
    cfg = DistillConfig(lr=1e-3, steps=args.steps, batch_size=args.batch, threads=args.threads,
                        log_every=args.steps, device=args.device, compile=args.compile,
                        student=StudentConfig(hidden=args.hidden, layers=args.layers))
    rates = {}
    for feed in ("memory", "store", "memory"):  # memory twice: the second run checks the baseline is stable
        sampler = None
        if feed == "store":
            sampler = StoreSampler({task: d for task, d in zip(tasks, folders, strict=True)}, batch=args.batch,
                                   cache_episodes=args.cache_episodes,
                                   refresh=args.refresh)
        try:
            _d, res = distill(data, goals, cfg, sampler=sampler, resume=False)
        finally:
            if sampler is not None:
                sampler.close()
        rates.setdefault(feed, []).append(res.samples_per_s)
        print(f"{feed:6s}: {res.samples_per_s:9.0f} samples/s ({res.step} steps of {args.batch})", flush=True)
    memory = max(rates["memory"])
    store = rates["store"][0]
    out = {"tasks": len(tasks), "rows": int(sum(len(d) for d in data)), "load_into_memory_s": round(load_s, 2),
           "memory_samples_per_s": round(memory, 1), "store_samples_per_s": round(store, 1),
           "ratio_store_over_memory": round(store / memory, 3), "target": 0.8, "hidden": args.hidden,
           "layers": args.layers, "batch": args.batch, "threads": args.threads, "device": args.device,
           "compile": args.compile}
    print(json.dumps(out))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
