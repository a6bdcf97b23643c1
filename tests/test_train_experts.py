"""`polytask train-experts`: three tiny expert jobs on a local Ray instance, one of them killed (SIGKILL of its Ray
worker process) after a checkpoint and retried from it; the same command without Ray; the local backend."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from training_inputs import scripted_demos

from polytask.learning.data.checkpoint import CheckpointError, read_header
from polytask.learning.scale.jobs import PROGRESS, RESULT, ExpertJob, read_json
from polytask.learning.scale.sweep import Sweep, progress_lines, run_sweep

TASKS = ["metaworld/button-press-topdown", "metaworld/coffee-button", "metaworld/drawer-close"]
VICTIM = TASKS[0]
STEPS = 300  # Meta-World episodes here are 63 agent steps; checkpoints land at steps 126, 252, 300
TINY = {
    "network.obs": "state",
    "network.hidden": 32,
    "network.actor_layers": 2,
    "agent.batch_size": 32,
    "bc.batch_size": 32,
    "train.seed_frames": 100,
    "agent.num_expl_steps": 0,
    "train.eval_episodes": 1,
    "train.eval_every": 0,
    "train.eval_video": False,
    "train.save_every": 100,
}


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> Path:
    return scripted_demos(tmp_path_factory.mktemp("sweep_demos"), TASKS, 2)


def _command(tasks: list[str], demos: Path, runs: Path, *extra: str, steps: int = STEPS) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "polytask.cli",
        "train-experts",
        "--tasks",
        *tasks,
        "--demos",
        str(demos),
        "--runs-dir",
        str(runs),
        "--steps",
        str(steps),
        "--bc-steps",
        "20",
        "--progress-every",
        "2",
        *extra,
        "--set",
        *[f"{k}={v}" for k, v in TINY.items()],
    ]
    return cmd


def _checkpoint_step(run_dir: Path) -> int:
    try:
        return int(read_header(run_dir / "checkpoints" / "latest.safetensors")["step"])
    except (CheckpointError, FileNotFoundError, OSError):
        return -1


def _kill_after_checkpoint(proc: subprocess.Popen, runs: Path, deadline_s: float) -> tuple[int, int]:
    """SIGKILL the victim's worker process once it has a checkpoint past BC; (pid killed, checkpoint step)."""
    deadline = time.time() + deadline_s
    while time.time() < deadline and proc.poll() is None:
        run_dir = next(runs.glob(f"*-experts/{VICTIM.replace('/', '-')}"), None)
        if run_dir is not None and _checkpoint_step(run_dir) > 0:
            prog = read_json(run_dir / PROGRESS) or {}
            step = _checkpoint_step(run_dir)
            assert prog.get("pid") not in (None, os.getpid()) and prog.get("attempt") == 1, prog
            assert 0 < step < STEPS, step
            os.kill(int(prog["pid"]), signal.SIGKILL)
            return int(prog["pid"]), step
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint of {VICTIM} to kill at within {deadline_s}s (rc {proc.poll()})")


def _train_steps(run_dir: Path) -> list[int]:
    with open(run_dir / "train.csv", newline="") as fh:
        return [int(r["step"]) for r in csv.DictReader(fh)]


