"""Steps/s of every registered suite without rendering, rendering at "default" quality and at "fast" quality.

Rendering is the CPU bottleneck of pixel-based training here (llvmpipe through `MUJOCO_GL=egl`), so this
measures, side by side in one process and one run, what each quality costs against the no-render baseline.
One task per suite (the first registered), random actions in [-1, 1], resets at episode ends; each
configuration runs for a fixed wall-clock budget after a warm-up (the first frame creates the GL context), in
interleaved slices (no render, default, fast, no render, ...) so that load from other jobs hits all three alike.

    MUJOCO_GL=egl .venv/bin/python bench/bench_render.py --seconds 6 --write docs/benchmarks-render.md

A suite that fails to import or build is reported in the table, not fatal: the others are still measured.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import os
import platform
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from polytask.sim import registry

CONFIGS: tuple[tuple[str, bool, str], ...] = (
    ("no render", False, "fast"),
    ("default", True, "default"),
    ("fast", True, "fast"),
)
WARMUP_STEPS = 3
MIN_STEPS = 5


@dataclass
class Measurement:
    steps_per_s: float | None
    steps: int
    error: str = ""
    action_repeat: int | None = None
    horizon: int | None = None


class Runner:
    """One configuration of one task: a built task stepping random actions, timed in slices."""

    def __init__(self, name: str, render: bool, quality: str, seed: int = 0) -> None:
        self.task = None
        self.steps, self.elapsed, self.error = 0, 0.0, ""
        self.rng = np.random.default_rng(seed)
        try:
            self.task = registry.make(name, render=render, quality=quality)
            self.step = self.task.reset(seed=seed)
            if render and (self.step.pixels is None or self.step.pixels.shape[-1] != 3):
                shape = None if self.step.pixels is None else self.step.pixels.shape
                raise RuntimeError(f"render=True gave pixels {shape}")
            for _ in range(WARMUP_STEPS):  # the first frames create the GL context and fill caches
                self._one()
        except Exception as err:  # a suite under construction must not hide the others
            self.error = f"{type(err).__name__}: {err}"
            self.close()

    def _one(self) -> None:
        if self.step.done:
            self.step = self.task.reset()  # resets count toward the time: training pays for them too
        self.step = self.task.step(self.rng.uniform(-1, 1, self.task.spec.action_dim))

    def run_for(self, seconds: float, min_steps: int) -> None:
        if self.task is None:
            return
        try:
            steps, start = 0, time.perf_counter()
            while steps < min_steps or time.perf_counter() - start < seconds:
                self._one()
                steps += 1
            self.elapsed += time.perf_counter() - start
            self.steps += steps
        except Exception as err:
            self.error = f"{type(err).__name__}: {err}"
            self.close()

    def result(self) -> Measurement:
        if self.error or not self.elapsed:
            return Measurement(None, self.steps, self.error or "no steps timed")
        spec = self.task.spec if self.task is not None else None
        return Measurement(self.steps / self.elapsed, self.steps, action_repeat=spec and spec.action_repeat,
                           horizon=spec and spec.horizon)

    def close(self) -> None:
        if self.task is not None:
            self.task.close()
            self.task = None


def measure_task(name: str, seconds: float, rounds: int) -> dict[str, Measurement]:
    """All configurations of one task, interleaved in `rounds` slices so that load drift hits them alike."""
    runners = {label: Runner(name, render, quality) for label, render, quality in CONFIGS}
    try:
        for _ in range(rounds):
            for runner in runners.values():
                runner.run_for(seconds / rounds, max(1, MIN_STEPS // rounds))
        return {label: runner.result() for label, runner in runners.items()}
    finally:
        for runner in runners.values():
            runner.close()


def load_suites() -> dict[str, str]:
    """Import every suite module; return {module: error} for those that failed."""
    failed = {}
    for module in registry.SUITE_MODULES:
        try:
            importlib.import_module(module)
        except Exception as err:
            failed[module] = f"{type(err).__name__}: {err}"
    try:
        registry.names()
    except Exception:
        failed.setdefault("registry", traceback.format_exc(limit=1).strip().splitlines()[-1])
    return failed


def representative_tasks() -> dict[str, str]:
    first: dict[str, str] = {}
    for name in registry.names():
        first.setdefault(name.split("/", 1)[0], name)
    return first


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (f"{os.cpu_count()} CPU cores ({cpu}), MUJOCO_GL={os.environ.get('MUJOCO_GL', '(unset)')}, "
            f"Python {platform.python_version()}, load average {load}")


def fmt(m: Measurement, base: Measurement | None) -> str:
    if m.steps_per_s is None:
        return "error"
    ratio = ""
    if base is not None and base.steps_per_s:
        ratio = f" ({m.steps_per_s / base.steps_per_s:.3f}x)"
    return f"{m.steps_per_s:,.1f}{ratio}"


def run(seconds: float, rounds: int) -> tuple[str, list[str]]:
    failed = load_suites()
    tasks = representative_tasks()
    lines = ["| suite | task | repeat | no render | default quality | fast quality | fast / default "
             "| one episode: default / fast |", "|---|---|---|---|---|---|---|---|"]
    errors = [f"- `{module}` did not import: {err}" for module, err in failed.items()]
    for suite, name in tasks.items():
        results = measure_task(name, seconds, rounds)
        base = results["no render"]
        default, fast = results["default"], results["fast"]
        speedup = (f"{fast.steps_per_s / default.steps_per_s:.1f}x"
                   if fast.steps_per_s and default.steps_per_s else "n/a")
        repeat = next((str(m.action_repeat) for m in results.values() if m.action_repeat), "?")
        horizon = next((m.horizon for m in results.values() if m.horizon), None)
        episode = " / ".join(f"{horizon / m.steps_per_s:,.0f} s" if horizon and m.steps_per_s else "n/a"
                             for m in (default, fast))
        lines.append(f"| {suite} | `{name}` | {repeat} | {fmt(base, None)} | {fmt(default, base)} | "
                     f"{fmt(fast, base)} | {speedup} | {episode} |")
        errors += [f"- `{name}` {label}: {m.error}" for label, m in results.items() if m.error]
        print(lines[-1], flush=True)
    return "\n".join(lines), errors


def _load_note() -> str:
    if not hasattr(os, "getloadavg") or os.getloadavg()[0] <= (os.cpu_count() or 1):
        return ""
    return ("The load average was above the core count: other jobs shared the CPU during the run, so absolute "
            "figures are lower than on an idle machine; the ratios measured in the same run are the comparable "
            "part.\n\n")


def write_doc(path: Path, table: str, errors: list[str], seconds: float, command: str, elapsed: float) -> None:
    text = f"""# Rendering cost per suite: no render vs default vs fast quality

