"""The one prepared job for the GPU machine: correctness of the fast paths on the card, then their speed.

Run through bench/gpu_suite.sh (which installs the brought wheels and GL libraries first). Sections run in
order within a wall-clock budget (the job has about 9 minutes): checks first (graph == eager, batched ==
separate, graphed inference == eager, CUDA Sinkhorn == CPU Sinkhorn), then the speed comparisons, then the
optional ones (torch.compile, whose first call compiles for minutes; Meta-World rendering when its wheels came
along). Every section's result or error goes into OUT/gpu_suite.json as soon as it finishes, so a job cut short
still returns what it measured. The last thing printed is the table for docs/benchmarks.md (also OUT/rows.md);
OUT holds only these few files (the job's output comes back as a handful of files), scratch data goes to /tmp.

`--dry-run` runs the same sections on the CPU at toy sizes, with the simulators and POT made unimportable as
they are on the GPU machine: the test suite runs it (tests/test_gpu_suite.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.abc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

# Not installed on the GPU machine (Python 3.12 + PyTorch, no package index): the dry run hides these.
ABSENT_THERE = ("mujoco", "dm_control", "metaworld", "ot", "gymnasium", "gymnasium_robotics", "rclpy")


class _Absent(importlib.abc.MetaPathFinder):
    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = set(names)

    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in self.names:
            raise ImportError(f"{fullname} is not installed on the GPU machine (hidden by the dry run)")
        return None


class Suite:
    def __init__(self, out: Path, budget_s: float, device: str, toy: bool) -> None:
        self.out, self.budget_s, self.device, self.toy = out, budget_s, device, toy
        self.start = time.perf_counter()
        self.res: dict = {
            "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "device": device,
            "toy": toy,
            "budget_s": budget_s,
            "sections": {},
        }

    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.start)

    def run(self, name: str, fn: Callable[[], dict], est_s: float) -> dict | None:
        if self.left() < est_s:
            self.res["sections"][name] = {"status": "skipped", "why": f"{self.left():.0f} s left, needs ~{est_s:.0f}"}
            self.save()
            return None
        t0 = time.perf_counter()
        print(f"[{time.perf_counter() - self.start:6.1f} s] {name} ...", flush=True)
        try:
            out = {"status": "ok", **fn()}
        except Exception as err:  # a section's failure is a result; the others still run
            out = {"status": "error", "error": f"{type(err).__name__}: {err}", "trace": traceback.format_exc()[-3000:]}
        out["seconds"] = round(time.perf_counter() - t0, 1)
        self.res["sections"][name] = out
        self.save()
        return out

    def save(self) -> None:
        self.res["elapsed_s"] = round(time.perf_counter() - self.start, 1)
        tmp = self.out / "gpu_suite.json.tmp"
        tmp.write_text(json.dumps(self.res, indent=1, default=str))
        os.replace(tmp, self.out / "gpu_suite.json")


def info(device: str) -> dict:
    import numpy as np
    import torch

    out = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cpus": os.cpu_count(),
        "host": platform.node(),
    }
    if device.startswith("cuda"):
        out.update(
            card=torch.cuda.get_device_name(0),
            cuda=torch.version.cuda,
            memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
        )
    return out


def check_batched(device: str, toy: bool) -> dict:
    """K = 3 experts' batched update against each expert's single update on the same draws (on the device)."""
    import copy

    import bench_fast as bf
    import numpy as np
    import torch

    from polytask.learning.rl import fast_update as eu
    from polytask.learning.rl.batched import BatchedExperts
    from polytask.learning.rl.synthetic import random_batches

    out = {}
    for kind in ("state", "pixel"):
        spec, _goal, n = bf.specs(kind, toy)
        agents = [bf.agent(kind, toy, device, "none", seed=k) for k in range(3)]
        refs = [copy.deepcopy(a) for a in agents]
        batched = BatchedExperts(agents, mode="graph" if device.startswith("cuda") else "none")
        rng, worst = np.random.default_rng(0), 0.0
        for i in range(3):
            data = [random_batches(spec, n, rng) for _ in range(3)]
            got = batched.update([b for b, _ in data], [d for _, d in data], i)
            noise = {k: v for k, v in batched.static.items() if k.startswith(("shift_", "eps_"))}
            for k, ref in enumerate(refs):
                t = {key: torch.from_numpy(v).to(device) for key, v in eu.input_arrays(*data[k]).items()}
                t.update({key: v[k] for key, v in noise.items()})
                t["std"] = torch.tensor(ref.stddev(i), dtype=torch.float32, device=device)
                want = eu.update_core(ref, t, eu.Plan.of(ref, *data[k]))
                worst = max(worst, float(((got[k] - want).abs() / want.abs().clamp_min(1e-3)).max()))
        out[kind] = {"max_rel_metric_diff": worst, "ok": worst < 1e-3}
    out["ok"] = all(v["ok"] for v in out.values() if isinstance(v, dict))
    return out


def check_distill(device: str, toy: bool) -> dict:
    """Distillation on the device: the graph step against the eager step, 30 steps, same data and seed."""
    import numpy as np

    from polytask.learning.distill.config import DistillConfig, StudentConfig
    from polytask.learning.distill.data import TaskData
    from polytask.learning.distill.distill import distill

    rng = np.random.default_rng(0)
    data = []
    for k in range(4):
        states = rng.normal(size=(2000, 39)).astype(np.float32)
        data.append(
            TaskData(
                f"synthetic/{k}", k, states, np.tanh(states @ rng.normal(size=(39, 4))).astype(np.float32), episodes=16
            )
        )
    goals = {d.task: np.eye(16, dtype=np.float32)[d.task_id] for d in data}
    params = {}
    for mode in ("none", "graph"):
        cfg = DistillConfig(
            lr=1e-3,
            lr_schedule="cosine",
            warmup_steps=5,
            steps=30,
            log_every=10,
            device=device,
            compile=mode,
            student=StudentConfig(hidden=64 if toy else 1024, layers=4),
        )
        d, _ = distill(data, goals, cfg, resume=False)
        params[mode] = [p.detach().clone() for p in d.student.parameters()]
    diff = max(float((a - b).abs().max()) for a, b in zip(params["none"], params["graph"]))
    return {"max_param_diff": diff, "ok": diff < 1e-4}


def distill_feed(device: str, toy: bool, scratch: Path) -> dict:
    """bench_distill.py on synthetic stores, eager step and graph step, in fresh processes."""
    out = {}
    for mode in ("none", "graph"):
        js = scratch / f"distill_{mode}.json"
        cmd = [
            sys.executable,
            str(Path(__file__).with_name("bench_distill.py")),
            "--synthetic",
            "3" if toy else "16",
            "--episodes",
            "8" if toy else "40",
            "--steps",
            "40" if toy else "3000",
            "--device",
            device,
            "--compile",
            mode,
            "--scratch",
            str(scratch / "distill"),
            "--json",
            str(js),
        ]
        if toy:
            cmd += ["--hidden", "32", "--layers", "2"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
        if done.returncode != 0:
            raise RuntimeError(f"bench_distill.py --compile {mode} failed: {done.stderr[-2000:]}")
        out[mode] = json.loads(js.read_text())
    return out


def env_render(seconds: float) -> dict:
    """Meta-World 84x84 steps/s with rendering (EGL), fast and default quality, one process."""
    import numpy as np

    from polytask.sim import registry

    out = {}
    for quality in ("fast", "default"):
        task = registry.make("metaworld/door-open", render=True, quality=quality)
        rng = np.random.default_rng(0)
        step, n = task.reset(seed=0), 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            step = task.step(rng.uniform(-1, 1, task.spec.action_dim))
            n += 1
            if step.done:
                step = task.reset(seed=n)
        out[quality] = {"steps_per_s": round(n / (time.perf_counter() - t0), 1), "frame": list(step.pixels.shape)}
        task.close()
    return out


def train_loop(section: str, k: int, obs: str, toy: bool, device: str, scratch: Path, timeout_s: float) -> dict:
    """bench_train_loop.py in a fresh process: real Meta-World expert runs end to end, simulator included (its
    wheels come with the job), the update in one CUDA graph on the GPU and its tasks in env workers. The dry run
    lets this process see Meta-World (the rest of the suite runs without it)."""
    js = scratch / f"loop_{section}_{obs}_{k}.json"
    cmd = [
        sys.executable,
        str(Path(__file__).with_name("bench_train_loop.py")),
        "--section",
        section,
        "--device",
        device,
        "--size",
        "toy" if toy else "paper",
        "--obs",
        obs,
        "--k",
        str(k),
        "--tasks",
        "metaworld/*",
        "--episodes",
        "1" if toy else "3",
        "--agent-compile",
        "graph" if device.startswith("cuda") else "none",
        "--json",
        str(js),
    ]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and "gpu-suite-hide-" not in p
    )
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=max(30.0, timeout_s), env=env)
    if done.returncode != 0:
        raise RuntimeError(f"bench_train_loop.py --section {section} failed: {done.stderr[-2000:]}")
    return json.loads(js.read_text())[section]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--dry-run", action="store_true", help="CPU, toy sizes, simulators and POT hidden")
    p.add_argument("--budget-s", type=float, default=450.0, help="wall-clock budget of the sections")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.dry_run:  # hide what the GPU machine lacks, here and in the subprocesses (via sitecustomize)
        sys.meta_path.insert(0, _Absent(ABSENT_THERE))
        hide = Path(tempfile.mkdtemp(prefix="gpu-suite-hide-"))
        (hide / "sitecustomize.py").write_text(
            f"import sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\nfrom gpu_suite import _Absent\n"
            f"sys.meta_path.insert(0, _Absent({ABSENT_THERE!r}))\n"
        )
        os.environ["PYTHONPATH"] = os.pathsep.join([str(hide), *filter(None, [os.environ.get("PYTHONPATH")])])
    import bench_fast as bf
    import bench_ot
    import torch
    from gpu_rows import rows

    device, toy = ("cpu", True) if args.dry_run else ("cuda", False)
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_suite: torch sees no CUDA device (use --dry-run on a CPU)", file=sys.stderr)
        return 2
    torch.set_num_threads(1 if args.dry_run else min(8, os.cpu_count() or 1))
    suite = Suite(out, args.budget_s, device, toy)
    suite.run("info", lambda: info(device), 5)
    suite.run("check_graph_state", lambda: bf.check_equal("state", toy, device, "graph", 20), 20)
    suite.run("check_graph_pixel", lambda: bf.check_equal("pixel", toy, device, "graph", 10), 30)
    suite.run("check_batched", lambda: check_batched(device, toy), 30)
    suite.run("check_distill", lambda: check_distill(device, toy), 20)
    modes = ["graph"] if device == "cuda" else []
    suite.run("state_update", lambda: bf.bench_update("state", toy, device, modes, 5 if toy else 200), 20)
    suite.run("pixel_update", lambda: bf.bench_update("pixel", toy, device, modes, 3 if toy else 50), 40)
    suite.run("batched_state", lambda: bf.bench_batched("state", 3 if toy else 10, toy, device, 3 if toy else 50), 40)
    suite.run("batched_pixel", lambda: bf.bench_batched("pixel", 3 if toy else 16, toy, device, 2 if toy else 10), 90)
    suite.run("inference", lambda: bf.bench_inference(device, toy, 20 if toy else 300), 15)
    suite.run(
        "ot",
        lambda: bench_ot.run(
            device, 8 if toy else 64, 20 if toy else 125, 16 if toy else 512, 3 if toy else 20, with_pot=False
        ),
        30,
    )
    scratch = Path(tempfile.mkdtemp(prefix="gpu-suite-"))  # not under OUT: what comes back is a few files
    # Meta-World rendering, then training end to end (before the distillation feeds: the end-to-end figures are
    # the targets a CPU cannot measure)
    try:
        import metaworld  # noqa: F401

        suite.run("env_render", lambda: env_render(2 if toy else 10), 30)
        has_metaworld = True
    except ImportError as err:
        suite.res["sections"]["env_render"] = {"status": "skipped", "why": f"no Meta-World here ({err})"}
        has_metaworld = args.dry_run  # the dry run's loop sections run in a process that sees it
    # Training end to end: K experts batched vs one eager expert at a time, one expert with its env worker. The
    # state experts are Meta-World state tasks standing in for DMC: dm_control's wheel (56 MB) does not fit beside
    # Meta-World's (47 MB) in the 64 MiB one job carries.
    for key, section, k, obs, est in (
        ("loop_one_pixel", "one", 1, "pixels", 60),
        ("loop_batched_pixel", "batched", 2 if toy else 16, "pixels", 150),
        ("loop_batched_state", "batched", 2 if toy else 10, "state", 60),
    ):
        if not has_metaworld:
            suite.res["sections"][key] = {"status": "skipped", "why": "no Meta-World wheels came with the job"}
            continue
        obs = "state" if toy else obs  # the dry run: states, so that the default tests stay short
        suite.run(
            key,
            lambda s=section, n=k, o=obs: train_loop(s, n, o, toy, device, scratch, suite.left()),
            30 if toy else est,
        )
    suite.run("distill_feed", lambda: distill_feed(device, toy, scratch), 30 if toy else 120)
    # torch.compile last: its first call compiles for minutes; it runs only in the time that is left. The dry run
    # leaves it out (tests/test_accel_expert.py compiles the same stages on the CPU).
    for kind, est in (("state", 150), ("pixel", 200)):
        if args.dry_run:
            suite.res["sections"][f"compile_{kind}"] = {"status": "skipped", "why": "dry run"}
            continue
        iters = 100 if kind == "state" else 25
        suite.run(f"compile_{kind}", lambda k=kind, n=iters: bf.bench_update(k, toy, device, ["compile"], n), est)
    suite.save()
    table = rows(suite.res)
    (out / "rows.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
