"""xArm tasks in MuJoCo: the robot stand-in for the ROS graphs, behind the common task interface.

Actions follow the authors' real-robot rule (Table IV: action repeat 1, n-step 1): a 4-D action in [-1, 1], the
first three Δxyz scaled to at most 2.5 cm per step and the commanded position clipped to the task's workspace box,
the fourth the task's one extra actuator: the gripper (-1 open, +1 closed) unless the task holds a tool with the
gripper fixed closed (polytask.sim.xarm_tasks: the peg's string, the hook, the pour cup, whose tilt it drives).
Pixels come from the fixed camera `camera0`; the state vector of EVERY xArm task is (`xarm_state`)

    [ee xyz (3), tool (1), achieved xyz (3), goal xyz (3)]   (10-D, positions in metres from TABLE_CENTRE)

where "tool" is what action[3] drives, measured in 0..1 (gripper closure; the cup's tilt when pouring) and
"achieved" is the point that must reach the goal: the end effector for reach, the block for push (the peg's tip,
the grains' centroid, the lid's handle, the drawer's handle for the other tasks). One layout for every xArm task
lets one state policy serve all of them. Goal placement (and the objects') is drawn at every reset from the seed,
so demonstrations differ and behaviour cloning cannot degenerate into replay.

The scripted experts read `step.state` alone, never the simulator: the policy server (`scripted:xarm/<task>`) and
offline relabelling hand them states that came from another process or from a stored episode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import mujoco
import numpy as np

from polytask.sim.registry import register
from polytask.sim.task import Task, TaskSpec
from polytask.sim.xarm_arm import CAMERA, HOME, TABLE_TOP_Z, WORKSPACE_HIGH, WORKSPACE_LOW, SimArm, action_to_delta

HORIZON = 50
STATE_DIM = 10
ACTION_DIM = 4
TABLE_CENTRE = np.array([1.655, 0.30, TABLE_TOP_Z])  # state coordinates are relative to this point
BLOCK_HALF = 0.024  # push.xml's cube half-size

REACH_SUCCESS_M = 0.03  # end effector within 3 cm of the target sphere
PUSH_SUCCESS_M = 0.05  # block centre within 5 cm (in xy) of the goal disc's centre (the disc's radius is 4.75 cm)


Box3 = tuple[tuple[float, float, float], tuple[float, float, float]]


@dataclass(frozen=True)
class XarmTaskDef:
    """What distinguishes one registered xArm task from another of the same class: data, not code."""

    name: str
    task_id: int
    scene: str
    language: str
    horizon: int = HORIZON
    workspace: Box3 = (tuple(WORKSPACE_LOW), tuple(WORKSPACE_HIGH))  # (low, high) end-effector box, metres


class XarmState(NamedTuple):
    """A decoded xArm state, positions in the simulator's world frame (metres)."""

    ee: np.ndarray
    tool: float
    achieved: np.ndarray
    goal: np.ndarray


def xarm_state(ee_xyz: np.ndarray, tool: float, achieved_xyz: np.ndarray, goal_xyz: np.ndarray) -> np.ndarray:
    """The one xArm state layout (10-D float32) from world-frame readings: the end effector (an arm reading's
    ee_xyz), the tool reading in 0..1 (its gripper closure, or a task's own actuator), the achieved point and the
    goal. Every xArm task builds its state here, and so should anything that records xArm episodes."""
    parts = [np.asarray(ee_xyz, dtype=np.float64).reshape(-1), np.asarray([tool], dtype=np.float64).reshape(-1),
             np.asarray(achieved_xyz, dtype=np.float64).reshape(-1), np.asarray(goal_xyz, dtype=np.float64).reshape(-1)]
    if [p.shape[0] for p in parts] != [3, 1, 3, 3] or not all(np.all(np.isfinite(p)) for p in parts):
        raise ValueError(f"xarm_state: expected finite ee xyz, tool, achieved xyz, goal xyz; got "
                         f"{[p.tolist() for p in parts]}")
    ee, tool_v, achieved, goal = parts
    return np.concatenate([ee - TABLE_CENTRE, tool_v, achieved - TABLE_CENTRE, goal - TABLE_CENTRE]).astype(np.float32)