Produced by `{command}` on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, in one run ({elapsed:.0f} s).
Machine: {machine()}.

Figures are **agent steps per second** (one agent step = `repeat` simulator steps, plus one 84x84 frame when
rendering), for the first registered task of each suite, random actions, episode resets included; each
configuration runs ~{seconds:g} s after a warm-up, in interleaved slices. Ratios in brackets are against the
no-render baseline of the same task, measured in the same run. The last column is the wall time of one
episode (`TaskSpec.horizon` agent steps) with pixels.
"fast" = `polytask.sim.mujoco_render.apply_render_quality(model, "fast")`: no shadow casting, no reflective
materials, no off-screen multisampling (set before the first render); "default" = each model as its authors
made it.

{table}

{"Problems:" + chr(10) + chr(10).join(errors) if errors else "No suite failed to import or run."}

{_load_note()}Reading the table: at 84x84 on a CPU the frame, not the physics, bounds every suite's step rate with
pixels; "fast / default" is how much of that frame cost is shadows, reflections and multisampling, which an
84x84 policy does not need. Training on CPU therefore uses `quality="fast"` (the default of
`polytask.sim.registry.make`); use "default" only to compare with images rendered elsewhere.

Measuring the three configurations in one process is only valid because every suite's renderer makes its own GL
context current before drawing. Meta-World through gymnasium's `OffScreenViewer` did not: every task drew into
the last-created context (garbage frames in multi-task processes, and "default" timed with the "fast" context's
buffers). The suite now renders with `mujoco.Renderer`; `tests/test_metaworld_suite.py` guards it.
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="wall-clock budget per configuration")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved slices per configuration")
    parser.add_argument("--write", type=Path, help="write the table into this markdown file (atomically)")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.rounds < 1:
        parser.error(f"--seconds must be > 0 and --rounds >= 1, got {args.seconds} and {args.rounds}")
    start = time.perf_counter()
    print(f"machine: {machine()}")
    table, errors = run(args.seconds, args.rounds)
    for line in errors:
        print(line)
    if args.write:
        command = "MUJOCO_GL=egl .venv/bin/python bench/bench_render.py " + " ".join(sys.argv[1:] if argv is None
                                                                                      else argv)
        write_doc(args.write, table, errors, args.seconds, command.strip(), time.perf_counter() - start)
        print(f"wrote {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
