"""Scripted experts for the six Franka Kitchen tasks: waypoints for the hand, followed by a Jacobian IK controller.

Why this shape: FrankaKitchen-v1's action is a joint VELOCITY that the env turns into a position-actuator target
`ctrl = q_observed + 2 * action * 0.08 s`. A zero action therefore lets the arm sag under gravity, and the
heavily damped joints (damping 100, kp 870 on joints 1-4) move ~kp/damping * offset rad/s. The controller here:
- damped-least-squares IK on the `end_effector` site (position and orientation error -> joint increment), with a
  null-space pull towards the start posture so the elbow stays where it began;
- gravity feed-forward: the actuator must push `qfrc_bias` to hold a pose, i.e. an offset `qfrc_bias / kp`;
- optionally (`integral_gain`, off by default) an integral term on the Cartesian position error. Off because
  the experts reach every goal without it, and an integral is hidden state: a student distilled from the teacher
  sees the observation only, so a teacher whose action is closer to a function of the observation is easier to
  imitate.
It reads the simulator state (`task.model`, `task.data`), which a scripted expert may do; the policies that learn
from its demos see only pixels or the 59-D observation.

Each task is a list of `Waypoint`s relative to the element's site (read live, so a moving handle is followed);
the expert moves to one, waits until the hand is within `tol` (or `max_steps` ran out), then moves to the next.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from polytask.sim.kitchen_elements import ELEMENT_GOAL, element_progress

ARM_DOF = 7
CTRL_PER_ACTION = 2.0 * 0.08  # rad of position target per unit action (act_rng 2 x env dt 0.08 s)
EE_SITE = "end_effector"


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return np.array([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                     w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2])


def _axis_angle_quat(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    return np.concatenate([[np.cos(angle / 2)], np.sin(angle / 2) * axis])


class ArmIK:
    """One control step of the hand towards a Cartesian pose, returned as a 9-D kitchen action."""

    def __init__(self, model, data, *, damping: float = 0.05, pos_gain: float = 1.0, rot_gain: float = 0.6,
                 integral_gain: float = 0.0, max_pos_step: float = 0.04, null_gain: float = 0.05) -> None:
        import mujoco  # only when an expert runs (registering the suite must not load MuJoCo)

        self._mj = mujoco
        self.model, self.data = model, data
        self.site = model.site(EE_SITE).id
        self.kp = np.asarray(model.actuator_gainprm[:ARM_DOF, 0], dtype=np.float64)
        self.damping, self.pos_gain, self.rot_gain = damping, pos_gain, rot_gain
        self.integral_gain, self.max_pos_step, self.null_gain = integral_gain, max_pos_step, null_gain
        margin = 0.05
        self.lo = model.jnt_range[:ARM_DOF, 0] + margin
        self.hi = model.jnt_range[:ARM_DOF, 1] - margin
        self.q_home = np.clip(data.qpos[:ARM_DOF], self.lo, self.hi)  # the kitchen's start pose has joint 2 at -1.77
        self.integral = np.zeros(3)
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))

    def pos(self) -> np.ndarray:
        return self.data.site_xpos[self.site].copy()

    def quat(self) -> np.ndarray:
        q = np.zeros(4)
        self._mj.mju_mat2Quat(q, self.data.site_xmat[self.site])
        return q

    def reset_integral(self) -> None:
        self.integral[:] = 0.0

    def action(self, target_pos: np.ndarray, target_quat: np.ndarray, gripper: float) -> np.ndarray:
        """Joint action towards (target_pos, target_quat); `gripper` in [-1 (close), 1 (open)]."""
        mj, d = self._mj, self.data
        err_p = np.asarray(target_pos, dtype=np.float64) - d.site_xpos[self.site]
        dist = float(np.linalg.norm(err_p))
        if dist > self.max_pos_step:
            err_p = err_p * (self.max_pos_step / dist)
        self.integral = np.clip(self.integral + self.integral_gain * err_p, -0.03, 0.03)
        q_err = _quat_mul(np.asarray(target_quat, dtype=np.float64), self.quat() * np.array([1, -1, -1, -1]))
        if q_err[0] < 0:
            q_err = -q_err
        err_r = np.zeros(3)
        mj.mju_quat2Vel(err_r, q_err, 1.0)
        err_r = np.clip(err_r, -0.3, 0.3)
        mj.mj_jacSite(self.model, d, self._jacp, self._jacr, self.site)
        jac = np.vstack([self._jacp[:, :ARM_DOF], self._jacr[:, :ARM_DOF]])
        err = np.concatenate([self.pos_gain * err_p + self.integral, self.rot_gain * err_r])
        q = d.qpos[:ARM_DOF]
        free = np.ones(ARM_DOF, dtype=bool)
        for _ in range(3):  # joints at a limit that would push further are frozen and the rest re-solved
            jf = jac * free
            jjt = jf @ jf.T + (self.damping**2) * np.eye(6)
            pinv = jf.T @ np.linalg.solve(jjt, np.eye(6))
            dq = pinv @ err + (np.eye(ARM_DOF) - pinv @ jf) @ (self.null_gain * (self.q_home - q) * free)
            blocked = free & (((q <= self.lo) & (dq < 0)) | ((q >= self.hi) & (dq > 0)))
            if not blocked.any():
                break
            free &= ~blocked
        dq = np.clip(np.where(free, dq, 0.0), np.minimum(self.lo - q, 0.0), np.maximum(self.hi - q, 0.0))
        offset = dq + d.qfrc_bias[:ARM_DOF] / self.kp
        act = np.zeros(9)
        act[:ARM_DOF] = offset / CTRL_PER_ACTION
        act[7:] = float(gripper)
        return np.clip(act, -1.0, 1.0)


def _joint_action(ik: ArmIK, q_target: np.ndarray, gripper: float, max_step: float) -> np.ndarray:
    """Move the arm joints straight towards `q_target` (at most `max_step` rad per step), gravity compensated."""
    q = ik.data.qpos[:ARM_DOF]
    dq = np.clip(np.asarray(q_target) - q, -max_step, max_step)
    act = np.zeros(9)
    act[:ARM_DOF] = (dq + ik.data.qfrc_bias[:ARM_DOF] / ik.kp) / CTRL_PER_ACTION
    act[7:] = float(gripper)
    return np.clip(act, -1.0, 1.0)


def nominal_hand_pose(task) -> tuple[np.ndarray, np.ndarray]:
    """The hand's position and orientation in the env's own start pose (gripper pointing +y, fingers along x)."""
    import mujoco  # as above

    scratch = mujoco.MjData(task.model)
    scratch.qpos[:] = task.env.robot_env.init_qpos
    mujoco.mj_kinematics(task.model, scratch)
    site = task.model.site(EE_SITE).id
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, scratch.site_xmat[site])
    return scratch.site_xpos[site].copy(), quat


def nominal_hand_quat(task) -> np.ndarray:
    """The start orientation of the hand. Experts hold it rather than the one they start in, so a perturbed start
    (`init_noise`) does not leave the hand in a tilt that pushes the wrist to its limits."""
    return nominal_hand_pose(task)[1]


@dataclass
class Waypoint:
    """A hand pose relative to an anchor site (world offsets), the gripper command, and when to move on.

    `rot` is an extra rotation (axis, angle in rad) applied in the world frame to the start orientation of the
    hand. `anchor` is a site name or None (offset is then absolute). `freeze` reads the anchor once, when the
    waypoint starts, instead of following it live.
    """

    offset: tuple[float, float, float]
    anchor: str | None = None
    gripper: float = 1.0
    tol: float = 0.015
    max_steps: int = 40
    min_steps: int = 0
    rot: tuple[tuple[float, float, float], float] | None = None
    freeze: bool = True
    rot_tol: float = 0.1  # rad: the hand's orientation must be this close too before moving on
    speed: float | None = None  # m per agent step at most (None: the controller's default)
    relative_to_hand: bool = False  # offset from the hand's position when the waypoint starts (anchor ignored)
    joints: tuple[float, ...] | None = None  # a joint-space target for the 7 arm joints instead of a hand pose
    # a live target (position, quaternion) computed from the task; replaces offset/anchor/rot when set
    target_fn: Callable[[WaypointExpert], tuple[np.ndarray, np.ndarray]] | None = field(default=None, repr=False)
    done: Callable[[object], bool] | None = field(default=None, repr=False)


class WaypointExpert:
    """Follows waypoints with ArmIK; after the last one it holds that pose."""

    def __init__(self, task, waypoints: list[Waypoint], ik: ArmIK | None = None) -> None:
        self.task = task
        self.ik = ik or ArmIK(task.model, task.data)
        self.waypoints = waypoints
        self.home_quat = nominal_hand_quat(task)
        self.default_speed = self.ik.max_pos_step
        self.index = 0
        self.steps_in = 0
        self.step_count = 0  # actions given so far
        # the step at which a waypoint's budget ran out before the hand got there: from then on the expert follows
        # its plan on time, not on what the hand did, and its actions stop being corrections (None: never)
        self.gave_up_at: int | None = None
        self._anchor_pos: np.ndarray | None = None

    def _target(self, wp: Waypoint) -> tuple[np.ndarray, np.ndarray]:
        if wp.target_fn is not None:
            return wp.target_fn(self)
        if wp.relative_to_hand:
            if self._anchor_pos is None:
                self._anchor_pos = self.ik.pos()
            base = self._anchor_pos
        elif wp.anchor is None:
            base = np.zeros(3)
        elif wp.freeze and self._anchor_pos is not None:
            base = self._anchor_pos
        else:
            base = self.task.data.site_xpos[self.task.model.site(wp.anchor).id].copy()
            if wp.freeze:
                self._anchor_pos = base
        quat = self.home_quat
        if wp.rot is not None:
            quat = _quat_mul(_axis_angle_quat(np.asarray(wp.rot[0]), wp.rot[1]), quat)
        return base + np.asarray(wp.offset), quat

    def _reached(self, wp: Waypoint, target: np.ndarray, quat: np.ndarray) -> bool:
        if wp.joints is not None:
            return float(np.abs(self.task.data.qpos[:ARM_DOF] - np.asarray(wp.joints)).max()) <= JOINT_TOL
        return bool(np.linalg.norm(target - self.ik.pos()) <= wp.tol and self._rot_error(quat) <= wp.rot_tol)

    def act(self) -> np.ndarray:
        wp = self.waypoints[self.index]
        target, quat = self._target(wp)
        reached = self._reached(wp, target, quat)
        if wp.done is not None:
            reached = reached or bool(wp.done(self.task))
        if self.index < len(self.waypoints) - 1 and self.steps_in >= wp.min_steps and (
                reached or self.steps_in >= wp.max_steps):
            if not reached and wp.min_steps < wp.max_steps and self.gave_up_at is None:
                self.gave_up_at = self.step_count  # ran out of steps short of the waypoint (not a timed hold)
            self.index += 1
            self.steps_in = 0
            self._anchor_pos = None
            self.ik.reset_integral()
            wp = self.waypoints[self.index]
            target, quat = self._target(wp)
        self.steps_in += 1
        self.step_count += 1
        if wp.joints is not None:
            return _joint_action(self.ik, np.asarray(wp.joints), wp.gripper, JOINT_STEP).astype(np.float32)
        self.ik.max_pos_step = self.default_speed if wp.speed is None else wp.speed
        return self.ik.action(target, quat, wp.gripper).astype(np.float32)

    def _rot_error(self, quat: np.ndarray) -> float:
        """Angle (rad) between the hand's orientation and `quat`."""
        dot = abs(float(np.dot(quat, self.ik.quat())))
        return 2.0 * float(np.arccos(min(1.0, dot)))


