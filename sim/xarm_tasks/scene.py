"""Scene pieces for the xArm tasks, added in Python (mujoco.MjSpec) to gym-xarm's `reach.xml` scene.

Each builder adds one object to a spec and returns nothing but named bodies/joints/sites, so the task modules
only ever look things up by name. Objects that a task moves between episodes (cups, boxes, cabinets) are static
bodies placed through `model.body_pos` at reset; the things that move during an episode are a drawer on a slide
joint, a lid on a hinge, a peg on a chain of ball-jointed links hanging from the hand, a cup on a tilt hinge held
by the hand, and free spheres (the grains).

Contact groups (MuJoCo collides two geoms when `contype` of one meets `conaffinity` of the other):
- the arm and gripper keep gym-xarm's bits (1; fingers 2/3); drawers, lids and the hook touch them (1/1);
- grains (4) collide with each other, both pour cups and the table, never with the arm: the held cup's mouth sits
  right below the fingers, and grains wedged between finger meshes would be a simulation artefact;
- the peg (8) collides with its cup and the table only; the string links collide with nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mujoco
import numpy as np

from polytask.sim.xarm_arm import TABLE_TOP_Z, asset_path

ARM_BITS = 1
GRAIN_BITS = 4
PEG_BITS = 8
_BOX = mujoco.mjtGeom.mjGEOM_BOX
_CYL = mujoco.mjtGeom.mjGEOM_CYLINDER
_CAPSULE = mujoco.mjtGeom.mjGEOM_CAPSULE
_SPHERE = mujoco.mjtGeom.mjGEOM_SPHERE
HAND = "link7"  # the body the mocap weld drives; its +z axis points down out of the gripper
GRASP_IN_HAND = np.array([0.0, 0.0, 0.16])  # the grasp site in the hand's frame


def base_spec() -> mujoco.MjSpec:
    """gym-xarm's reach scene (arm, table, camera0, target0 site) as an editable spec; the table and the floor
    also collide with grains and the peg."""
    spec = mujoco.MjSpec.from_file(str(asset_path("reach")))
    for name in ("tablegeom0", "floorgeom0"):
        geom = spec.geom(name)
        geom.contype = geom.conaffinity = ARM_BITS | GRAIN_BITS | PEG_BITS
    return spec


def compile_spec(spec: mujoco.MjSpec) -> mujoco.MjModel:
    return spec.compile()


def hide_target(model: mujoco.MjModel) -> None:
    """The reach scene's target0 site is a red disc on the table; tasks whose goal is an object hide it."""
    model.site_rgba[model.site("target0").id, 3] = 0.0


def _ring(
    body: mujoco.MjsBody,
    prefix: str,
    radius: float,
    height: float,
    wall: float,
    base: float,
    rgba: list[float],
    contype: int,
    conaffinity: int,
    z0: float = 0.0,
    panels: int = 10,
) -> None:
    """An open-topped cylinder (a cup) from `panels` wall boxes and a floor disc; its floor's underside at z0."""
    half_w = radius * math.tan(math.pi / panels) + wall  # panels overlap a little at the corners: no gaps
    for i in range(panels):
        a = 2 * math.pi * i / panels
        body.add_geom(
            name=f"{prefix}_wall{i}",
            type=_BOX,
            size=[wall, half_w, height / 2],
            pos=[(radius + wall) * math.cos(a), (radius + wall) * math.sin(a), z0 + height / 2],
            quat=[math.cos(a / 2), 0, 0, math.sin(a / 2)],
            rgba=rgba,
            contype=contype,
            conaffinity=conaffinity,
            mass=0.01,
        )
    body.add_geom(
        name=f"{prefix}_floor",
        type=_CYL,
        size=[radius + wall, base / 2, 0],
        pos=[0, 0, z0 + base / 2],
        rgba=rgba,
        contype=contype,
        conaffinity=conaffinity,
        mass=0.02,
    )


@dataclass(frozen=True)
class CupSize:
    radius: float  # inner radius, metres
    height: float  # floor underside to rim
    wall: float = 0.003  # half-thickness of the wall panels
    base: float = 0.006  # floor thickness


