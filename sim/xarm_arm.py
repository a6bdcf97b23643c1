"""A simulated xArm7 with gripper in MuJoCo: the robot stand-in behind the xArm tasks and the driver node.

The model is the Apache-2.0 xArm7 MJCF shipped by the PyPI package `gym-xarm` (installed without its
dependencies, because its own env pins mujoco<3). We load the XML and meshes from the installed package at run
time and never import its env. The end effector is driven like the real arm in servo-Cartesian mode: a mocap body
welded to the last link follows a commanded position with the gripper pointing down, so a caller only ever sends
Δxyz in metres (plus a gripper command) — the same contract the ROS driver has with the real SDK.

Units: metres, world frame of the MJCF (the table top is at z = TABLE_TOP_Z). `move` clamps the commanded
position to the arm's workspace box (`WORKSPACE_LOW`/`WORKSPACE_HIGH` unless a task gives its own); scaling a
[-1, 1] policy action to metres is the caller's job (`action_to_delta`, used by the xArm tasks and the driver,
keeps that rule in one place).
"""

from __future__ import annotations

import atexit
import importlib.util
import weakref
from pathlib import Path

import mujoco
import numpy as np

from polytask.sim.mujoco_render import apply_render_quality

SCENES = ("reach", "push")  # gym-xarm asset files: reach.xml (target site only), push.xml (+ a free 4.8 cm cube)
CAMERA = "camera0"  # fixed camera of the gym-xarm scenes, looking at the table from the robot's side

# The xArm7 joints as xarm_ros2 names them; "drive_joint" is the gripper's (0 open .. 0.85 closed, radians).
ARM_JOINTS = ("joint1", "joint2", "joint3", "joint4", "joint5", "joint6", "joint7")
GRIPPER_JOINT = "drive_joint"
GRIPPER_CLOSED_RAD = 0.85

TABLE_TOP_Z = 0.5425  # table0 box: centre z 0.3425 + half-height 0.2
# Box the end effector (the "grasp" site between the fingers) may be commanded into, world frame, metres. It
# covers the half of the table in front of the robot; the low z keeps the fingertips ~1 cm above the table.
WORKSPACE_LOW = np.array([1.25, 0.00, 0.575])
WORKSPACE_HIGH = np.array([1.80, 0.60, 0.85])
HOME = np.array([1.35, 0.30, 0.70])  # end-effector position after reset (before any per-episode offset)

MAX_STEP_M = 0.025  # the authors' robot rule: a [-1, 1] action moves at most 2.5 cm per step
SUBSTEPS = 50  # physics steps (2 ms each) per move: 0.1 s, long enough for the weld to follow a 2.5 cm step
MAX_LAG_M = 0.05  # the commanded target never runs further than this ahead of the real end effector
# What a reset restores: positions and velocities, and the solver's warm start, controls and mocap target too, so
# an episode does not depend on the episodes an instance ran before (the same seed, the same episode bit for bit)
RESET_STATE = mujoco.mjtState.mjSTATE_INTEGRATION
_DOWN = np.array([0.0, 1.0, 0.0, 0.0])  # mocap orientation: gripper pointing down (gym-xarm's default)


def action_to_delta(action: np.ndarray, max_step_m: float = MAX_STEP_M) -> np.ndarray:
    """Map a policy action's xyz part in [-1, 1] to a displacement in metres (at most `max_step_m` per axis)."""
    arr = np.asarray(action, dtype=np.float64).reshape(-1)
    if arr.shape[0] < 3 or not np.all(np.isfinite(arr[:3])):
        raise ValueError(f"action_to_delta: expected >= 3 finite values (dx, dy, dz), got {arr.tolist()}")
    return np.clip(arr[:3], -1.0, 1.0) * max_step_m


