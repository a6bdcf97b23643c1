"""OpenGL for MuJoCo outside `make`: a headless machine picks EGL by itself, and a failed OpenGL start is one line
naming MUJOCO_GL (it used to end in `AttributeError: 'Renderer' object has no attribute '_mjr_context'`)."""

from __future__ import annotations

import os
import subprocess
import sys

from polytask.sim.mujoco_render import choose_gl_backend, gl_failure


def _headless_env(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY")
    }
    env.update(extra)
    return env


def test_backend_choice():
    headless: dict[str, str] = {}
    assert choose_gl_backend(headless) == "egl" and headless == {"MUJOCO_GL": "egl", "PYOPENGL_PLATFORM": "egl"}
    desktop = {"DISPLAY": ":0"}
    assert choose_gl_backend(desktop) == "" and "MUJOCO_GL" not in desktop  # MuJoCo's own default (GLFW)
    chosen = {"MUJOCO_GL": "osmesa"}
    assert choose_gl_backend(chosen) == "osmesa" and chosen["PYOPENGL_PLATFORM"] == "osmesa"  # the user's choice
    assert gl_failure(ValueError("bad task")) is None


def test_a_headless_process_renders_without_mujoco_gl_set():
    code = (
        "import os, polytask; from polytask.sim import registry; "
        "t = registry.make('xarm/reach', render=True); print(t.reset().pixels.shape, os.environ['MUJOCO_GL'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=_headless_env(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[-2] == "(84, 84, 3) egl"


def test_a_failed_gl_start_is_one_line_naming_mujoco_gl(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "polytask.cli",
            "record-demos",
            "--task",
            "metaworld/button-press",
            "--episodes",
            "1",
            "--out",
            str(tmp_path / "demos"),
        ],
        env=_headless_env(MUJOCO_GL="glfw"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower() and "GLFWError" not in line]
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(errors) == 1 and "MUJOCO_GL='glfw'" in errors[0] and "MUJOCO_GL=egl" in errors[0], errors
    assert "Traceback" not in done.stderr and "_mjr_context" not in done.stderr, done.stderr[-2000:]