def decode_xarm_state(state: Any, who: str = "xarm") -> XarmState:
    """Inverse of `xarm_state`; refuses anything but a finite 10-D vector."""
    arr = np.asarray(state if state is not None else [], dtype=np.float64).reshape(-1)
    if arr.shape[0] != STATE_DIM or not np.all(np.isfinite(arr)):
        raise ValueError(f"{who}: needs a finite {STATE_DIM}-D state [ee xyz, tool, achieved xyz, goal xyz], got "
                         f"{arr.shape[0]} values {arr.tolist()}")
    return XarmState(arr[0:3] + TABLE_CENTRE, float(arr[3]), arr[4:7] + TABLE_CENTRE, arr[7:10] + TABLE_CENTRE)


TASKS = (
    XarmTaskDef("reach", 0, "reach", "move the gripper to the red target"),
    XarmTaskDef("push", 1, "push", "push the block onto the red target"),
)


class XarmTask(Task):
    """Shared body of the xArm tasks: scaling/clamping of actions, the state layout, goal site, rendering.

    A class serves one or more registered tasks: each instance gets its `XarmTaskDef` (name, id, horizon,
    workspace, and whatever variant data a subclass's definition carries)."""

    definition: XarmTaskDef
    success_threshold: float  # metres; `distance()` below it is a success (unless `_success` says otherwise)

    def __init__(self, render: bool = True, quality: str = "fast", camera: str = CAMERA,
                 definition: XarmTaskDef | None = None) -> None:
        d = self.definition = definition if definition is not None else type(self).definition
        spec = TaskSpec(name=f"xarm/{d.name}", suite="xarm", task_id=d.task_id, state_dim=STATE_DIM,
                        action_dim=ACTION_DIM, horizon=d.horizon, action_repeat=1, n_step=1, language=d.language)
        super().__init__(spec, render=render)
        self.arm = self._build_arm(quality)
        self.camera = camera
        if mujoco.mj_name2id(self.arm.model, mujoco.mjtObj.mjOBJ_CAMERA, camera) < 0:
            raise ValueError(f"task {spec.name}: no camera {camera!r} in the xArm scene")
        self._goal_site = self.arm.model.site("target0").id
        self._rng = np.random.default_rng()
        self.goal_pos = np.zeros(3)
        self._last_success = False

    # --- what subclasses define ----------------------------------------------------------------------
    def _build_arm(self, quality: str) -> SimArm:
        """The simulated arm with this task's scene (default: a gym-xarm scene as shipped)."""
        d = self.definition
        return SimArm(d.scene, quality=quality, workspace=(np.array(d.workspace[0]), np.array(d.workspace[1])))

    def _place(self, rng: np.random.Generator) -> np.ndarray:
        """Place goal (and objects) for a new episode; return the end effector's start position."""
        raise NotImplementedError

    def achieved(self) -> np.ndarray:
        raise NotImplementedError

    def distance(self) -> float:
        raise NotImplementedError

    # --- Task primitives -----------------------------------------------------------------------------
    def _reset(self, seed: int | None) -> np.ndarray:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._last_success = False
        start = self._place(self._rng)
        self.arm.model.site_pos[self._goal_site] = self.goal_pos
        self.arm.reset(start=start, gripper=self._start_gripper(), objects=self._objects())
        self._after_reset(self._rng)
        return self._state()

    def _after_reset(self, rng: np.random.Generator) -> None:
        """Set what must be set once the arm stands at its start (a drawer's opening, grains in a held cup)."""

    def _start_gripper(self) -> float:
        return -1.0

    def _objects(self) -> dict[str, np.ndarray]:
        """Free bodies to place (joint name -> xyz) before the arm settles at its start pose."""
        return {}

    def _step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.arm.move(action_to_delta(action), gripper=self._tool_command(float(action[3])))
        dist = self.distance()
        self._last_success = success = self._success()
        return self._state(), self._reward(dist), success, False, {"distance": dist}

    def _tool_command(self, command: float) -> float:
        """Act on action[3]; return the gripper command (default: action[3] IS the gripper command)."""
        return command

    def tool_reading(self) -> float:
        """State slot 3, in 0..1: what action[3] drives (default: the gripper's closure)."""
        return self.arm.gripper_closure()

    def _success(self) -> bool:
        return self.distance() < self.success_threshold

    def is_success(self) -> bool:
        """The task's success rule on the current simulator state (what `score` judges at the last step)."""
        return self._success()

    def _reward(self, dist: float) -> float:
        return -dist

    def _render(self) -> np.ndarray:
        return self.arm.render(self.camera, self.spec.image_size)

    def _state(self) -> np.ndarray:
        return xarm_state(self.arm.ee_position(), self.tool_reading(), self.achieved(), self.goal_pos)

    def _from_state(self, step: Any) -> XarmState:
        """(ee, tool, achieved, goal) in the simulator's frame, decoded from `step.state` (10-D)."""
        return decode_xarm_state(getattr(step, "state", None), who=f"{self.spec.name}: scripted_action")

    def score(self) -> float:
        """1.0 when the episode's latest step is a success (the target reached or the block resting on the goal
        at the end), not when it merely passed through the goal on the way: a robot is judged where it stops."""
        return float(self._last_success)

    def close(self) -> None:
        self.arm.close()