def _progress_at_least(fraction: float, element: str) -> Callable[[object], bool]:
    """A waypoint end condition: the element's joint covered `fraction` of its way to the goal."""
    return lambda task: element_progress(task.data.qpos, element) >= fraction


def slide_cabinet(task) -> WaypointExpert:
    """Put the fingers left of the handle, push it to the right (+x) past the goal, back off."""
    a = "slide_site"
    return WaypointExpert(task, [
        Waypoint((-0.07, -0.15, 0.0), a, gripper=-1.0),
        Waypoint((-0.07, 0.0, 0.0), a, gripper=-1.0),
        Waypoint((0.35, 0.0, 0.0), a, gripper=-1.0, max_steps=60, done=_progress_at_least(1.0, "slide cabinet")),
        Waypoint((0.0, -0.15, 0.0), None, gripper=-1.0, relative_to_hand=True),
    ])


def light_switch(task) -> WaypointExpert:
    """Come in from the front right of the lever (between the knobs' rows) and sweep it to the left (-x)."""
    a = "light_site"
    return WaypointExpert(task, [
        Waypoint((0.07, -0.15, 0.0), a, gripper=-1.0),
        Waypoint((0.07, 0.0, 0.0), a, gripper=-1.0),
        Waypoint((-0.12, -0.01, 0.0), a, gripper=-1.0, max_steps=60, done=_progress_at_least(1.0, "light switch")),
        Waypoint((0.0, -0.15, 0.0), None, gripper=-1.0, relative_to_hand=True),
    ])


