"""What the paper's xArm tasks share on top of `XarmTask`: a scene built from pieces, a fixed tool grip, and a
closed-loop "go to this point" step for the scripted experts."""

from __future__ import annotations

import mujoco
import numpy as np

from polytask.sim.xarm_arm import MAX_STEP_M, SimArm
from polytask.sim.xarm_suite import XarmTask
from polytask.sim.xarm_tasks import scene


class SceneTask(XarmTask):
    """An xArm task whose scene is gym-xarm's reach scene plus the objects `_add_objects` puts in it."""

    fixed_gripper: float | None = None  # tasks that hold a tool keep the gripper closed whatever action[3] says

    def _add_objects(self, spec: mujoco.MjSpec) -> None:
        raise NotImplementedError

    def _build_arm(self, quality: str) -> SimArm:
        spec = scene.base_spec()
        self._add_objects(spec)
        model = scene.compile_spec(spec)
        scene.hide_target(model)  # every goal here is an object in the picture
        d = self.definition
        return SimArm(
            d.scene, quality=quality, model=model, workspace=(np.array(d.workspace[0]), np.array(d.workspace[1]))
        )

    def _start_gripper(self) -> float:
        return self.fixed_gripper if self.fixed_gripper is not None else -1.0

    def _tool_command(self, command: float) -> float:
        return self.fixed_gripper if self.fixed_gripper is not None else command

    def site(self, name: str) -> np.ndarray:
        return self.arm.data.site(name).xpos.copy()


def toward(ee: np.ndarray, target: np.ndarray, tool: float) -> np.ndarray:
    """The action that moves the end effector straight at `target` (full speed while more than a step away on an
    axis, proportional inside), with action[3] = `tool`."""
    delta = np.asarray(target, dtype=np.float64) - np.asarray(ee, dtype=np.float64)
    return np.append(np.clip(delta / MAX_STEP_M, -1.0, 1.0), tool).astype(np.float32)
