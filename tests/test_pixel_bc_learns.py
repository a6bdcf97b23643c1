"""Pixel behaviour cloning learns, CI-sized: the real pixel path of run 5 (bench/pixel_runs.py curve) on one easy
task. A rendered exploratory store (noisy scripted teacher, placements drawn at every reset) relabelled by the
scripted teacher, a frame-stacked pixel student with a one-hot goal trained by Eq. 2 for 150 steps: its loss falls
and its success on 5 evaluation placements (reset seeds no store episode used) rises over the untrained start.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))


def test_pixel_bc_loss_falls_and_success_rises(tmp_path):
    import pixel_runs

    out = tmp_path / "out"
    argv = ["curve", "--profile", "ci", "--budget-s", "60", "--out", str(out), "--work", str(tmp_path / "work")]
    assert pixel_runs.main(argv) == 0
    res = json.loads((out / "pixel_runs.json").read_text())["runs"]["curve"]
    assert res["tasks"] == ["metaworld/drawer-close"]
    assert res["relabel"]["metaworld/drawer-close"]["teacher"] == "scripted"
    student = res["polytask_onehot"]
    assert student["steps"] == 150  # the ci profile fixes the steps: nothing depends on this machine's speed
    assert student["loss_last"] < 0.2 * student["loss_first"], student
    curve = student["curve"]
    assert [c[0] for c in curve] == [0, 75, 150]  # before, during (the profile's 1 point), after
    start, final = curve[0][1], curve[-1][1]
    assert final == student["effective"] and start == sum(student["start_scores"].values())
    assert final >= start + 0.4, curve  # 5 episodes: at least 2 more successes than the untrained student
    assert "gcbc_onehot" not in res and "learning curve" in (out / "rows.md").read_text()
    assert (out / "curve.png").read_bytes()[:4] == b"\x89PNG"