def asset_path(scene: str) -> Path:
    """Path of a gym-xarm scene XML inside the installed package (its includes and meshes resolve beside it)."""
    if scene not in SCENES:
        raise ValueError(f"xArm scene {scene!r} unknown; expected one of {SCENES}")
    # find_spec locates the installed package WITHOUT executing its __init__ (which imports gymnasium and
    # registers gym-xarm's own env); we only want its data files.
    spec = importlib.util.find_spec("gym_xarm")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the xArm model comes from the PyPI package gym-xarm (install it with --no-deps: "
                           "pip install --no-deps gym-xarm==0.1.1)")
    root = Path(next(iter(spec.submodule_search_locations))) / "tasks" / "assets"
    path = root / f"{scene}.xml"
    if not path.is_file():
        raise RuntimeError(f"gym-xarm is installed but has no asset {path}; expected gym-xarm==0.1.1")
    return path


def _close_renderer(ref: weakref.ref) -> None:
    renderer = ref()
    if renderer is not None:
        renderer.close()


class SimArm:
    """An xArm7 + gripper on a table, moved by Cartesian deltas. No ROS, no policy: just the arm.

    Typical use: `arm = SimArm("push"); arm.reset(seed=0); arm.move([0.01, 0, 0], gripper=1.0)`.
    A task with its own objects passes the compiled `model` (built on a gym-xarm scene, see
    polytask.sim.xarm_tasks.scene) and its own `workspace` box (low, high) in metres; `scene` is then a label.
    """

    def __init__(self, scene: str = "reach", quality: str = "fast", model: mujoco.MjModel | None = None,
                 workspace: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        self.scene = scene
        self.model = model if model is not None else mujoco.MjModel.from_xml_path(str(asset_path(scene)))
        low, high = workspace if workspace is not None else (WORKSPACE_LOW, WORKSPACE_HIGH)
        self.workspace_low = np.asarray(low, dtype=np.float64).copy()
        self.workspace_high = np.asarray(high, dtype=np.float64).copy()
        if self.workspace_low.shape != (3,) or not np.all(self.workspace_low < self.workspace_high):
            raise ValueError(f"SimArm: workspace low {self.workspace_low.tolist()} must be 3 values below high "
                             f"{self.workspace_high.tolist()}")
        apply_render_quality(self.model, quality)
        self.model.vis.global_.offwidth = max(self.model.vis.global_.offwidth, 640)
        self.model.vis.global_.offheight = max(self.model.vis.global_.offheight, 480)
        # The weld's relative pose is zeroed so the mocap frame IS link7's frame (as gym-xarm does).
        for i in range(self.model.neq):
            if self.model.eq_type[i] == mujoco.mjtEq.mjEQ_WELD:
                self.model.eq_data[i, :8] = [0, 0, 0, 0, 0, 0, 1, 0]
        self.data = mujoco.MjData(self.model)
        self._grasp = self.model.site("grasp").id
        self._link7 = self.model.body("link7").id
        self._arm_qpos = [self.model.joint(n).qposadr[0] for n in ARM_JOINTS]
        self._gripper_qpos = self.model.joint(GRIPPER_JOINT).qposadr[0]
        # The gripper's motors are the actuators on the inner knuckles; a task may add others (set_ctrl).
        knuckles = {self.model.joint(n).id for n in ("left_inner_knuckle_joint", "right_inner_knuckle_joint")}
        self._gripper_act = [a for a in range(self.model.nu) if self.model.actuator_trnid[a, 0] in knuckles]
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        self._target = HOME.copy()
        self._gripper_cmd = -1.0
        self._home_state = self._settle_home()

    # --- state ---------------------------------------------------------------------------------------
    def _settle_home(self) -> np.ndarray:
        """Drive the arm from the MJCF's zero pose to HOME once; resets restore this physics state."""
        mujoco.mj_resetData(self.model, self.data)
        self._target = HOME.copy()
        self._gripper_cmd = -1.0
        self._apply_target()
        mujoco.mj_step(self.model, self.data, nstep=1000)
        state = np.empty(mujoco.mj_stateSize(self.model, RESET_STATE))
        mujoco.mj_getState(self.model, self.data, state, RESET_STATE)
        return state

    def reset(self, seed: int | None = None, start: np.ndarray | None = None, gripper: float = -1.0,
              objects: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Restore the home pose, place free objects, then move the end effector to `start` (metres, clamped to
        the workspace) and let everything settle. `objects` maps a free joint's name (push scene:
        "object_joint0") to an xyz position (upright, at rest). `seed` is accepted for symmetry with tasks; the
        arm itself has no randomness. Returns the end-effector position."""
        del seed
        mujoco.mj_setState(self.model, self.data, self._home_state, RESET_STATE)
        self.data.time = 0.0
        for joint, pos in (objects or {}).items():
            self.place_free_body(joint, pos)
        self._target = HOME.copy()
        self._gripper_cmd = float(np.clip(gripper, -1.0, 1.0))
        if start is not None:
            self._target = self._clamp(np.asarray(start, dtype=np.float64))
        self._apply_target()
        mujoco.mj_step(self.model, self.data, nstep=300)  # settle at the start pose with the gripper set
        return self.ee_position()

    def move(self, delta_xyz_m: np.ndarray, gripper: float | None = None) -> np.ndarray:
        """Command the end effector `delta_xyz_m` metres from its last commanded position (clamped to the
        workspace box, never more than MAX_LAG_M ahead of the real arm) and step the physics for 0.1 s.

        `gripper` in [-1, 1]: -1 open, +1 closed (motor effort); None keeps the last command. The caller
        bounds the step size (the xArm driver and tasks use at most MAX_STEP_M per axis). Returns the new
        end-effector position.
        """
        delta = np.asarray(delta_xyz_m, dtype=np.float64).reshape(-1)
        if delta.shape != (3,) or not np.all(np.isfinite(delta)):
            raise ValueError(f"SimArm.move: delta_xyz_m must be 3 finite metres, got {delta.tolist()}")
        if gripper is not None:
            if not np.isfinite(gripper):
                raise ValueError(f"SimArm.move: gripper must be finite in [-1, 1], got {gripper}")
            self._gripper_cmd = float(np.clip(gripper, -1.0, 1.0))
        target = self._clamp(self._target + delta)
        ee = self.ee_position()
        lag = target - ee
        dist = float(np.linalg.norm(lag))
        if dist > MAX_LAG_M:  # blocked by contact: do not wind up a target the arm would later jump to
            target = self._clamp(ee + lag * (MAX_LAG_M / dist))
        self._target = target
        self._apply_target()
        mujoco.mj_step(self.model, self.data, nstep=SUBSTEPS)
        return self.ee_position()

    def place_free_body(self, joint: str, pos: np.ndarray) -> None:
        """Put the body of a free joint at `pos` (metres), upright and at rest."""
        if mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_JOINT, joint) < 0:
            raise ValueError(f"SimArm: no joint {joint!r} in scene {self.scene!r}")
        jnt = self.model.joint(joint)
        if jnt.type[0] != mujoco.mjtJoint.mjJNT_FREE:
            raise ValueError(f"SimArm: joint {joint!r} is not a free joint")
        xyz = np.asarray(pos, dtype=np.float64).reshape(-1)
        if xyz.shape != (3,) or not np.all(np.isfinite(xyz)):
            raise ValueError(f"SimArm: position for {joint!r} must be 3 finite metres, got {xyz.tolist()}")
        q, v = jnt.qposadr[0], jnt.dofadr[0]
        self.data.qpos[q:q + 7] = [*xyz, 1.0, 0.0, 0.0, 0.0]
        self.data.qvel[v:v + 6] = 0.0
        mujoco.mj_forward(self.model, self.data)

    def set_joint_position(self, joint: str, value: float) -> None:
        """Put a 1-DoF joint (a drawer's slide, a lid's hinge) at `value` (metres or radians), at rest."""
        if mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_JOINT, joint) < 0:
            raise ValueError(f"SimArm: no joint {joint!r} in scene {self.scene!r}")
        jnt = self.model.joint(joint)
        if jnt.type[0] not in (mujoco.mjtJoint.mjJNT_SLIDE, mujoco.mjtJoint.mjJNT_HINGE):
            raise ValueError(f"SimArm: joint {joint!r} is not a slide or hinge joint")
        self.data.qpos[jnt.qposadr[0]] = float(value)
        self.data.qvel[jnt.dofadr[0]] = 0.0
        mujoco.mj_forward(self.model, self.data)

    def joint_position(self, joint: str) -> float:
        """Position of a 1-DoF joint by name (metres or radians)."""
        return float(self.data.qpos[self.model.joint(joint).qposadr[0]])

    def set_ctrl(self, actuator: str, value: float) -> None:
        """Command a task's own actuator (e.g. the pour cup's tilt servo); it holds until changed."""
        self.data.ctrl[self.model.actuator(actuator).id] = float(value)

    def _clamp(self, pos: np.ndarray) -> np.ndarray:
        return np.clip(pos, self.workspace_low, self.workspace_high)

    def _apply_target(self) -> None:
        # The mocap is welded to link7, the target is for the grasp site 16 cm below it (gripper down).
        self.data.mocap_pos[0] = self._target + np.array([0.0, 0.0, 0.16])
        self.data.mocap_quat[0] = _DOWN
        self.data.ctrl[self._gripper_act] = self._gripper_cmd

    # --- readings ------------------------------------------------------------------------------------
    def ee_position(self) -> np.ndarray:
        """End-effector (grasp site, between the fingertips) position in metres, world frame."""
        mujoco.mj_kinematics(self.model, self.data)
        return self.data.site_xpos[self._grasp].copy()

    def target_position(self) -> np.ndarray:
        """The commanded end-effector position (what the next `move` adds its delta to)."""
        return self._target.copy()

    @staticmethod
    def joint_names() -> tuple[str, ...]:
        """Names for `joint_positions`: the 7 arm joints and the gripper drive joint (xarm_ros2 naming)."""
        return (*ARM_JOINTS, GRIPPER_JOINT)

    def joint_positions(self) -> np.ndarray:
        """Radians, in `joint_names()` order."""
        idx = [*self._arm_qpos, self._gripper_qpos]
        return self.data.qpos[idx].astype(np.float64)

    def gripper_closure(self) -> float:
        """0.0 fully open .. 1.0 fully closed (the drive joint angle over its range)."""
        return float(np.clip(self.data.qpos[self._gripper_qpos] / GRIPPER_CLOSED_RAD, 0.0, 1.0))

    def gripper_command(self) -> float:
        return self._gripper_cmd

    def body_position(self, name: str) -> np.ndarray:
        """World position of a named body (e.g. "object" in the push scene)."""
        return self.data.body(name).xpos.copy()

    def render(self, camera: str = CAMERA, size: tuple[int, int] | int = 84) -> np.ndarray:
        """uint8 HxWx3 frame from a named camera; `size` is (height, width) or one number for a square."""
        h, w = (size, size) if isinstance(size, int) else size
        if not (0 < h <= self.model.vis.global_.offheight and 0 < w <= self.model.vis.global_.offwidth):
            raise ValueError(f"SimArm.render: size {(h, w)} outside 1..{self.model.vis.global_.offheight} x "
                             f"1..{self.model.vis.global_.offwidth}")
        if mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, camera) < 0:
            raise ValueError(f"SimArm.render: no camera {camera!r} in scene {self.scene!r}")
        renderer = self._renderers.get((h, w))
        if renderer is None:
            renderer = self._renderers[(h, w)] = mujoco.Renderer(self.model, height=h, width=w)
            # Close it before the EGL display is terminated at exit (atexit runs last-registered first);
            # otherwise its __del__ fails noisily during interpreter shutdown.
            atexit.register(_close_renderer, weakref.ref(renderer))
        renderer.update_scene(self.data, camera=camera)
        return renderer.render().copy()

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()
