"""The one atomic writer: what it publishes is complete, a failed write leaves the old file and no temp behind,
and the filename door (`atomic_path`) works for the encoders that insist on a name (OpenCV, matplotlib)."""

from __future__ import annotations

import json
import stat

import cv2
import numpy as np
import pytest

from polytask.learning.data.atomic import TMP_PREFIX, atomic_open, atomic_path, write_json, write_text
from polytask.learning.reporting.media import contact_sheet, write_video


def temps(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(TMP_PREFIX))


def test_failed_writes_keep_the_old_file_and_leave_no_temp(tmp_path):
    target = tmp_path / "table.csv"
    write_text(target, "old\n")
    with pytest.raises(RuntimeError), atomic_open(target, "w") as fh:
        fh.write("half a new ta")
        raise RuntimeError("writer died")
    with pytest.raises(OSError, match="encoder"), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise OSError("encoder refused")
    assert target.read_text() == "old\n"
    assert temps(tmp_path) == []


def test_writes_are_complete_shared_readable_and_keep_the_suffix(tmp_path):
    seen = {}
    with atomic_path(tmp_path / "sub" / "curves.png") as tmp:
        seen["suffix"], seen["prefix"] = tmp.suffix, tmp.name.startswith(TMP_PREFIX)
        tmp.write_bytes(b"png")
    assert seen == {"suffix": ".png", "prefix": True}  # encoders choose the format from the suffix
    out = write_json(tmp_path / "h.json", [{"task": "a"}], indent=1)
    assert json.loads(out.read_text()) == [{"task": "a"}] and out.read_text() == json.dumps([{"task": "a"}], indent=1)
    for p in (tmp_path / "sub" / "curves.png", out):
        assert stat.S_IMODE(p.stat().st_mode) == 0o644
    assert temps(tmp_path) == [] and temps(tmp_path / "sub") == []


def test_video_and_contact_sheet_read_back_through_opencv(tmp_path):
    frames = np.zeros((7, 12, 16, 3), np.uint8)
    frames[:, :, :8, 0] = 255  # left half red
    video = write_video(frames, tmp_path / "ep.mp4", fps=10, scale=2)
    cap = cv2.VideoCapture(str(video))
    count = 0
    while cap.read()[0]:
        count += 1
    assert count == 7 and int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 32
    cap.release()
    sheet = cv2.imread(str(contact_sheet(frames, tmp_path / "ep.png", columns=4, count=8, scale=1)))
    assert sheet.shape == (2 * 12, 4 * 16, 3) and sheet[6, 2, 2] > 200  # BGR: red in the last channel
    assert temps(tmp_path) == []