def add_table_cup(spec: mujoco.MjSpec, name: str, size: CupSize, rgba: list[float], contype: int) -> None:
    """A static cup standing on the table (body origin at its floor's underside, placed at reset)."""
    body = spec.worldbody.add_body(name=name, pos=[1.55, 0.30, TABLE_TOP_Z])
    _ring(body, name, size.radius, size.height, size.wall, size.base, rgba, contype, contype)


def add_string_peg(
    spec: mujoco.MjSpec, links: int, link_len: float, peg_radius: float, peg_len: float, damping: float
) -> None:
    """A peg hanging from the fingertips on a string: `links` thin ball-jointed links, then the peg (a cylinder
    whose bottom carries the site `peg_tip`). The damping is the string's (and air's) loss: a real string
    pendulum settles in a few swings, an undamped chain would swing for the whole episode."""
    parent = spec.body(HAND)
    pos = GRASP_IN_HAND.tolist()
    for i in range(links):
        link = parent.add_body(name=f"string{i}", pos=pos)
        link.add_joint(name=f"string{i}_ball", type=mujoco.mjtJoint.mjJNT_BALL, damping=damping, armature=1e-5)
        link.add_geom(
            name=f"string{i}_geom",
            type=_CAPSULE,
            fromto=[0, 0, 0, 0, 0, link_len],
            size=[0.0025, 0, 0],
            rgba=[0.9, 0.9, 0.85, 1],
            contype=0,
            conaffinity=0,
            mass=0.002,
        )
        parent, pos = link, [0.0, 0.0, link_len]
    peg = parent.add_body(name="peg", pos=pos)
    peg.add_joint(name="peg_ball", type=mujoco.mjtJoint.mjJNT_BALL, damping=damping, armature=1e-5)
    peg.add_geom(
        name="peg_geom",
        type=_CYL,
        size=[peg_radius, peg_len / 2, 0],
        pos=[0, 0, peg_len / 2],
        rgba=[0.55, 0.35, 0.2, 1],
        contype=PEG_BITS,
        conaffinity=PEG_BITS,
        mass=0.03,
        friction=[0.3, 0.005, 1e-4],
    )
    peg.add_site(name="peg_tip", pos=[0, 0, peg_len], size=[0.004, 0, 0])


def add_held_cup(spec: mujoco.MjSpec, size: CupSize, rgba: list[float], tilt_max: float) -> None:
    """A cup held by the fingers on a hinge along world x (the wrist's pitch on the real robot), driven by the
    position servo `cup_tilt` (ctrl 0 upright .. tilt_max, the mouth tipped towards +y, the camera's side). Its
    mouth is just below the fingertips and the hinge axis runs through the mouth's centre, so tilting pours from
    where the hand is."""
    hand = spec.body(HAND)
    holder = hand.add_body(name="held_cup", pos=(GRASP_IN_HAND + np.array([0.0, 0.0, 0.01])).tolist())
    # hand frame: x = world x, y = -world y, z down (the hand is turned 180 degrees about x); about -x, a positive
    # angle turns the mouth from straight up towards +y
    holder.add_joint(
        name="cup_tilt",
        type=mujoco.mjtJoint.mjJNT_HINGE,
        axis=[-1, 0, 0],
        range=[-0.1, tilt_max + 0.1],
        damping=0.5,
        armature=0.002,
    )
    # in the hand frame the cup hangs along +z (world down); its floor's underside is `height` below the mouth
    cup = holder.add_body(name="held_cup_body", pos=[0, 0, size.height], quat=[0, 1, 0, 0])
    _ring(cup, "held_cup", size.radius, size.height, size.wall, size.base, rgba, GRAIN_BITS, GRAIN_BITS)
    holder.add_site(name="held_cup_mouth", pos=[0, 0, 0], size=[0.004, 0, 0])
    act = spec.add_actuator(name="cup_tilt", target="cup_tilt", trntype=mujoco.mjtTrn.mjTRN_JOINT)
    act.gaintype = mujoco.mjtGain.mjGAIN_FIXED
    act.biastype = mujoco.mjtBias.mjBIAS_AFFINE
    act.gainprm[0] = 8.0
    act.biasprm[:3] = [0.0, -8.0, -0.6]
    act.ctrllimited = True
    act.ctrlrange = [0.0, tilt_max]


