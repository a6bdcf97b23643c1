"""PolyTask: learn per-task experts from a few demos, then distil them into one goal-conditioned policy.

Import layout (one namespace): `polytask.sim` (suites), `polytask.learning` (agents, storage, distillation),
`polytask.nodes` (thin ROS 2 nodes), `polytask.launch` (graph descriptions), `polytask.cli` (the command).
"""

__version__ = "0.1.0"
