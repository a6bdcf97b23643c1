"""PolyTask: learn per-task experts from a few demos, then distil them into one goal-conditioned policy.

Import layout (one namespace): `polytask.sim` (suites), `polytask.learning` (agents, storage, distillation),
`polytask.nodes` (thin ROS 2 nodes), `polytask.launch` (graph descriptions), `polytask.cli` (the command).
"""

__version__ = "0.1.0"

# Before anything imports MuJoCo or dm_control (they read MUJOCO_GL once, at import): EGL on a headless machine.
from polytask.sim.mujoco_render import choose_gl_backend, quiet_failed_renderer_cleanup

choose_gl_backend()
quiet_failed_renderer_cleanup()