class XarmReach(XarmTask):
    """Move the end effector to a target sphere drawn in the air above the table."""

    definition = TASKS[0]
    success_threshold = REACH_SUCCESS_M
    TARGET_LOW = np.array([1.35, 0.10, 0.60])
    TARGET_HIGH = np.array([1.70, 0.50, 0.80])

    def __init__(self, render: bool = True, quality: str = "fast", camera: str = CAMERA,
                 definition: XarmTaskDef | None = None) -> None:
        super().__init__(render=render, quality=quality, camera=camera, definition=definition)
        # reach.xml's target is a flat disc on the table; a sphere shows a target in the air.
        self.arm.model.site_type[self._goal_site] = mujoco.mjtGeom.mjGEOM_SPHERE
        self.arm.model.site_size[self._goal_site] = [0.02, 0.02, 0.02]

    def _place(self, rng: np.random.Generator) -> np.ndarray:
        start = HOME + rng.uniform(-0.05, 0.05, size=3)
        while True:  # a target at least 10 cm away, so no episode starts solved
            self.goal_pos = rng.uniform(self.TARGET_LOW, self.TARGET_HIGH)
            if np.linalg.norm(self.goal_pos - start) > 0.10:
                return start

    def achieved(self) -> np.ndarray:
        return self.arm.ee_position()

    def distance(self) -> float:
        return float(np.linalg.norm(self.arm.ee_position() - self.goal_pos))

    def scripted_action(self, step: Any) -> np.ndarray:
        """Straight to the target, full speed far away, proportional when within one step (from `step.state`)."""
        ee, _gripper, _achieved, goal = self._from_state(step)
        delta = goal - ee
        return np.append(np.clip(delta / 0.025, -1.0, 1.0), -1.0).astype(np.float32)


