"""Open a box's lid by lifting its handle (left, right): the paper's robot tasks (g)-(h).

The box (14 cm deep, 18 cm wide, 8 cm tall) stands on the table with its lid hinged along the back edge (away from
the robot); a handle sticks out 3.5 cm in front of the lid. The gripper holds an L-shaped hook, fixed closed
(action[3] is ignored): a down-pointing gripper cannot get under a handle, its own fingers are in the way, so the
hook's toe (4 cm, pointing away from the robot, 5 cm below the fingertips) goes under it and lifts. The lid can
open to 115°, past vertical, where it rests on its stop; short of vertical it falls back shut. The variants put
the box on the robot's left or right (±3 cm around the region's centre); the arm starts in front of it.

State: achieved = the handle's front end, goal = where it is with the lid resting fully open. Success (judged at
the episode's last step): the lid open at least 75°. Horizon 40 (the authors' robot).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np

from polytask.sim.xarm_arm import TABLE_TOP_Z
from polytask.sim.xarm_suite import XarmTaskDef
from polytask.sim.xarm_tasks import scene
from polytask.sim.xarm_tasks.common import SceneTask, toward

SIZE = scene.BoxSize(depth=0.14, width=0.18, height=0.08)
HOOK_DROP, HOOK_TOE, HOOK_RADIUS = 0.05, 0.04, 0.005
OPEN_RAD = math.radians(115)  # the lid's upper stop: where an opened lid rests
SUCCESS_RAD = math.radians(75)
HANDLE_R = SIZE.depth + SIZE.handle_out  # hinge to the handle's front end (the `box_handle` site), in the lid
HANDLE_UP = SIZE.handle_thick / 2  # the site's height above the lid's underside
SITE_ANGLE = math.atan2(HANDLE_UP, HANDLE_R)  # the site's angle above the lid's plane, seen from the hinge


@dataclass(frozen=True)
class BoxDef(XarmTaskDef):
    hinge_xy: tuple[float, float] = (1.70, 0.30)  # centre of the hinge line's placement region


WORKSPACE = ((1.28, 0.05, 0.64), (1.78, 0.55, 0.85))
VARIANTS = (
    BoxDef(
        "box-open-left",
        7,
        "box",
        "open the lid of the box on the left",
        horizon=40,
        workspace=WORKSPACE,
        hinge_xy=(1.70, 0.44),
    ),
    BoxDef(
        "box-open-right",
        8,
        "box",
        "open the lid of the box on the right",
        horizon=40,
        workspace=WORKSPACE,
        hinge_xy=(1.70, 0.16),
    ),
)


def handle_site(hinge: np.ndarray, angle: float) -> np.ndarray:
    """World position of the handle's front end with the lid open by `angle` (radians) about the hinge."""
    return hinge + np.array(
        [
            -HANDLE_R * math.cos(angle) + HANDLE_UP * math.sin(angle),
            0.0,
            HANDLE_R * math.sin(angle) + HANDLE_UP * math.cos(angle),
        ]
    )


def lid_angle(hinge: np.ndarray, handle: np.ndarray) -> float:
    """Inverse of `handle_site`: the lid's opening angle from the handle's position."""
    v = handle - hinge
    return math.atan2(v[2], -v[0]) - SITE_ANGLE


class BoxTask(SceneTask):
    """Open a box's lid by lifting its handle with a hook."""

    definition: BoxDef = VARIANTS[0]
    fixed_gripper = 1.0
    START_LOW = np.array([1.34, 0.24, 0.72])
    START_HIGH = np.array([1.42, 0.36, 0.78])
    JITTER = 0.03
    LIFT_R = SIZE.depth + 0.012  # the expert lifts with the toe's tip this far from the hinge
    LEAD_RAD = 0.2  # and aims this far ahead of the lid's angle
    DONE_RAD = math.radians(100)  # past vertical: the lid falls open onto its stop

    def _add_objects(self, spec: mujoco.MjSpec) -> None:
        scene.add_box(spec, SIZE, [0.6, 0.45, 0.3, 1.0], [0.7, 0.55, 0.35, 1.0])
        scene.add_hook(spec, HOOK_DROP, HOOK_TOE, HOOK_RADIUS)

    def _place(self, rng: np.random.Generator) -> np.ndarray:
        hinge_xy = np.array(self.definition.hinge_xy) + rng.uniform(-self.JITTER, self.JITTER, size=2)
        self._hinge = np.array([hinge_xy[0], hinge_xy[1], TABLE_TOP_Z + SIZE.height])
        scene.place_static(self.arm.model, "box", self._hinge)
        self.goal_pos = handle_site(self._hinge, OPEN_RAD)
        return rng.uniform(self.START_LOW, self.START_HIGH)

    def achieved(self) -> np.ndarray:
        return self.site("box_handle")

    def lid_angle(self) -> float:
        return self.arm.joint_position("box_lid")

    def distance(self) -> float:
        return float(np.linalg.norm(self.achieved() - self.goal_pos))

    def _success(self) -> bool:
        return self.lid_angle() >= SUCCESS_RAD

    def scripted_action(self, step: Any) -> np.ndarray:
        """Line the hook up in front of the handle, slide its toe under it, then lift along the lid's arc (aiming
        a little ahead of the lid's angle, read from the handle's position) until the lid is past vertical.
        From `step.state` alone: the hinge is the goal minus the open lid's handle offset."""
        ee, _tool, handle, goal = self._from_state(step)
        hinge = goal - (handle_site(np.zeros(3), OPEN_RAD))
        angle = lid_angle(hinge, handle)
        front = hinge[0] - SIZE.depth
        tip_offset = np.array([HOOK_TOE, 0.0, -HOOK_DROP])  # toe tip relative to the fingertips
        hook_z = hinge[2] - 0.004 - HOOK_RADIUS + HOOK_DROP  # toe's top 4 mm under the handle
        under = np.array([hinge[0] - self.LIFT_R - HOOK_TOE, handle[1], hook_z])
        ready = np.array([front - SIZE.handle_out - 0.01 - HOOK_TOE, handle[1], hook_z])
        if angle >= self.DONE_RAD:
            target = ee
        elif angle > math.radians(3) or (ee[0] > under[0] - 0.006 and abs(ee[2] - hook_z) < 0.01):  # lift
            a = angle + self.LEAD_RAD
            normal = np.array([math.sin(a), 0.0, math.cos(a)])  # the lid's up direction at that angle
            tip = hinge + self.LIFT_R * np.array([-math.cos(a), 0.0, math.sin(a)]) - (HOOK_RADIUS + 0.002) * normal
            target = tip - tip_offset
            target[1] = handle[1]
        elif ee[0] > ready[0] - 0.01 and abs(ee[2] - hook_z) < 0.01 and abs(ee[1] - handle[1]) < 0.015:
            target = under  # slide the toe under the handle
        else:
            target = ready
        return toward(ee, target, 1.0)
