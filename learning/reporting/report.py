"""Run reports: per-task tables (CSV + PNG), the lifelong forgetting plot, parameter counts.

Why PNG tables as well as CSV: a run folder should be readable at a glance (in a browser, a PR), and the CSV is
what scripts and docs quote. Everything is written atomically into the run folder.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from polytask.learning.data.atomic import atomic_open, atomic_path


def write_rows(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """CSV of dict rows (columns: union of keys in first-seen order), written atomically."""
    path = Path(path)
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    with atomic_open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)


def _save_fig(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    return path


def table_png(rows: Sequence[Mapping[str, Any]], path: str | Path, title: str = "") -> Path:
    """Render dict rows as a PNG table."""
    import matplotlib  # here: matplotlib costs about a second to import, and only plotting needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    cells = [[_fmt(r.get(c, "")) for c in cols] for r in rows]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.5 * len(cols)), 0.35 * (len(rows) + 2)))
    ax.axis("off")
    labels = [c.replace(" (", "\n(") for c in cols]  # two-line headers keep wide tables readable
    table = ax.table(cellText=cells, colLabels=labels, loc="center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.auto_set_column_width(col=list(range(len(cols))))
    for (row, _col), cell in table.get_celld().items():
        if row == 0:
            cell.set_height(cell.get_height() * 2)
    if title:
        ax.set_title(title, fontsize=10)
    out = _save_fig(fig, Path(path))
    plt.close(fig)
    return out


def table(rows: Sequence[Mapping[str, Any]], stem: str | Path, title: str = "") -> tuple[Path, Path]:
    """`<stem>.csv` and `<stem>.png` of the same rows."""
    stem = Path(stem)
    return write_rows(rows, stem.with_suffix(".csv")), table_png(rows, stem.with_suffix(".png"), title)


def per_task_rows(results: Mapping[str, Mapping[str, float]], tasks: Sequence[str]) -> list[dict[str, Any]]:
    """results: method -> task -> score. One row per task plus an 'effective tasks' row (column sums)."""
    rows: list[dict[str, Any]] = []
    for t in tasks:
        rows.append({"task": t.split("/", 1)[-1], **{m: float(r.get(t, float("nan"))) for m, r in results.items()}})
    rows.append({"task": "effective tasks", **{m: float(sum(r.get(t, 0.0) for t in tasks))
                                              for m, r in results.items()}})
    return rows


def forgetting_plot(histories: Mapping[str, Sequence[Mapping[str, Any]]], order: Sequence[str],
                    path: str | Path) -> Path:
    """The paper's Fig. 4/5: per method, success of every task (rows) after each addition (columns), and the
    effective number of tasks after each addition."""
    import matplotlib  # here: matplotlib costs about a second to import, and only plotting needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(histories)
    fig, axes = plt.subplots(1, len(methods) + 1, figsize=(4.0 * (len(methods) + 1) + 1.5, 4.8),
                             layout="constrained")
    axes = np.atleast_1d(axes)
    n = len(order)
    for col, (ax, m) in enumerate(zip(axes, methods, strict=False)):
        grid = np.full((n, n), np.nan)
        for j, stage in enumerate(histories[m]):
            for i, t in enumerate(order):
                if t in stage["scores"]:
                    grid[i, j] = stage["scores"][t]
        im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_title(f"{m}: success after each addition", fontsize=9)
        ax.set_xlabel("tasks added")
        ax.set_xticks(range(n), [str(i + 1) for i in range(n)], fontsize=6)
        ax.set_yticks(range(n), [t.split("/", 1)[-1] for t in order] if col == 0 else [], fontsize=6)
    fig.colorbar(im, ax=axes[len(methods) - 1], fraction=0.05, label="success rate")
    ax = axes[-1]
    for m in methods:
        eff = [s["effective"] for s in histories[m]]
        ax.plot(range(1, len(eff) + 1), eff, marker="o", label=m)
    ax.plot(range(1, n + 1), range(1, n + 1), "k:", label="ideal")
    ax.set_xlabel("tasks added")
    ax.set_ylabel("effective number of tasks")
    ax.legend(fontsize=8)
    ax.set_title("effective tasks after each addition", fontsize=9)
    out = _save_fig(fig, Path(path))
    plt.close(fig)
    return out
