"""Shared test set-up: headless rendering, offline models, ament index pointing at the venv."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("AMENT_PREFIX_PATH", str(Path(sys.prefix)))

REPO_ROOT = Path(__file__).resolve().parents[1]