class XarmPush(XarmTask):
    """Push a 4.8 cm block across the table onto a goal disc, with the gripper closed as a paddle."""

    definition = TASKS[1]
    success_threshold = PUSH_SUCCESS_M
    BLOCK_LOW = np.array([1.42, 0.15])
    BLOCK_HIGH = np.array([1.65, 0.45])
    GOAL_LOW = np.array([1.36, 0.08])
    GOAL_HIGH = np.array([1.72, 0.52])
    PUSH_Z = 0.575  # grasp-site height while pushing: fingertips ~2.5 cm above the table, below the block top
    TRAVEL_Z = 0.65  # height for moving over the block
    BEHIND_M = 0.055  # pusher stand-off behind the block centre along the push direction
    HOLD_M = 0.015  # the scripted pusher stops once the block is this close to the goal

    def __init__(self, render: bool = True, quality: str = "fast", camera: str = CAMERA,
                 definition: XarmTaskDef | None = None) -> None:
        super().__init__(render=render, quality=quality, camera=camera, definition=definition)
        self.arm.model.site_pos[self._goal_site][2] = TABLE_TOP_Z + 0.001

    def _start_gripper(self) -> float:
        return 1.0

    def _place(self, rng: np.random.Generator) -> np.ndarray:
        start = HOME + rng.uniform(-0.04, 0.04, size=3)
        while True:
            block = rng.uniform(self.BLOCK_LOW, self.BLOCK_HIGH)
            angle = rng.uniform(-np.pi, np.pi)
            goal = block + rng.uniform(0.10, 0.18) * np.array([np.cos(angle), np.sin(angle)])
            behind = block - (goal - block) / np.linalg.norm(goal - block) * (self.BEHIND_M + 0.02)
            if (np.all(goal >= self.GOAL_LOW) and np.all(goal <= self.GOAL_HIGH)
                    and np.all(behind >= WORKSPACE_LOW[:2]) and np.all(behind <= WORKSPACE_HIGH[:2])
                    and np.linalg.norm(block - start[:2]) > 0.06):
                break
        self.goal_pos = np.array([goal[0], goal[1], TABLE_TOP_Z + 0.001])
        self._block_start = np.array([block[0], block[1], TABLE_TOP_Z + BLOCK_HALF])
        return start

    def _objects(self) -> dict[str, np.ndarray]:
        return {"object_joint0": self._block_start}

    def block_position(self) -> np.ndarray:
        return self.arm.body_position("object")

    def achieved(self) -> np.ndarray:
        return self.block_position()

    def distance(self) -> float:
        return float(np.linalg.norm(self.block_position()[:2] - self.goal_pos[:2]))

    def _reward(self, dist: float) -> float:
        reach = np.linalg.norm(self.arm.ee_position()[:2] - self.block_position()[:2])
        return -dist - 0.1 * float(reach)

    def scripted_action(self, step: Any) -> np.ndarray:
        """Get behind the block on the block->goal line (over the top if needed), descend, push along the line.

        Closed loop on the block's position in `step.state`, so a block that slides sideways is re-aimed each step.
        """
        ee, _gripper, block_xyz, goal_xyz = self._from_state(step)
        block = block_xyz[:2]
        to_goal = goal_xyz[:2] - block
        dist = np.linalg.norm(to_goal)
        u = to_goal / max(dist, 1e-6)
        rel = ee[:2] - block
        along = float(rel @ u)  # negative: behind the block
        lateral = rel - along * u
        behind = block - u * self.BEHIND_M
        aligned = along < -0.02 and np.linalg.norm(lateral) < 0.015
        low = ee[2] < self.PUSH_Z + 0.015
        if dist < self.HOLD_M:  # on the goal: hold still rather than dither around it
            target = ee
        elif aligned and low:  # push: aim through the block, correcting sideways drift
            remaining = min(dist, 0.025)
            target_xy = behind + u * (remaining + 0.01)
            target = np.array([*target_xy, self.PUSH_Z])
        elif np.linalg.norm(ee[:2] - behind) < 0.012:  # above the stand-off point: go down
            target = np.array([*behind, self.PUSH_Z])
        elif ee[2] < self.TRAVEL_Z - 0.01 and np.linalg.norm(rel) < 0.09:  # beside the block: lift first
            target = np.array([ee[0], ee[1], self.TRAVEL_Z])
        else:  # travel over to the stand-off point
            target = np.array([*behind, self.TRAVEL_Z])
        delta = target - ee
        return np.append(np.clip(delta / 0.025, -1.0, 1.0), 1.0).astype(np.float32)


def xarm_factory(cls: type[XarmTask], definition: XarmTaskDef | None = None):
    """The registry factory of one xArm task: `cls` built with `definition` (default: the class's own)."""
    d = definition if definition is not None else cls.definition

    def make(render: bool = True, quality: str = "fast", **options: Any) -> XarmTask:
        unknown = set(options) - {"camera"}
        if unknown:
            raise TypeError(f"task xarm/{d.name}: unknown option(s) {sorted(unknown)}; expected only 'camera'")
        return cls(render=render, quality=quality, definition=d, **options)

    return make


for _cls in (XarmReach, XarmPush):
    register(f"xarm/{_cls.definition.name}", xarm_factory(_cls), _cls.__doc__.splitlines()[0])
