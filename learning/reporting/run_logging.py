"""Run folders and what a training run writes into them: CSV tables, TensorBoard events, curve PNGs, progress bar.

Layout: `runs/<YYYYmmdd-HHMMSS>-<name>/` with `config.yaml`, `checkpoints/`, `tb/`, `train.csv` (one row per
episode), `eval.csv` (one row per evaluation: the effective number of tasks, the means over tasks, each task's score
and return), `bc.csv` (BC pretraining losses), `curves.png`, `videos/`. On resume, train and eval rows logged after
the checkpoint's step (by the killed process) are dropped and TensorBoard is opened with `purge_step`, so the
curves show one history.
"""

from __future__ import annotations

import csv
import math
import os
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from polytask.learning.data.atomic import atomic_open, atomic_path

TRAIN_COLUMNS = ["step", "frames", "episode", "task", "episode_return", "train_reward_return", "episode_score",
                 "episode_success", "critic_loss", "actor_loss", "bc_loss", "distral_kl", "centroid_loss", "critic_q1",
                 "batch_reward", "stddev", "env_fps", "updates_per_s", "wall_s"]
EVAL_COLUMNS = ["step", "frames", "effective_tasks", "score", "success_rate", "return", "episodes", "wall_s"]
BC_COLUMNS = ["step", "loss"]  # step: the BC step (not an agent step: written once, before any, never truncated)
TIMING_COLUMNS = ("env_fps", "updates_per_s", "wall_s")  # the only columns a resumed run does not repeat exactly


def columns(tasks: list[str]) -> dict[str, list[str]]:
    """The CSV columns of a run over `tasks` (eval rows hold each task's score and return)."""
    per_task = [c for t in tasks for c in (f"score/{t}", f"return/{t}")]
    return {"train": TRAIN_COLUMNS, "eval": EVAL_COLUMNS + per_task, "bc": BC_COLUMNS}


def make_run_dir(runs_dir: str | os.PathLike, name: str) -> Path:
    """A new `runs_dir/<date>-<name>` folder (a numeric suffix if it exists already)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in name) or "run"
    base = Path(runs_dir) / f"{stamp}-{safe}"
    path, i = base, 1
    while path.exists():
        path = base.with_name(f"{base.name}-{i}")
        i += 1
    path.mkdir(parents=True)
    return path


def open_run_dir(run_dir: str | os.PathLike | None, runs_dir: str | os.PathLike, name: str) -> Path:
    """The run folder with its checkpoints/ subfolder: `run_dir` when given (a resume), else a new dated one."""
    path = Path(run_dir) if run_dir is not None else make_run_dir(runs_dir, name)
    (path / "checkpoints").mkdir(parents=True, exist_ok=True)
    return path


def truncate_csv(path: Path, columns: list[str], max_step: int) -> None:
    """Keep only well-formed rows with step <= max_step (rows of a killed process after its checkpoint go)."""
    if not path.exists():
        return
    keep = []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            try:
                if int(float(row.get("step", "nan"))) <= max_step and None not in row.values():
                    keep.append(row)
            except ValueError:
                continue
    with atomic_open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(keep)


def append_csv_row(path: Path, columns: list[str], row: dict[str, Any]) -> None:
    """Append one row (header first when the file is new); keys outside `columns` are ignored.

    Appends rather than rewrites: a log grows by one line per episode, and a killed process loses at most the
    line it was writing, which `truncate_csv` drops on resume.
    """
    new = not path.exists()
    with open(path, "a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerow(row)


class RunLogger:
    """CSV + TensorBoard for one run; `resume_step` drops what a killed process logged after its checkpoint."""

    def __init__(self, run_dir: Path, tasks: list[str], resume_step: int | None = None,
                 tensorboard: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.columns = columns(tasks)
        if resume_step is not None:
            for kind in ("train", "eval"):
                truncate_csv(self.run_dir / f"{kind}.csv", self.columns[kind], resume_step)
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # optional: the CSVs hold everything

                self.tb = SummaryWriter(str(self.run_dir / "tb"), purge_step=resume_step)
            except ImportError:  # tensorboard missing: CSVs still hold everything
                self.tb = None
        self.start = time.time()

    def log(self, kind: str, step: int, metrics: dict[str, Any]) -> None:
        """One row of `<kind>.csv` (keys outside its columns go to TensorBoard only); `wall_s` defaults to the
        seconds since this logger opened."""
        cols = self.columns[kind]
        row = {c: metrics.get(c, "") for c in cols}
        row["step"] = step
        if "wall_s" in cols and "wall_s" not in metrics:
            row["wall_s"] = round(time.time() - self.start, 2)
        append_csv_row(self.run_dir / f"{kind}.csv", cols, row)
        if self.tb is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    self.tb.add_scalar(f"{kind}/{k}", v, step)

    def read(self, kind: str) -> list[dict[str, str]]:
        path = self.run_dir / f"{kind}.csv"
        if not path.exists():
            return []
        with open(path, newline="") as fh:
            return list(csv.DictReader(fh))

    def plot_curves(self) -> Path | None:
        """curves.png: eval score and return, training episode return, against env frames.

        The score is the suite's rule (success rate; DMC return / 1000), so the first panel means something on
        every suite.
        """
        evals, train = self.read("eval"), self.read("train")
        if not evals and not train:
            return None
        import matplotlib  # here: matplotlib costs about a second to import, and only plotting needs it

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        def col(rows: list[dict[str, str]], key: str) -> list[float]:
            return [float(r[key]) if r.get(key) not in (None, "") else float("nan") for r in rows]

        fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
        if evals:
            axes[0].plot(col(evals, "frames"), col(evals, "score"), marker="o")
            axes[1].plot(col(evals, "frames"), col(evals, "return"), marker="o")
        if train:
            axes[2].plot(col(train, "frames"), col(train, "episode_return"), lw=0.8)
        titles = ("eval score (success rate; DMC return/1000)", "eval return", "train episode return")
        for ax, title in zip(axes, titles, strict=True):
            ax.set_title(title)
            ax.set_xlabel("env frames")
            ax.grid(alpha=0.3)
        fig.tight_layout()
        path = self.run_dir / "curves.png"
        try:
            with atomic_path(path) as tmp:
                fig.savefig(tmp, dpi=90)
        finally:
            plt.close(fig)
        return path

    def flush(self) -> None:
        if self.tb is not None:
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.flush()
            self.tb.close()
            self.tb = None


class Progress:
    """A tqdm bar over agent steps showing env frames/s and updates/s (measured over the last interval)."""

    def __init__(self, total: int, initial: int, action_repeat: int, enabled: bool = True, desc: str = "train") -> None:
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step", disable=not enabled, dynamic_ncols=True)
        self.action_repeat = action_repeat
        self._t = time.time()
        self._steps = 0
        self._updates = 0
        self.env_fps = 0.0
        self.ups = 0.0

    def advance(self, steps: int, updates: int, **extra: Any) -> None:
        self._steps += steps
        self._updates += updates
        self.bar.update(steps)
        now = time.time()
        if now - self._t >= 2.0:
            dt = now - self._t
            self.env_fps = self._steps * self.action_repeat / dt
            self.ups = self._updates / dt
            self._t, self._steps, self._updates = now, 0, 0
            self.bar.set_postfix(fps=f"{self.env_fps:.0f}", ups=f"{self.ups:.1f}", **extra)

    def close(self) -> None:
        self.bar.close()
