"""Pour grains from a held cup into a cup on the table (two positions): the paper's robot tasks (e)-(f).

The gripper holds a cup (inner radius 2.5 cm, 6 cm deep) by its rim, fixed closed; the cup hangs on a hinge
along x through the centre of its mouth (the real robot pitches its wrist), driven by a position servo:
action[3] = -1 upright .. +1 tipped 135° with the mouth towards +y, and state[3] reads the tilt in 0..1. Ten
grains (1.2 cm spheres) start in the held cup. The target cup (inner radius 4.5 cm, 6 cm tall) stands on the
robot's left or right (position 1 / 2 of the paper: ±3 cm around the region's centre). The workspace's floor
keeps the held cup above the target's rim, as the authors' per-task box did.

State: achieved = the grains' centroid, goal = the middle of the target cup's floor (2 cm up). Success (judged
at the episode's last step): at least 7 of the 10 grains inside the target cup (within its inner radius, below
its rim). Horizon 30 (the authors' robot).
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

HELD = scene.CupSize(radius=0.025, height=0.06)
TARGET = scene.CupSize(radius=0.045, height=0.06)
TILT_MAX = np.radians(135)
GRAINS, GRAIN_R = 10, 0.006
GRAINS_NEEDED = 7
MOUTH_BELOW_EE = 0.01  # the hinge axis (the mouth's centre) below the grasp site
GOAL_UP = 0.02


@dataclass(frozen=True)
class PourDef(XarmTaskDef):
    cup_xy: tuple[float, float] = (1.58, 0.30)  # centre of the target cup's placement region


WORKSPACE = ((1.28, 0.05, 0.69), (1.75, 0.55, 0.82))
VARIANTS = (
    PourDef(
        "pour-left",
        5,
        "pour",
        "pour the grains into the cup on the left",
        horizon=30,
        workspace=WORKSPACE,
        cup_xy=(1.58, 0.42),
    ),
    PourDef(
        "pour-right",
        6,
        "pour",
        "pour the grains into the cup on the right",
        horizon=30,
        workspace=WORKSPACE,
        cup_xy=(1.58, 0.18),
    ),
)


class PourTask(SceneTask):
    """Pour grains from a held cup into a cup on the table."""

    definition: PourDef = VARIANTS[0]
    fixed_gripper = 1.0
    START_LOW = np.array([1.34, 0.24, 0.70])
    START_HIGH = np.array([1.42, 0.36, 0.75])
    JITTER = 0.03
    POUR_Z = 0.70  # the expert pours from here: the held cup's floor 8 cm above the target's rim
    POUR_OFFSET_Y = -0.015  # the mouth's lip, where grains leave, is on the +y side of the hinge

    def _add_objects(self, spec: mujoco.MjSpec) -> None:
        scene.add_table_cup(spec, "target_cup", TARGET, [0.85, 0.35, 0.3, 1.0], scene.GRAIN_BITS)
        scene.add_held_cup(spec, HELD, [0.3, 0.55, 0.8, 1.0], float(TILT_MAX))
        scene.add_grains(spec, GRAINS, GRAIN_R)

    def _build_arm(self, quality: str):
        arm = super()._build_arm(quality)
        self._grain_bodies = [arm.model.body(f"grain{i}").id for i in range(GRAINS)]
        return arm

    def _place(self, rng: np.random.Generator) -> np.ndarray:
        cup = np.array(self.definition.cup_xy) + rng.uniform(-self.JITTER, self.JITTER, size=2)
        scene.place_static(self.arm.model, "target_cup", [cup[0], cup[1], TABLE_TOP_Z])
        self._cup_xy = cup
        self.goal_pos = np.array([cup[0], cup[1], TABLE_TOP_Z + TARGET.base + GOAL_UP])
        self.arm.set_ctrl("cup_tilt", 0.0)
        return rng.uniform(self.START_LOW, self.START_HIGH)

    def _after_reset(self, rng: np.random.Generator) -> None:
        """Fill the held cup where the arm now stands (3x3 on the floor, one on top) and let the grains settle."""
        floor = self.arm.data.body("held_cup_body").xpos
        offsets = [(dx, dy, 0.0) for dx in (-0.012, 0.0, 0.012) for dy in (-0.012, 0.0, 0.012)] + [(0.0, 0.0, 0.0125)]
        for i, (dx, dy, dz) in enumerate(offsets[:GRAINS]):
            pos = floor + np.array([dx, dy, HELD.base + GRAIN_R + 0.001 + dz])
            self.arm.place_free_body(f"grain{i}_free", pos)
        for _ in range(3):
            self.arm.move(np.zeros(3))

    def _tool_command(self, command: float) -> float:
        self.arm.set_ctrl("cup_tilt", (np.clip(command, -1.0, 1.0) + 1.0) / 2.0 * TILT_MAX)
        return 1.0

    def tool_reading(self) -> float:
        return float(np.clip(self.arm.joint_position("cup_tilt") / TILT_MAX, 0.0, 1.0))

    def grains(self) -> np.ndarray:
        return self.arm.data.xpos[self._grain_bodies].copy()

    def grains_in_cup(self) -> int:
        g = self.grains()
        inside = np.linalg.norm(g[:, :2] - self._cup_xy, axis=1) < TARGET.radius
        below_rim = (g[:, 2] < TABLE_TOP_Z + TARGET.height) & (g[:, 2] > TABLE_TOP_Z)
        return int(np.sum(inside & below_rim))

    def achieved(self) -> np.ndarray:
        return self.grains().mean(axis=0)

    def distance(self) -> float:
        return float(np.linalg.norm(self.achieved() - self.goal_pos))

    def _success(self) -> bool:
        return self.grains_in_cup() >= GRAINS_NEEDED

    def scripted_action(self, step: Any) -> np.ndarray:
        """Carry the cup upright to just beside the target's axis (the lip is on the +y side), then tip it fully
        and hold (from `step.state` alone)."""
        ee, tilt, _grains, goal = self._from_state(step)
        pour_at = np.array([goal[0], goal[1] + self.POUR_OFFSET_Y, self.POUR_Z])
        there = np.linalg.norm(ee[:2] - pour_at[:2]) < 0.01
        tipping = tilt > 0.35  # well past what a noisy "upright" command tilts it (demos with action noise)
        return toward(ee, pour_at, 1.0 if (there or tipping) else -1.0)
