"""The GPU job's dry run: bench/gpu_suite.sh at toy sizes on this CPU, with what the GPU machine lacks hidden.

It proves the job's script, its sections and its report work before a GPU is lent: every check passes, every
speed section runs without the simulators or POT, the JSON and the table come back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_suite_dry_run(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_suite.sh"), str(tmp_path), "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    res = json.loads((tmp_path / "gpu_suite.json").read_text())
    sections = res["sections"]
    for name in ("check_graph_state", "check_graph_pixel", "check_batched", "check_distill"):
        assert sections[name]["status"] == "ok" and sections[name]["ok"], (name, sections[name])
    assert sections["check_graph_state"]["draws_equal"] and sections["check_graph_state"]["max_param_diff"] == 0.0
    for name in ("state_update", "pixel_update", "batched_state", "batched_pixel", "inference", "ot", "distill_feed"):
        assert sections[name]["status"] == "ok", (name, sections[name].get("error"), sections[name].get("trace"))
    assert sections["ot"]["ours_equal_within_1e6"]
    assert sections["env_render"]["status"] == "skipped" and "Meta-World" in sections["env_render"]["why"]
    # the training loop end to end runs in a process that sees Meta-World (its wheels come with the GPU job)
    for name in ("loop_one_pixel", "loop_batched_pixel", "loop_batched_state"):
        assert sections[name]["status"] == "ok", (name, sections[name].get("error"), sections[name].get("trace"))
    one, batched = sections["loop_one_pixel"], sections["loop_batched_state"]
    assert one["in_process"]["env_frames"] == one["env_worker"]["env_frames"] > 0 and one["ratio_env_frames"] > 0
    assert batched["batched"]["updates"] == batched["one_after_another_eager"]["updates"] > 0
    # what a GPU job returns is its output folder, a handful of files at most: the job writes only these there
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["gpu_suite.json", "gpu_suite.log", "rows.md"]
    table = (tmp_path / "rows.md").read_text()
    assert "K=3 state experts" in table and "distillation samples/s" in table and table in done.stdout
    assert "K=2 state experts (Meta-World states standing in for DMC), batched + env workers" in table