def add_grains(spec: mujoco.MjSpec, count: int, radius: float) -> None:
    """`count` free spheres named grain0.. (joints grain0_free..), parked under the table until placed."""
    for i in range(count):
        grain = spec.worldbody.add_body(name=f"grain{i}", pos=[0.3 + 0.03 * i, -1.0, 0.05])
        grain.add_freejoint(name=f"grain{i}_free")
        grain.add_geom(
            name=f"grain{i}_geom",
            type=_SPHERE,
            size=[radius, 0, 0],
            rgba=[0.95, 0.75, 0.3, 1],
            contype=GRAIN_BITS,
            conaffinity=GRAIN_BITS,
            mass=0.002,
            friction=[0.4, 0.005, 1e-4],
            solref=[0.004, 1.0],
        )


def add_hook(spec: mujoco.MjSpec, drop: float, toe: float, radius: float) -> None:
    """An L-shaped hook held in the closed gripper: a rod `drop` metres down from the fingertips, then a toe
    `toe` metres long pointing +x (away from the robot), its tip carrying the site `hook_tip`. A down-pointing
    gripper cannot reach under a lid's handle (its own fingers are in the way); the hook's toe can."""
    hand = spec.body(HAND)
    hook = hand.add_body(name="hook", pos=GRASP_IN_HAND.tolist())
    grey = [0.25, 0.25, 0.28, 1]
    # the rod's top, inside the closed fingers, is for the picture only (it would collide with the finger meshes)
    hook.add_geom(
        name="hook_grip",
        type=_CAPSULE,
        fromto=[0, 0, -0.01, 0, 0, 0.03],
        size=[radius, 0, 0],
        rgba=grey,
        contype=0,
        conaffinity=0,
        mass=0.01,
    )
    hook.add_geom(
        name="hook_rod",
        type=_CAPSULE,
        fromto=[0, 0, 0.03, 0, 0, drop],
        size=[radius, 0, 0],
        rgba=grey,
        contype=ARM_BITS,
        conaffinity=0,
        mass=0.02,
    )
    # hand frame x is world x (the hand is turned about x), so the toe points +x in the world too
    hook.add_geom(
        name="hook_toe",
        type=_CAPSULE,
        fromto=[0, 0, drop, toe, 0, drop],
        size=[radius, 0, 0],
        rgba=grey,
        contype=ARM_BITS,
        conaffinity=0,
        mass=0.01,
    )
    hook.add_site(name="hook_tip", pos=[toe, 0, drop], size=[0.004, 0, 0])


@dataclass(frozen=True)
class BoxSize:
    depth: float  # x extent of body and lid
    width: float  # y extent
    height: float  # table to the lid's underside
    lid: float = 0.012  # lid thickness
    handle_out: float = 0.035  # how far the handle sticks out in front (-x) of the lid
    handle_width: float = 0.07
    handle_thick: float = 0.012


def add_box(spec: mujoco.MjSpec, size: BoxSize, rgba: list[float], lid_rgba: list[float]) -> None:
    """A box with a lid hinged along its back edge (the side away from the robot, +x). The lid's handle sticks
    out in front. Body `box` (origin: the hinge line's centre, placed at reset), joint `box_lid` (0 closed ..
    opening upwards; its upper limit is past vertical, where the lid rests open), site `box_handle`."""
    d, w, h = size.depth, size.width, size.height
    box = spec.worldbody.add_body(name="box", pos=[1.65, 0.30, TABLE_TOP_Z + h])
    wall = 0.006
    for name, half, pos in (
        ("front", [wall, w / 2, h / 2], [-d + wall, 0, -h / 2]),
        ("back", [wall, w / 2, h / 2], [-wall, 0, -h / 2]),
        ("left", [d / 2, wall, h / 2], [-d / 2, w / 2 - wall, -h / 2]),
        ("right", [d / 2, wall, h / 2], [-d / 2, -w / 2 + wall, -h / 2]),
        ("floor", [d / 2, w / 2, wall / 2], [-d / 2, 0, -h + wall / 2]),
    ):
        box.add_geom(name=f"box_{name}", type=_BOX, size=half, pos=pos, rgba=rgba)
    lid = box.add_body(name="box_lid_body", pos=[0, 0, 0])
    # about +y, a positive angle lifts the front edge (at -x) upwards
    lid.add_joint(
        name="box_lid",
        type=mujoco.mjtJoint.mjJNT_HINGE,
        axis=[0, 1, 0],
        range=[0, math.radians(115)],
        damping=0.02,
        armature=1e-4,
        frictionloss=0.002,
    )
    lid.add_geom(
        name="box_lid_plate",
        type=_BOX,
        size=[d / 2, w / 2, size.lid / 2],
        pos=[-d / 2, 0, size.lid / 2],
        rgba=lid_rgba,
        mass=0.08,
    )
    hx = -d - size.handle_out / 2
    lid.add_geom(
        name="box_handle_geom",
        type=_BOX,
        size=[size.handle_out / 2, size.handle_width / 2, size.handle_thick / 2],
        pos=[hx, 0, size.handle_thick / 2],
        rgba=[0.15, 0.15, 0.15, 1],
        mass=0.01,
    )
    lid.add_site(name="box_handle", pos=[-d - size.handle_out, 0, size.handle_thick / 2], size=[0.004, 0, 0])


