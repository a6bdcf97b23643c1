"""The history of a lifelong run: one `Stage` per added task, in `<run>/history.json`, which the forgetting plot
(reporting/report.py) reads. Shared by lifelong distillation (distill/lifelong.py, distill/progressive.py) and
lifelong RL (rl/lifelong.py), so their run folders read alike.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polytask.learning.data.atomic import write_json

HISTORY = "history.json"


@dataclass
class Stage:
    index: int  # 1-based number of tasks seen
    task: str  # the task added at this stage
    tasks: list[str]
    scores: dict[str, float]  # per seen task
    effective: float
    parameters: int
    checkpoint: str
    seconds: float
    train_steps: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def read_history(method_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(method_dir) / HISTORY
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: lifelong history is not valid JSON ({err})") from err
    if not isinstance(data, list) or not all(isinstance(s, dict) and "task" in s for s in data):
        raise ValueError(f"{path}: lifelong history must be a list of stages with a 'task' key")
    return data


def write_history(method_dir: str | Path, stages: Sequence[Mapping[str, Any]]) -> Path:
    """The whole history, replaced atomically: a crash mid-write leaves the previous stages readable."""
    return write_json(Path(method_dir) / HISTORY, list(stages), indent=1)


def next_stage(run_dir: str | Path, order: Sequence[str]) -> tuple[list[dict[str, Any]], int]:
    """The history of a lifelong run and the index of the task of `order` to add next; refuses an order that the
    history does not follow, one that names a task twice, and a run with nothing left to add."""
    if not order or len(set(order)) != len(order):
        raise ValueError(f"lifelong order must name each task once, got {list(order)}")
    history = read_history(run_dir)
    done = [s["task"] for s in history]
    if done != list(order[: len(done)]):
        raise ValueError(f"{Path(run_dir) / HISTORY}: tasks {done} do not follow the order {list(order)}")
    if len(done) >= len(order):
        raise ValueError(f"{run_dir}: all {len(order)} tasks of {list(order)} already added")
    return history, len(done)
