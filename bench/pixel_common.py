"""What the pixel runs (bench/pixel_runs.py) share: sizes per machine, the time budget, the report, the pools.

- `Profile`: every size of the runs, one set per machine: `gpu` (the paper's networks on the GPU machine, one job of
  at most 9 minutes), `cpu` (run 5 on the 2-core CPU, about 20 minutes), `toy` (the end-to-end test) and `ci` (the
  pixel BC learning test). A run never reads a size from anywhere else, so the tests run the GPU job's code.
- `Budget`: the job's wall clock. Every run gets a share of what is left when it starts; stages inside a run size
  themselves from rates measured in the same process (steps = rate x seconds), and RL runs stop at their deadline.
- `Report`: the job's results, written after every stage (OUT/pixel_runs.json, atomic), and the docs rows
  (OUT/rows.md): card, date, command, per-task tables.
- `Job`: one invocation (profile, work folder, budget, report, the evaluation tasks it reuses).
- `pool_map`: jobs side by side, one process each (spawn: no forked torch/MuJoCo state); experts and store filling.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

# The toy job (bench/pixel_runs.sh --toy) hides from Python what the GPU machine lacks even with the brought
# Meta-World wheels (dm_control, POT, gymnasium-robotics, rclpy), in this process and in every process it spawns
# (they inherit the variable), so that a GPU job cannot come to depend on them unnoticed.
HIDE_ENV = "POLYTASK_HIDE_MODULES"
if os.environ.get(HIDE_ENV):
    from gpu_suite import _Absent  # the GPU suite's dry-run finder: an import of a hidden module raises

    sys.meta_path.insert(0, _Absent(tuple(os.environ[HIDE_ENV].split(","))))

EVAL_SEED = 1_000_000  # = learning/rl/loop.py's: experts and students face the same placements
EASY4 = ("metaworld/button-press-topdown", "metaworld/drawer-close", "metaworld/plate-slide", "metaworld/coffee-button")


@dataclass(frozen=True)
class Profile:
    """The sizes of the pixel runs on one kind of machine."""

    name: str
    device: str
    compile: str  # agent.compile and the distillation's compile: "graph" on CUDA, "none" on a CPU
    workers: int  # expert processes side by side (CPU profiles; on CUDA every expert of the job at once)
    collect_workers: int = 1  # processes filling the exploratory stores side by side
    threads: int = 0  # torch threads of the students' process (0: half the cores on CUDA machines, else 1)
    # runs 1 and 2: pixel experts
    expert_tasks: tuple[str, ...] = (
        "metaworld/button-press-topdown",
        "metaworld/drawer-close",
        "metaworld/plate-slide",
    )
    ot_task: str = "metaworld/drawer-close"
    ot_seeds: tuple[int, ...] = (1, 2)
    hidden: int = 1024  # Table IV
    feature_dim: int = 512
    batch: int = 256
    bc_steps: int = 2000  # BC pretraining on the 1 demo (Table IV: 10000; the job has minutes)
    seed_frames: int = 4000  # frames before the first update (Table IV 12000; after BC the actor explores well)
    max_rl_steps: int = 100_000  # agent steps; the deadline usually ends a run first
    eval_every: int = 5000
    eval_episodes: int = 10
    eval_reserve_s: float = 45.0  # left for an expert's final evaluation and checkpoint after its deadline
    # runs 3-5: pixel students
    table_tasks: tuple[str, ...] = ("metaworld/*",)  # registry globs
    transitions: int = 10_000  # exploratory transitions per task at most (Table V keeps 30000)
    student_hidden: int = 1024  # Table V
    student_layers: int = 4
    student_feature: int = 512
    student_batch: int = 256
    student_lr: float = 3e-4
    student_max_steps: int = 40_000
    student_min_steps: int = 500
    gcbc_max_steps: int = 5000  # 0: no GCBC
    curve_points: int = 0  # evaluations during the one-hot student's training (run 5's learning curve)
    curve_episodes: int = 5


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("gpu", device="cuda", compile="graph", workers=16, collect_workers=16),
        Profile(
            "cpu",
            device="cpu",
            compile="none",
            workers=1,
            threads=2,  # run 5 runs alone on the 2 cores (under the heavy-jobs lock)
            table_tasks=EASY4,
            transitions=2500,
            student_hidden=256,
            student_layers=3,
            student_feature=64,
            student_batch=32,
            student_lr=1e-3,
            student_max_steps=8000,
            student_min_steps=200,
            gcbc_max_steps=1500,
            curve_points=3,
            curve_episodes=3,
            eval_episodes=10,
            hidden=256,
            feature_dim=64,
            batch=32,
            bc_steps=500,
        ),
        Profile(
            "toy",
            device="cpu",
            compile="none",
            workers=4,  # the 4 expert runs of runs 1 and 2 at once, as on the GPU
            expert_tasks=("metaworld/button-press-topdown", "metaworld/drawer-close"),
            hidden=32,
            feature_dim=16,
            batch=8,
            bc_steps=20,
            seed_frames=40,
            max_rl_steps=70,  # one episode (63 steps) fills the replay, then a few updates
            eval_every=0,
            eval_episodes=1,
            eval_reserve_s=5,
            table_tasks=("metaworld/button-press-topdown", "metaworld/drawer-close"),
            transitions=130,
            student_hidden=32,
            student_layers=2,
            student_feature=16,
            student_batch=8,
            student_lr=1e-3,
            student_max_steps=40,
            student_min_steps=40,
            gcbc_max_steps=40,
            curve_points=2,
            curve_episodes=1,
        ),
        # the CI learning test (tests/test_pixel_bc_learns.py): one easy task, fixed sizes (no timing enters)
        Profile(
            "ci",
            device="cpu",
            compile="none",
            workers=1,
            table_tasks=("metaworld/drawer-close",),
            transitions=320,
            student_hidden=64,
            student_layers=2,
            student_feature=32,
            student_batch=16,
            student_lr=1e-3,
            student_max_steps=150,
            student_min_steps=150,
            gcbc_max_steps=0,  # no GCBC
            curve_points=1,
            curve_episodes=2,
            eval_episodes=5,
        ),
    )
}


def profile(name: str, **changes: Any) -> Profile:
    if name not in PROFILES:
        raise SystemExit(f"--profile {name!r} unknown; expected one of {sorted(PROFILES)}")
    return replace(PROFILES[name], **{k: v for k, v in changes.items() if v is not None})


class Budget:
    """The job's wall clock (epoch seconds, so processes of the job share it)."""

    def __init__(self, seconds: float) -> None:
        self.start = time.time()
        self.end = self.start + seconds

    def left(self) -> float:
        return self.end - time.time()

    def deadline(self, share: float) -> float:
        """`share` of what is left now, as an absolute time."""
        return time.time() + max(0.0, self.left()) * share


