"""Render quality for MuJoCo models: one place that knows what "fast" means.

On a CPU (`MUJOCO_GL=egl` falls back to llvmpipe) shadow maps, reflections and multisampling dominate the cost of
an 84x84 frame: Meta-World renders ~19 frames/s with its own settings and ~87 with shadows and reflections off
(docs/benchmarks-render.md). Every suite that owns an `mujoco.MjModel` calls `apply_render_quality` once, right
after loading the model and BEFORE the first render: the off-screen buffer's multisample count is read when the
rendering context is created, so changing it later has no effect.
"""

from __future__ import annotations

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