@dataclass(frozen=True)
class DrawerSize:
    depth: float  # x extent of the cabinet
    width: float  # y extent
    height: float  # cabinet height
    travel: float  # how far the drawer can be pulled out


def add_drawer(spec: mujoco.MjSpec, size: DrawerSize, rgba: list[float], front_rgba: list[float]) -> None:
    """A cabinet with a drawer sliding along x, open towards the robot (-x). Body `cabinet` (origin: the front
    face's bottom centre on the table, placed at reset), joint `drawer_slide` (0 closed .. travel open), site
    `drawer_handle` on the drawer front."""
    d, w, h = size.depth, size.width, size.height
    cab = spec.worldbody.add_body(name="cabinet", pos=[1.60, 0.30, TABLE_TOP_Z])
    t = 0.008
    for name, half, pos in (
        ("top", [d / 2, w / 2, t], [d / 2, 0, h - t]),
        ("back", [t, w / 2, h / 2], [d - t, 0, h / 2]),
        ("left", [d / 2, t, h / 2], [d / 2, w / 2 - t, h / 2]),
        ("right", [d / 2, t, h / 2], [d / 2, -w / 2 + t, h / 2]),
    ):
        cab.add_geom(name=f"cabinet_{name}", type=_BOX, size=half, pos=pos, rgba=rgba)
    drawer = cab.add_body(name="drawer", pos=[0, 0, 0])
    drawer.add_joint(
        name="drawer_slide",
        type=mujoco.mjtJoint.mjJNT_SLIDE,
        axis=[-1, 0, 0],
        range=[0, size.travel],
        damping=3.0,
        armature=0.01,
        frictionloss=0.3,
    )
    inner_w, inner_h = w / 2 - 2 * t - 0.002, (h - 2 * t) / 2 - 0.003
    # the front sits inside the cabinet's opening with 2 mm to spare: a static cabinet's geoms DO collide with
    # its child drawer (MuJoCo filters parent-child contacts only below the world's own bodies)
    drawer.add_geom(
        name="drawer_front",
        type=_BOX,
        size=[t, inner_w, inner_h],
        pos=[t, 0, inner_h + 0.002],
        rgba=front_rgba,
        mass=0.1,
    )
    drawer.add_geom(
        name="drawer_bottom",
        type=_BOX,
        size=[d / 2 - 2 * t, inner_w, t / 2],
        pos=[d / 2, 0, 0.004 + t / 2],
        rgba=front_rgba,
        mass=0.1,
    )
    drawer.add_geom(
        name="drawer_handle_geom",
        type=_BOX,
        size=[0.01, 0.04, 0.008],
        pos=[-0.01, 0, inner_h + 0.002],
        rgba=[0.15, 0.15, 0.15, 1],
        mass=0.01,
    )
    drawer.add_site(name="drawer_handle", pos=[-0.02, 0, inner_h + 0.002], size=[0.004, 0, 0])


def body_id(model: mujoco.MjModel, name: str) -> int:
    return int(model.body(name).id)


def place_static(model: mujoco.MjModel, body: str, pos: np.ndarray) -> None:
    """Move a static body (a cup, box or cabinet without a joint to the world) for the next episode."""
    model.body_pos[body_id(model, body)] = np.asarray(pos, dtype=np.float64)
