"""Close an open drawer (left, right): the paper's robot tasks (i)-(j).

A cabinet (16 cm deep, 18 cm wide, 10 cm tall) stands on the table with its front towards the robot; its drawer
slides on a joint along x and starts pulled out 8-13 cm. The variants put the cabinet on the robot's left or
right (±3 cm around the region's centre); the arm starts above the table in front of it. The gripper follows
action[3] (the scripted expert keeps it closed and pushes with the fingers).

State: achieved = the drawer's handle, goal = where the handle is when the drawer is shut. Success (judged at the
episode's last step): the drawer open by less than 1 cm. Horizons 20 (left) and 25 (right), as on the authors'
robot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np

from polytask.sim.xarm_arm import TABLE_TOP_Z
from polytask.sim.xarm_suite import XarmTaskDef
from polytask.sim.xarm_tasks import scene
from polytask.sim.xarm_tasks.common import SceneTask, toward

SIZE = scene.DrawerSize(depth=0.16, width=0.18, height=0.10, travel=0.15)
CLOSED_M = 0.01  # success: open by less than this
FINGER_HALF_X = 0.016  # half the closed fingers' thickness along x


@dataclass(frozen=True)
class DrawerDef(XarmTaskDef):
    cabinet_xy: tuple[float, float] = (1.62, 0.30)  # centre of the front face's placement region


WORKSPACE = ((1.28, 0.05, 0.575), (1.75, 0.55, 0.80))
VARIANTS = (
    DrawerDef(
        "drawer-close-left",
        9,
        "drawer",
        "close the drawer on the left",
        horizon=20,
        workspace=WORKSPACE,
        cabinet_xy=(1.62, 0.44),
    ),
    DrawerDef(
        "drawer-close-right",
        10,
        "drawer",
        "close the drawer on the right",
        horizon=25,
        workspace=WORKSPACE,
        cabinet_xy=(1.62, 0.16),
    ),
)


class DrawerTask(SceneTask):
    """Close an open drawer by pushing it shut."""

    definition: DrawerDef = VARIANTS[0]
    success_threshold = CLOSED_M
    START_LOW = np.array([1.34, 0.24, 0.66])
    START_HIGH = np.array([1.42, 0.36, 0.72])
    JITTER = 0.03
    OPEN_LOW, OPEN_HIGH = 0.08, 0.13
    PUSH_Z = TABLE_TOP_Z + 0.035  # fingertips 3.5 cm above the table: level with the drawer's front
    SAFE_Z = TABLE_TOP_Z + SIZE.height + 0.015  # above the cabinet and the drawer while not lined up
    STANDOFF = 0.03  # the expert lines up this far in front of the handle

    def _add_objects(self, spec: mujoco.MjSpec) -> None:
        scene.add_drawer(spec, SIZE, [0.55, 0.4, 0.3, 1.0], [0.75, 0.6, 0.45, 1.0])

    def _place(self, rng: np.random.Generator) -> np.ndarray:
        front = np.array(self.definition.cabinet_xy) + rng.uniform(-self.JITTER, self.JITTER, size=2)
        scene.place_static(self.arm.model, "cabinet", [front[0], front[1], TABLE_TOP_Z])
        self._open = float(rng.uniform(self.OPEN_LOW, self.OPEN_HIGH))
        mujoco.mj_kinematics(self.arm.model, self.arm.data)
        self.arm.set_joint_position("drawer_slide", 0.0)
        self.goal_pos = self.site("drawer_handle")
        return rng.uniform(self.START_LOW, self.START_HIGH)

    def _after_reset(self, rng: np.random.Generator) -> None:
        self.arm.set_joint_position("drawer_slide", self._open)

    def achieved(self) -> np.ndarray:
        return self.site("drawer_handle")

    def distance(self) -> float:
        return float(np.linalg.norm(self.achieved() - self.goal_pos))

    def scripted_action(self, step: Any) -> np.ndarray:
        """Line up in front of the handle (above the cabinet's height until lined up in xy), go down, push along
        +x until the handle is at its closed position (from `step.state` alone)."""
        ee, _tool, handle, goal = self._from_state(step)
        line_up = np.array([handle[0] - self.STANDOFF - FINGER_HALF_X, handle[1], self.PUSH_Z])
        if handle[0] > goal[0] - CLOSED_M / 2:  # shut: stay put
            target = ee
        elif ee[2] < self.PUSH_Z + 0.01 and abs(ee[1] - handle[1]) < 0.02 and ee[0] < handle[0]:  # pushing
            target = np.array([goal[0] - FINGER_HALF_X + 0.005, handle[1], self.PUSH_Z])
        elif np.linalg.norm(ee[:2] - line_up[:2]) < 0.02:  # lined up: down
            target = line_up
        else:  # over to the line-up point at the cabinet's height
            target = np.array([line_up[0], line_up[1], self.SAFE_Z])
        return toward(ee, target, 1.0)
