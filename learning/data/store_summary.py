"""What `polytask inspect` prints: episodes, lengths, tasks, success, and per-task totals."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from polytask.learning.data.episodes import EpisodeStore


@dataclass(frozen=True)
class EpisodeRow:
    index: int
    file: str
    task: str
    length: int
    success: bool
    score: float
    source: str
    has_pixels: bool


def summarize(store: EpisodeStore) -> list[EpisodeRow]:
    rows = []
    for i, (path, ep) in enumerate(store.iter_episodes()):
        rows.append(EpisodeRow(index=i, file=Path(path).name, task=ep.task, length=len(ep),
                               success=ep.episode_success, score=ep.score, source=ep.source,
                               has_pixels=ep.pixels is not None))
    return rows


def format_summary(rows: list[EpisodeRow], root: Path, skipped: int = 0, per_episode: bool = True) -> str:
    lines = [f"store {root}: {len(rows)} episodes" + (f" ({skipped} corrupt skipped)" if skipped else "")]
    if per_episode and rows:
        lines.append(f"{'#':>4}  {'task':<34} {'len':>5} {'success':>7} {'score':>7}  {'source':<10} file")
        for r in rows:
            lines.append(f"{r.index:>4}  {r.task:<34} {r.length:>5} {('yes' if r.success else 'no'):>7} "
                         f"{r.score:>7.2f}  {r.source:<10} {r.file}")
    per_task: dict[str, list[EpisodeRow]] = defaultdict(list)
    for r in rows:
        per_task[r.task].append(r)
    if per_task:
        lines.append("")
        lines.append(f"{'task':<34} {'episodes':>8} {'success':>8} {'mean len':>9} {'transitions':>12}")
        for task in sorted(per_task):
            rs = per_task[task]
            ok = sum(r.success for r in rs)
            lines.append(f"{task:<34} {len(rs):>8} {ok:>4}/{len(rs):<3} {sum(r.length for r in rs) / len(rs):>9.1f} "
                         f"{sum(r.length for r in rs):>12}")
    return "\n".join(lines)
