"""Render quality for MuJoCo models: one place that knows what "fast" means.

On a CPU (`MUJOCO_GL=egl` falls back to llvmpipe) shadow maps, reflections and multisampling dominate the cost of
an 84x84 frame: Meta-World renders ~19 frames/s with its own settings and ~87 with shadows and reflections off
(docs/benchmarks-render.md). Every suite that owns an `mujoco.MjModel` calls `apply_render_quality` once, right
after loading the model and BEFORE the first render: the off-screen buffer's multisample count is read when the
rendering context is created, so changing it later has no effect.

It also picks the OpenGL backend (`choose_gl_backend`: EGL where there is no display) and turns a failed OpenGL
start into one line naming MUJOCO_GL (`gl_failure`).
"""

from __future__ import annotations

import os
import sys
from typing import Any

QUALITIES = ("fast", "default")

# "fast": no shadow casting, no reflective materials, no multisampling, a tiny shadow map (unused, but it is
# allocated when the context is created). 84x84 training frames lose nothing a policy needs.
FAST_OFFSAMPLES = 0
FAST_SHADOWSIZE = 64


def apply_render_quality(model: Any, quality: str) -> None:
    """Apply a render quality to a `mujoco.MjModel` in place.

    "default" leaves the model exactly as its author made it; "fast" turns off shadows (every light's
    castshadow), reflections (every material's reflectance) and off-screen multisampling. Call before the
    first render of this model.
    """
    if quality not in QUALITIES:
        raise ValueError(f"render quality {quality!r} unknown; expected one of {QUALITIES}")
    if quality == "default":
        return
    for attr in ("vis", "light_castshadow", "mat_reflectance"):
        if not hasattr(model, attr):
            raise TypeError(f"apply_render_quality expects a mujoco.MjModel, got {type(model).__name__} "
                            f"(no attribute {attr!r})")
    model.light_castshadow[:] = 0
    model.mat_reflectance[:] = 0.0
    model.vis.quality.offsamples = FAST_OFFSAMPLES
    model.vis.quality.shadowsize = FAST_SHADOWSIZE


# --- which OpenGL MuJoCo starts --------------------------------------------------------------------------------
GL_BACKENDS = ("egl", "osmesa", "glfw")
_GL_MARKERS = ("OpenGL platform library", "mjr_makeContext", "glGetError", "EGL", "OSMesa", "osmesa", "GLFW",
               "DISPLAY environment", "_mjr_context", "environment variable MUJOCO_GL", "gladLoadGL")


def choose_gl_backend(environ: dict[str, str] | None = None) -> str:
    """Set MUJOCO_GL for this process where the user did not: `egl` on a machine without a display.

    MuJoCo's default is GLFW, which needs an X or Wayland display; on a headless machine (a robot computer, CI,
    any node under `ros2 launch` started from ssh) every render would then fail. EGL renders off-screen on the
    GPU, or on the CPU through Mesa's llvmpipe. PYOPENGL_PLATFORM follows (PyOpenGL must load the same library).
    MuJoCo and dm_control read the variable when they are imported, so this runs first (`import polytask`).
    Returns the backend in force ("" for MuJoCo's own default, with a display).
    """
    env = os.environ if environ is None else environ
    if not env.get("MUJOCO_GL") and not env.get("DISPLAY") and not env.get("WAYLAND_DISPLAY"):
        env["MUJOCO_GL"] = "egl"
    backend = env.get("MUJOCO_GL", "")
    if backend in ("egl", "osmesa") and not env.get("PYOPENGL_PLATFORM"):
        env["PYOPENGL_PLATFORM"] = backend
    return backend


def gl_failure(err: BaseException) -> str | None:
    """One line naming MUJOCO_GL when `err` (or its cause) is OpenGL failing to start; None for other errors."""
    seen: set[int] = set()
    cause: BaseException | None = err
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        text = f"{type(cause).__name__}: {cause}"
        if any(marker in text for marker in _GL_MARKERS):
            first = text.strip().splitlines()[0][:200]
            backend = os.environ.get("MUJOCO_GL", "")
            return (f"MuJoCo could not start OpenGL with MUJOCO_GL={backend!r} ({first}); set MUJOCO_GL=egl "
                    f"(headless: libEGL + Mesa, or a GPU driver), osmesa (libosmesa6) or glfw (with a display)")
        cause = cause.__cause__ or cause.__context__
    return None


def quiet_failed_renderer_cleanup() -> None:
    """A mujoco.Renderer whose GL start failed also raises in its __del__ ('no attribute _mjr_context'); that
    second message hides the first. Drop just that one from the 'Exception ignored' output."""
    previous = sys.unraisablehook

    def hook(unraisable) -> None:
        exc = unraisable.exc_value
        if isinstance(exc, AttributeError) and "_mjr_context" in str(exc):
            return
        previous(unraisable)

    sys.unraisablehook = hook


def worker_render_env(workers: int, environ: dict[str, str] | None = None, cpus: int | None = None) -> dict[str, str]:
    """The environment a render worker process starts with (sim/env_workers.py): the parent's with the backend
    chosen as above (EGL without a display), and, where EGL renders on the CPU (Mesa's llvmpipe: no GPU device
    node), each of the `workers` processes given its share of the cores for llvmpipe's threads (LP_NUM_THREADS;
    llvmpipe otherwise starts a thread per core in every process, and N workers then fight for the same cores).
    On a GPU machine EGL renders on the card and the variable is left alone. A value the user set is kept."""
    env = dict(os.environ if environ is None else environ)
    choose_gl_backend(env)
    on_gpu = os.path.exists("/dev/nvidia0") or bool(env.get("MUJOCO_EGL_DEVICE_ID"))
    if env.get("MUJOCO_GL") == "egl" and not on_gpu and "LP_NUM_THREADS" not in env:
        cores = cpus or os.cpu_count() or 1
        env["LP_NUM_THREADS"] = str(max(1, cores // max(1, workers)))
    return env
