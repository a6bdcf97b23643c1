"""The table the GPU job prints for docs/benchmarks.md, from whatever sections of bench/gpu_suite.py finished
(kept apart from the suite so that each file has one job)."""

from __future__ import annotations

import json


def rows(res: dict) -> str:
    """The table for docs/benchmarks.md, from whatever sections finished."""
    s, card = res["sections"], res["sections"].get("info", {}).get("card", res["device"])
    date = res["started"][:10] + (", toy sizes (dry run)" if res["toy"] else "")
    lines = ["| what | baseline (same run) | result | ratio | target | card, date |", "|---|---|---|---|---|---|"]

    def add(what: str, base: str, got: str, ratio: str, target: str) -> None:
        lines.append(f"| {what} | {base} | {got} | {ratio} | {target} | {card}, {date} |")

    for key, target, what in (
        ("state_update", ">= 5x", "state update, paper sizes, batch 256"),
        ("pixel_update", ">= 1.5x", "pixel update, paper sizes, batch 256"),
        ("compile_state", ">= 5x", "state update, paper sizes, batch 256"),
        ("compile_pixel", ">= 1.5x", "pixel update, paper sizes, batch 256"),
    ):
        r = s.get(key, {})
        if r.get("status") == "ok":
            u = r["updates_per_s"]
            for mode in [m for m in u if m != "none"]:
                add(f"{what}, {mode}", f"eager {u['none']} /s", f"{u[mode]} /s", f"{r['ratio'][mode]}x", target)
    for key in [k for k in s if k.startswith("batched_")]:
        r = s[key]
        if r.get("status") == "ok":
            a = r["aggregate_updates_per_s"]
            add(
                f"K={r['k']} {key.split('_')[1]} experts, one batched update (host batches)",
                f"one after another {a['sequential_eager']} /s",
                f"{a['batched']} /s",
                f"{r['ratio']}x",
                "updates/s (env frames/s with env workers)",
            )
            if "learner_only_ratio" in r:
                lo = r["learner_only_aggregate_updates_per_s"]
                add(
                    f"K={r['k']} {key.split('_')[1]} experts, learner only",
                    f"K graphs {lo['sequential_graph']} /s",
                    f"{lo['batched']} /s",
                    f"{r['learner_only_ratio']}x",
                    "-",
                )
    r = s.get("loop_one_pixel", {})
    if r.get("status") == "ok":
        add(
            "one Meta-World pixel expert end to end (env frames/s with updates), task in an env worker",
            f"task in process {r['in_process']['env_frames_per_s']} /s",
            f"{r['env_worker']['env_frames_per_s']} /s",
            f"{r['ratio_env_frames']}x",
            ">= 500 env frames/s",
        )
    for key, what, target in (
        ("loop_batched_pixel", "Meta-World pixel experts", ">= 4x"),
        ("loop_batched_state", "state experts (Meta-World states standing in for DMC)", ">= 6x"),
    ):
        r = s.get(key, {})
        if r.get("status") == "ok":
            add(
                f"K={r['k']} {what}, batched + env workers, aggregate env frames/s",
                f"one eager expert at a time {r['one_after_another_eager']['env_frames_per_s']} /s",
                f"{r['batched']['env_frames_per_s']} /s",
                f"{r['ratio_env_frames']}x",
                target,
            )
    r = s.get("inference", {})
    if r.get("status") == "ok" and "graph_ms" in r:
        add(
            "policy inference, pixels + image goal, batch 1",
            f"eager {r['eager_ms']} ms",
            f"{r['graph_ms']} ms",
            f"{r['speedup']}x",
            "<= 0.2 ms",
        )
    r = s.get("ot", {})
    if r.get("status") == "ok":
        ms = r["ms"]
        for k in [k for k in ms if k.startswith("ours_cuda")]:
            add(
                "OT 64 episodes x 125 steps",
                f"ours on this machine's CPU {ms['ours_cpu']} ms",
                f"{k} {ms[k]} ms",
                f"{round(ms['ours_cpu'] / ms[k], 1)}x",
                "rewards within 1e-6",
            )
    r = s.get("distill_feed", {})
    if r.get("status") == "ok":
        for mode, d in r.items():
            if isinstance(d, dict) and "memory_samples_per_s" in d:
                add(
                    f"distillation samples/s, step {mode}",
                    f"memory {d['memory_samples_per_s']}",
                    f"store {d['store_samples_per_s']}",
                    f"{d['ratio_store_over_memory']}x",
                    ">= 0.8x",
                )
    checks = {k: v.get("ok") for k, v in s.items() if v.get("status") == "ok" and "ok" in v}
    if s.get("ot", {}).get("status") == "ok":
        checks["ot_rewards_within_1e-6"] = s["ot"]["ours_equal_within_1e6"]
    return "\n".join(lines) + f"\n\nchecks: {json.dumps(checks)}\n"