MICROWAVE_OPEN_ANGLE = -0.9  # rad; the goal is -0.75 and strict success needs <= -0.675
MICROWAVE_GRASP_HEIGHT = 0.09  # m above the handle's middle: the arm reaches further left up there
MICROWAVE_RATE = 0.05  # rad per agent step while pulling


def microwave(task) -> WaypointExpert:
    """Grasp the vertical door handle (fingers close across it) and pull it along the door's arc, turning the hand
    with the door."""
    m, d = task.model, task.data
    jid = m.joint("microwave").id
    hinge = d.xanchor[jid].copy()
    handle0 = d.site_xpos[m.site("microhandle_site").id].copy()
    radius = handle0 - hinge

    state = {"goal": 0.0}

    def along_arc(expert: WaypointExpert) -> tuple[np.ndarray, np.ndarray]:
        # the target angle only ever opens further: a fixed rate, never more than 0.15 rad ahead of the door
        angle = float(d.qpos[22])
        goal = min(state["goal"], max(state["goal"] - MICROWAVE_RATE, angle - 0.15, MICROWAVE_OPEN_ANGLE))
        state["goal"] = goal
        c, s_ = np.cos(goal), np.sin(goal)
        pos = hinge + np.array([c * radius[0] - s_ * radius[1], s_ * radius[0] + c * radius[1], radius[2] + lift])
        quat = expert.home_quat  # the vertical handle turns inside the grip: no need to turn the hand
        return pos, quat

    a = "microhandle_site"
    lift = MICROWAVE_GRASP_HEIGHT
    return WaypointExpert(task, [
        Waypoint((0.0, -0.15, lift), a, gripper=1.0),
        Waypoint((0.0, 0.0, lift), a, gripper=1.0, tol=0.01),
        Waypoint((0.0, 0.0, lift), a, gripper=-1.0, tol=0.0, max_steps=8, min_steps=8),
        Waypoint((0.0, 0.0, 0.0), gripper=-1.0, tol=0.0, target_fn=along_arc, max_steps=120,
                 done=_progress_at_least(1.15, "microwave")),
        Waypoint((0.0, 0.0, 0.0), gripper=1.0, tol=0.0, relative_to_hand=True, max_steps=6, min_steps=6),
        Waypoint((0.0, -0.12, 0.0), gripper=1.0, relative_to_hand=True),
    ])


