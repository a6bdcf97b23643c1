"""Insert a peg hanging on a string into a cup (green, yellow, blue): the paper's robot tasks (a)-(c).

The gripper holds the end of a string, fixed closed (action[3] is ignored); the string is a chain of two 3 cm
ball-jointed links with the peg (2 cm thick, 5 cm long) as the last link, 11 cm from the fingertips to the peg's
tip. The cup (inner radius 3.5 cm, 7 cm tall) stands on the table; each variant has its colour and its own
region of the table (green on the robot's left, yellow in the middle, blue on its right), the cup drawn within
±4 cm of the region's centre, the arm's start within a box in front of the robot, both from the reset seed.

State: achieved = the peg's tip, goal = the middle of the cup's floor. Success (judged at the episode's last
step): the tip inside the cup's inner radius and at least 3 cm below its rim. Horizon 30 (the authors' robot).
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

CUP = scene.CupSize(radius=0.035, height=0.07)
STRING_LINKS, LINK_LEN = 2, 0.03
PEG_RADIUS, PEG_LEN = 0.01, 0.05
HANG = STRING_LINKS * LINK_LEN + PEG_LEN  # fingertips (grasp site) to the peg's tip when it hangs still
STRING_DAMPING = 0.0008  # N·m·s per ball joint: a swing dies out in about a second
INSERT_DEPTH = 0.03  # the tip must be this far below the rim
GOAL_Z = TABLE_TOP_Z + CUP.base  # the floor's top
RIM_Z = TABLE_TOP_Z + CUP.height


@dataclass(frozen=True)
class PegDef(XarmTaskDef):
    colour: str = ""
    rgba: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    cup_xy: tuple[float, float] = (1.6, 0.3)  # centre of the cup's placement region


WORKSPACE = ((1.28, 0.05, 0.66), (1.75, 0.55, 0.85))
VARIANTS = tuple(
    PegDef(
        f"peg-{colour}",
        task_id,
        "peg",
        f"insert the peg hanging on a string into the {colour} cup",
        horizon=30,
        workspace=WORKSPACE,
        colour=colour,
        rgba=rgba,
        cup_xy=xy,
    )
    for task_id, colour, rgba, xy in (
        (2, "green", (0.15, 0.65, 0.2, 1.0), (1.58, 0.45)),
        (3, "yellow", (0.95, 0.8, 0.1, 1.0), (1.62, 0.30)),
        (4, "blue", (0.15, 0.3, 0.85, 1.0), (1.58, 0.15)),
    )
)


class PegTask(SceneTask):
    """Insert a peg hanging on a string into a cup."""

    definition: PegDef = VARIANTS[0]
    fixed_gripper = 1.0
    START_LOW = np.array([1.33, 0.24, 0.76])
    START_HIGH = np.array([1.43, 0.36, 0.80])
    CUP_JITTER = 0.04
    TRAVEL_CLEARANCE = 0.03  # the expert carries the tip this far above the rim
    ALIGN_M = 0.012  # the expert lowers only once the tip hangs this close to the cup's axis (and the hand 1 cm)

    def _add_objects(self, spec: mujoco.MjSpec) -> None:
        scene.add_table_cup(spec, "cup", CUP, list(self.definition.rgba), scene.PEG_BITS)
        scene.add_string_peg(spec, STRING_LINKS, LINK_LEN, PEG_RADIUS, PEG_LEN, STRING_DAMPING)

    def _place(self, rng: np.random.Generator) -> np.ndarray:
        cup = np.array(self.definition.cup_xy) + rng.uniform(-self.CUP_JITTER, self.CUP_JITTER, size=2)
        scene.place_static(self.arm.model, "cup", [cup[0], cup[1], TABLE_TOP_Z])
        self.goal_pos = np.array([cup[0], cup[1], GOAL_Z])
        return rng.uniform(self.START_LOW, self.START_HIGH)

    def achieved(self) -> np.ndarray:
        return self.site("peg_tip")

    def distance(self) -> float:
        return float(np.linalg.norm(self.achieved() - self.goal_pos))

    def _success(self) -> bool:
        tip = self.achieved()
        inside = np.linalg.norm(tip[:2] - self.goal_pos[:2]) < CUP.radius
        return bool(inside and tip[2] < RIM_Z - INSERT_DEPTH)

    def scripted_action(self, step: Any) -> np.ndarray:
        """Carry the peg over the cup with its tip above the rim, wait until it hangs over the opening, lower it
        to 1 cm above the floor (from `step.state` alone: the tip's position shows the swing)."""
        ee, _tool, tip, goal = self._from_state(step)
        rim = goal[2] - CUP.base + CUP.height
        travel_z = rim + self.TRAVEL_CLEARANCE + HANG
        over = np.array([goal[0], goal[1], travel_z])
        tip_off = np.linalg.norm(tip[:2] - goal[:2])
        if tip[2] < rim:  # inside the cup: keep the hand over its axis and go down
            target = np.array([goal[0], goal[1], goal[2] + 0.01 + HANG])
        elif np.linalg.norm(ee[:2] - goal[:2]) < 0.01 and (
            tip_off < self.ALIGN_M or (ee[2] < travel_z - 0.005 and tip_off < 2 * self.ALIGN_M)
        ):
            # hanging over the opening (once on the way down, a little swing does not send it back up)
            target = np.array([goal[0], goal[1], goal[2] + 0.01 + HANG])
        elif tip[2] < rim + 0.01 and tip_off > CUP.radius - PEG_RADIUS:  # too low beside the cup: up first
            target = np.array([ee[0], ee[1], travel_z])
        else:
            target = over
        return toward(ee, target, 1.0)