def machine(device: str) -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "host": platform.node(),
    }
    if device.startswith("cuda"):
        out.update(card=torch.cuda.get_device_name(0), cuda=torch.version.cuda)
    else:
        out["card"] = f"none (CPU, {os.cpu_count()} cores)"
    return out


@dataclass
class Report:
    """pixel_runs.json (rewritten after every stage) and rows.md in the output folder."""

    out: Path
    command: str
    profile: Profile
    info: dict[str, Any]
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    started: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))

    def save(self) -> None:
        from polytask.learning.data.atomic import write_json

        self.out.mkdir(parents=True, exist_ok=True)
        write_json(
            self.out / "pixel_runs.json",
            {
                "started": self.started,
                "command": self.command,
                "profile": asdict(self.profile),
                "machine": self.info,
                "runs": self.runs,
                "notes": self.notes,
            },
            indent=1,
            default=str,
        )

    def rows(self, render: dict[str, Callable[[dict[str, Any]], list[str]]]) -> str:
        date = self.started[:10]
        lines = []
        for name, res in self.runs.items():
            lines.append(f"### {TITLES.get(name, name)}: {self.info.get('card')}, {date}")
            lines.append(f"`{self.command}` ({res.get('seconds', 0):.0f} s; profile {self.profile.name})")
            lines.append("")
            if res.get("status") != "ok":
                lines += [f"**{res.get('status')}**: {res.get('error', '')}", ""]
                continue
            lines += [*render[name](res), ""]
        lines += [f"note: {n}" for n in self.notes]
        text = "\n".join(lines)
        from polytask.learning.data.atomic import write_text

        write_text(self.out / "rows.md", text)
        return text


TITLES = {
    "experts": "Run 1: pixel Meta-World experts from 1 scripted demo each",
    "ot": "Run 2: OT-only pixel expert",
    "table1": "Run 3: Table I on pixels",
    "distil": "Run 4: run 1's pixel experts distilled into one pixel student",
    "curve": "Run 5: reduced pixel distillation (learning curve)",
}


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    def cell(v: Any) -> str:
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *["| " + " | ".join(cell(v) for v in r) + " |" for r in rows],
    ]


def pool_map(fn: Callable[[Any], Any], items: Sequence[Any], workers: int) -> list[Any]:
    """`fn` over `items`, `workers` processes side by side (in this process when workers <= 1)."""
    if workers <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    import multiprocessing

    with ProcessPoolExecutor(
        max_workers=min(workers, len(items)), mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        return list(pool.map(fn, items))


def slug(task: str) -> str:
    return task.replace("/", "_")


class Job:
    """One invocation: the profile, the work folder, the budget and the report."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.p = profile(
            args.profile,
            eval_episodes=args.eval_episodes,
            transitions=args.transitions,
            expert_tasks=tuple(args.expert_tasks) if args.expert_tasks else None,
        )
        self.work = Path(args.work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.budget = Budget(args.budget_s)
        self.report = Report(Path(args.out), args.command, self.p, machine(self.p.device))
        auto = max(1, min(8, (os.cpu_count() or 1) // 2)) if self.p.device.startswith("cuda") else 1
        self.threads = self.p.threads or auto
        self.student_compile = self.p.compile  # "none" once the fast step failed on this machine
        self.notes = self.report.notes  # what went differently from the plan (in the JSON and the rows)
        self.env_fps = 60.0  # one process's rendered agent steps/s, re-measured by every collection
        self._eval_tasks: dict[str, Any] = {}

    def eval_task(self, name: str) -> Any:
        """The rendered task every evaluation of `name` in this job reuses (making one costs seconds)."""
        if name not in self._eval_tasks:
            from polytask.sim import registry

            self._eval_tasks[name] = registry.make(name, render=True)
        return self._eval_tasks[name]

    def close(self) -> None:
        for task in self._eval_tasks.values():
            task.close()

    def log(self, msg: str) -> None:
        print(f"[{time.time() - self.budget.start:6.0f} s] {msg}", flush=True)

    def demos(self, tasks: Sequence[str]) -> Path:
        """1 clean successful rendered scripted demo per task (the experts' and GCBC's demo, the goal image)."""
        from polytask.learning.data.episodes import EpisodeStore
        from polytask.learning.distill.collect import record_demo

        root = self.work / "demos"
        for t in tasks:
            if not any(True for _ in EpisodeStore(root).iter_episodes(t)):
                record_demo(t, root, seed=50_000, render=True)
        return root

    def expert_checkpoint(self, task: str) -> Path | None:
        path = self.work / "experts" / slug(task) / "checkpoints" / "expert.safetensors"
        return path if path.exists() else None