KNOB_TWIST = 1.1  # rad the hand turns about the knob axis; the goals are -0.88 / -0.92 (strict: 90 % of that)
KNOB_STANDOFF = -0.048  # m in y from the knob's site: fingertips stop just short of the knob's disc


def _burner(site: str, element: str) -> Callable[[object], WaypointExpert]:
    """Grasp the knob's vertical bar between the fingers and turn the wrist about the knob's axis (world y)."""

    def make(task) -> WaypointExpert:
        turn = ((0.0, 1.0, 0.0), KNOB_TWIST)
        return WaypointExpert(task, [
            Waypoint((0.0, -0.15, 0.0), site, gripper=1.0),
            Waypoint((0.0, KNOB_STANDOFF, 0.0), site, gripper=1.0, tol=0.008),
            Waypoint((0.0, KNOB_STANDOFF, 0.0), site, gripper=-1.0, tol=0.0, max_steps=8, min_steps=8),
            Waypoint((0.0, KNOB_STANDOFF, 0.0), site, gripper=-1.0, tol=0.0, rot=turn, max_steps=40,
                     done=_progress_at_least(1.1, element)),
            Waypoint((0.0, 0.0, 0.0), gripper=1.0, tol=0.0, rot=turn, relative_to_hand=True, max_steps=6,
                     min_steps=6),
            Waypoint((0.0, -0.12, 0.0), gripper=1.0, rot=turn, relative_to_hand=True),
        ])

    return make