def test_ray_sweep_retries_a_killed_job_from_its_checkpoint(demos, tmp_path):
    runs = tmp_path / "runs"
    ray_tmp = tempfile.mkdtemp(prefix="ptray", dir="/tmp")  # short: Ray's socket paths must stay < 108 chars
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "OMP_NUM_THREADS": "1"}
    env.pop("RAY_ADDRESS", None)
    relative = Path(os.path.relpath(demos, tmp_path))  # given relative to the command's folder, as users do
    proc = subprocess.Popen(
        _command(TASKS, relative, Path("runs"), "--backend", "ray", "--ray-cpus", "2", "--retries", "2"),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        killed_pid, killed_at = _kill_after_checkpoint(proc, runs, deadline_s=400)
        out, err = proc.communicate(timeout=500)
    finally:
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, (out[-3000:], err[-3000:])

    sweep = next(runs.glob("*-experts"))
    results = {}
    for task in TASKS:
        run_dir = sweep / task.replace("/", "-")
        res = read_json(run_dir / RESULT)
        assert res is not None and res["status"] == "done" and res["step"] == STEPS, (task, res)
        for name in ("checkpoints/latest.safetensors", "checkpoints/expert.safetensors", "eval.csv", "curves.png"):
            assert (run_dir / name).exists(), (task, name)
        with open(run_dir / "eval.csv", newline="") as fh:
            assert int(list(csv.DictReader(fh))[-1]["step"]) == STEPS
        assert read_header(run_dir / "checkpoints" / "expert.safetensors")["step"] == STEPS
        steps = _train_steps(run_dir)  # one history: no step twice, none missing at the resume point
        assert steps == sorted(set(steps)) and steps[-1] == STEPS and steps[0] < 100, (task, steps)
        results[task] = res

    victim = results[VICTIM]
    # resumed, not restarted: the retry's step counter began at the checkpoint it found
    assert victim["attempts"] == 2 and killed_at <= victim["resumed_from"] < STEPS, (victim, killed_at)
    log = (sweep / VICTIM.replace("/", "-") / "job.log").read_text()
    assert f"pid {killed_pid}: started from scratch" in log
    assert "attempt 2 on" in log and f"resumed from step {victim['resumed_from']}" in log
    assert f"at step {victim['resumed_from']} (episode" in log  # the trainer's own resume line
    for task in TASKS[1:]:  # the others were not touched
        assert results[task]["attempts"] == 1 and results[task]["resumed_from"] == 0
    assert "[0:" in out  # progress lines while running (what they show of a retry: test_progress_lines_...)
    table = out[out.index("task ") :]
    for task in TASKS:
        assert task in table and str(sweep / task.replace("/", "-")) in table
    with open(sweep / "summary.csv", newline="") as fh:
        assert {r["task"]: r["status"] for r in csv.DictReader(fh)} == dict.fromkeys(TASKS, "done")

    # a rerun of the finished sweep (local backend, no Ray) trains nothing again and reports the same results
    before = {t: _train_steps(sweep / t.replace("/", "-")) for t in TASKS}
    again = run_sweep(Sweep.load(sweep), backend="local", progress_every=0, out=lambda _: None)
    assert [(r.task, r.status, r.step, r.attempts) for r in again] == [
        (t, "done", STEPS, results[t]["attempts"]) for t in TASKS
    ]
    assert {t: _train_steps(sweep / t.replace("/", "-")) for t in TASKS} == before


# Makes `import ray` fail as if Ray were not installed, then runs the polytask command.
NO_RAY = """
import sys

class NoRay:
    def find_spec(self, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoRay())
from polytask.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_without_ray_the_ray_backend_says_how_to_install_it_and_local_still_works(demos, tmp_path):
    runs = tmp_path / "runs"
    base = [sys.executable, "-c", NO_RAY]
    ray = subprocess.run(
        base + _command(TASKS[2:], demos, runs, "--backend", "ray")[3:], capture_output=True, text=True, timeout=300
    )
    assert ray.returncode == 2, ray.stderr[-2000:]
    assert "needs Ray" in ray.stderr and "requirements-ray.txt" in ray.stderr and "pip install" in ray.stderr
    assert not runs.exists()  # nothing planned or started

    steps = 130  # two episodes and a bit: one checkpoint at 126, the last at 130
    local = subprocess.run(
        base + _command(TASKS[2:], demos, runs, "--backend", "local", steps=steps)[3:],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert local.returncode == 0, local.stderr[-3000:]
    run_dir = next(runs.glob("*-experts")) / TASKS[2].replace("/", "-")
    res = read_json(run_dir / RESULT)
    assert res["status"] == "done" and res["step"] == steps and res["attempts"] == 1
    assert read_header(run_dir / "checkpoints" / "expert.safetensors")["step"] == steps
    assert f"{TASKS[2]}  done    {steps}/{steps}" in local.stdout  # the summary table


def test_progress_lines_show_each_running_job_and_its_retry(tmp_path):
    from polytask.learning.data.atomic import write_json

    jobs = [ExpertJob(task=t, run_dir=str(tmp_path / str(i))) for i, t in enumerate(TASKS)]
    for job in jobs:
        Path(job.run_dir).mkdir()
    write_json(Path(jobs[0].run_dir) / PROGRESS, {"status": "running", "step": 130, "total": 300, "attempt": 2,
                                                   "resumed_from": 126, "eval": {"success_rate": 0.5}})
    write_json(Path(jobs[1].run_dir) / PROGRESS, {"status": "done", "step": 300, "total": 300, "attempt": 1})
    head, *rows = progress_lines(jobs, elapsed=65.0)
    assert head == "[0:01:05] 3 jobs: 1 done, 1 running, 1 waiting"
    assert len(rows) == 1 and rows[0].split()[:3] == [TASKS[0], "running", "130/300"]
    assert "try 2 (resumed from 126) success 0.50" in rows[0]


def test_progress_file_names_the_phase_from_the_run_state(tmp_path):
    """The progress writer reads the trainer's own RunState: `bc` before pretraining is done, `rl` after."""
    import json
    from types import SimpleNamespace

    from polytask.learning.rl.run_state import RunState
    from polytask.learning.scale.jobs import _Reporter

    state = RunState(step=40)
    trainer = SimpleNamespace(state=state, cfg=SimpleNamespace(train=SimpleNamespace(steps=100)), last_eval=None)
    reporter = _Reporter(tmp_path / "progress.json", {"task": "xarm/reach"})
    reporter.trainer = trainer
    reporter.write("training")
    first = json.loads((tmp_path / "progress.json").read_text())
    state.pretrained, state.step = True, 60
    reporter.write("training")
    second = json.loads((tmp_path / "progress.json").read_text())
    assert (first["phase"], first["step"], first["total"]) == ("bc", 40, 100)
    assert (second["phase"], second["step"]) == ("rl", 60)
