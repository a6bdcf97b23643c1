"""`polytask distill` killed with SIGKILL resumes from its last checkpoint, with the relabelled data intact."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time

from polytask.learning.data.checkpoint import read_header
from polytask.learning.distill.collect import collect_noisy_store

TASK = "metaworld/drawer-close"


def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.npz"))}


def test_sigkill_then_resume_continues_the_step_count(tmp_path):
    store = tmp_path / "raw"
    collect_noisy_store(TASK, store, 800, seed=1)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "polytask.cli", "distill", "--experts", "scripted", "--stores", str(store),
           "--out", str(out), "--steps", "6000", "--eval-episodes", "0", "--no-progress",
           "--set", "student.hidden=64", "student.layers=2", "checkpoint_every=200", "log_every=100", "lr=1e-3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    state = out / "distill_state.safetensors"
    deadline = time.monotonic() + 240
    try:
        while not state.exists():
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.02)
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed_at = read_header(state)["step"]
    assert 0 < killed_at < 6000
    relabelled = out / "relabelled" / TASK.replace("/", "_")
    before = digest(relabelled)
    assert len(before) == len(list(store.glob("*.npz")))

    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "(0 new)" in again.stdout  # nothing relabelled twice
    assert f"resumed from step {killed_at}" in again.stdout
    assert digest(relabelled) == before  # the relabelled data survived the kill unchanged
    assert read_header(out / "student.safetensors")["step"] == 6000
    steps_logged = [row["step"] for row in read_header(state)["history"]]  # history kept across the kill
    assert steps_logged == sorted(steps_logged) and steps_logged[-1] == 6000 and steps_logged[0] <= killed_at