KETTLE_LIFT = 0.06  # m the kettle is lifted for the carry
KETTLE_SPEED = 0.02  # m per agent step while carrying: faster swings the kettle in the grip
KETTLE_HANDLE_HEIGHT = 0.259  # kettle_site above the kettle's free-joint origin (kettle_chain.xml)


def kettle(task) -> WaypointExpert:
    """Pick the kettle by its handle (wrist turned 90 degrees so the fingers close above and below the horizontal
    bar), carry it to the top left burner and put it down."""
    turn = ((0.0, 1.0, 0.0), -np.pi / 2)
    a = "kettle_site"
    goal = np.asarray(ELEMENT_GOAL["kettle"][:3]) + np.array([0.0, 0.0, KETTLE_HANDLE_HEIGHT])
    above = tuple(goal + np.array([0.0, 0.0, KETTLE_LIFT]))
    place = tuple(goal + np.array([0.0, 0.0, 0.005]))
    return WaypointExpert(task, [
        Waypoint((0.0, -0.15, 0.0), a, gripper=1.0, rot=turn),
        Waypoint((0.0, 0.0, 0.0), a, gripper=1.0, rot=turn, tol=0.01),
        Waypoint((0.0, 0.0, 0.0), a, gripper=-1.0, rot=turn, tol=0.0, max_steps=10, min_steps=10),
        Waypoint((0.0, 0.0, KETTLE_LIFT), gripper=-1.0, rot=turn, relative_to_hand=True),
        Waypoint(above, None, gripper=-1.0, rot=turn, max_steps=80, speed=KETTLE_SPEED),
        Waypoint(place, None, gripper=-1.0, rot=turn, tol=0.008, speed=KETTLE_SPEED),
        Waypoint((0.0, 0.0, 0.0), gripper=1.0, rot=turn, tol=0.0, relative_to_hand=True, max_steps=8, min_steps=8),
        Waypoint((0.0, -0.15, 0.02), gripper=1.0, rot=turn, relative_to_hand=True),
    ])


EXPERTS: dict[str, Callable[[object], WaypointExpert]] = {
    "slide cabinet": slide_cabinet,
    "light switch": light_switch,
    "microwave": microwave,
    "bottom burner": _burner("knob2_site", "bottom burner"),
    "top burner": _burner("knob4_site", "top burner"),
    "kettle": kettle,
}


JOINT_TOL = 0.05  # rad: a joint-space waypoint is reached when every arm joint is this close
JOINT_STEP = 0.08  # rad per agent step at most on a joint-space waypoint


def make_expert(element: str, task, from_anywhere: bool = False) -> WaypointExpert:
    """The scripted expert for one kitchen element, bound to a freshly reset KitchenTask.

    `from_anywhere=True` (chained play, where the arm is wherever the previous subtask left it) first backs the hand
    off, then drives the joints straight back to the env's start posture, so every subtask begins where the
    single-task experts were tuned (homing by hand pose alone left the wrist near its limit after the cabinet).
    """
    if element not in EXPERTS:
        raise NotImplementedError(f"no scripted kitchen expert for element {element!r}; have {sorted(EXPERTS)}")
    expert = EXPERTS[element](task)
    if from_anywhere:
        ik = expert.ik
        ik.q_home = np.clip(np.asarray(task.env.robot_env.init_qpos[:ARM_DOF]), ik.lo, ik.hi)
        lift = Waypoint((0.0, -0.1, 0.05), None, gripper=1.0, relative_to_hand=True, tol=0.02, max_steps=15)
        home = Waypoint((0.0, 0.0, 0.0), gripper=1.0, joints=tuple(ik.q_home), max_steps=60)
        expert.waypoints = [lift, home, *expert.waypoints]
    return expert
