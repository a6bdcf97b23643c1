"""Simulated suites behind one task interface (no ROS imports here).

`polytask.sim.registry.make("metaworld/door-open")` is the only way the rest of PolyTask creates a task.
"""

from polytask.sim.task import Goal, Step, Task, TaskSpec

__all__ = ["Goal", "Step", "Task", "TaskSpec"]
