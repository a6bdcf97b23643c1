"""The xArm7 URDF for robot_state_publisher and RViz, generated from the MuJoCo model the simulated arm runs.

Why generated: the simulated xArm is gym-xarm's MJCF (polytask.sim.xarm_arm); a hand-written URDF would drift
from it. This walks the MJCF's body tree from the base (`link0`, named `link_base` as on the real arm) down:
each body becomes a link; the joints /joint_states carries (joint1..joint7 and the gripper's drive_joint, named as
xarm_ros2 names them) become revolute joints with the MJCF's axis and range, every other body a fixed joint.
Visuals are primitives (a mesh becomes the box of its bounding box; spheres, capsules, cylinders and boxes stay
what they are): enough for RViz's RobotModel to show the arm where TF puts it, with no mesh files to install.

`urdf/xarm7.urdf` in the repository is this output (`python -m polytask.robot.urdf > urdf/xarm7.urdf`; a test keeps
it current), so robot_state_publisher needs neither MuJoCo nor gym-xarm.
"""

from __future__ import annotations

import math
import sys
from xml.sax.saxutils import quoteattr

import numpy as np

ROOT_BODY = "link0"  # the arm's base body in gym-xarm's MJCF ...
ROOT = "link_base"  # ... and its name in the URDF: the real xArm's base frame (xarm_ros2, our driver's poses)
ROBOT_NAME = "xarm7"
# mjtGeom codes (mujoco.mjtGeom): PLANE 0, HFIELD 1, SPHERE 2, CAPSULE 3, ELLIPSOID 4, CYLINDER 5, BOX 6, MESH 7
_SPHERE, _CAPSULE, _ELLIPSOID, _CYLINDER, _BOX, _MESH = 2, 3, 4, 5, 6, 7
_HINGE, _SLIDE = 3, 2  # mjtJoint codes
VISUAL_GROUPS = (0, 1, 2)  # MJCF geom groups shown by default in MuJoCo's viewer (3+ are collision-only here)


def quat_wxyz_to_rpy(q) -> tuple[float, float, float]:
    """Roll, pitch, yaw (URDF's fixed-axis X-Y-Z) of a unit quaternion (w, x, y, z)."""
    w, x, y, z = (float(v) for v in q)
    roll = math.atan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
    pitch = math.asin(max(-1.0, min(1.0, 2 * (w * y - z * x))))
    yaw = math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    return roll, pitch, yaw


def _quat_rotate(q, v) -> np.ndarray:
    w, x, y, z = (float(c) for c in q)
    r = np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )
    return r @ np.asarray(v, dtype=np.float64)


def _f(v: float) -> str:
    text = f"{float(v):.6g}"
    return "0" if text == "-0" else text


def _origin(xyz, rpy) -> str:
    return f'<origin xyz="{" ".join(_f(v) for v in xyz)}" rpy="{" ".join(_f(v) for v in rpy)}"/>'


def _material_name(model, g: int) -> str:
    return "rgba_" + "_".join(_f(c) for c in model.geom_rgba[g])


def _visual(model, g: int) -> str | None:
    kind, size = int(model.geom_type[g]), model.geom_size[g]
    pos, quat = model.geom_pos[g], model.geom_quat[g]
    if kind == _MESH:
        center, half = model.geom_aabb[g][:3], model.geom_aabb[g][3:]
        pos = pos + _quat_rotate(quat, center)
        shape = f'<box size="{" ".join(_f(2 * h) for h in half)}"/>'
    elif kind in (_SPHERE, _ELLIPSOID):
        shape = f'<sphere radius="{_f(size[0])}"/>'
    elif kind == _CAPSULE:
        shape = f'<capsule radius="{_f(size[0])}" length="{_f(2 * size[1])}"/>'
    elif kind == _CYLINDER:
        shape = f'<cylinder radius="{_f(size[0])}" length="{_f(2 * size[1])}"/>'
    elif kind == _BOX:
        shape = f'<box size="{" ".join(_f(2 * s) for s in size[:3])}"/>'
    else:
        return None
    return (
        f"    <visual>{_origin(pos, quat_wxyz_to_rpy(quat))}<geometry>{shape}</geometry>"
        f'<material name="{_material_name(model, g)}"/></visual>'
    )


def _joint(model, body: int, parent_name: str, name: str, movable: tuple[str, ...]) -> str:
    import mujoco

    origin = _origin(model.body_pos[body], quat_wxyz_to_rpy(model.body_quat[body]))
    hinges = [
        j
        for j in range(model.body_jntadr[body], model.body_jntadr[body] + model.body_jntnum[body])
        if int(model.jnt_type[j]) in (_HINGE, _SLIDE)
        and mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j) in movable
    ]
    if not hinges:
        return (
            f'  <joint name={quoteattr(name + "_fixed")} type="fixed"><parent link={quoteattr(parent_name)}/>'
            f"<child link={quoteattr(name)}/>{origin}</joint>"
        )
    j = hinges[0]
    if np.linalg.norm(model.jnt_pos[j]) > 1e-9:
        raise ValueError(f"joint {j} of body {name!r} is offset from its body frame; the URDF writer expects none")
    jname = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j)
    kind = "revolute" if int(model.jnt_type[j]) == _HINGE else "prismatic"
    lo, hi = model.jnt_range[j] if model.jnt_limited[j] else (-math.pi, math.pi)
    axis = " ".join(_f(v) for v in model.jnt_axis[j])
    return (
        f'  <joint name={quoteattr(jname)} type="{kind}"><parent link={quoteattr(parent_name)}/>'
        f'<child link={quoteattr(name)}/>{origin}<axis xyz="{axis}"/>'
        f'<limit lower="{_f(lo)}" upper="{_f(hi)}" effort="50" velocity="3.14"/></joint>'
    )


def xarm_urdf(scene: str = "reach") -> str:
    """The URDF text of the xArm7 subtree (its base down) of gym-xarm scene `scene`."""
    import mujoco

    from polytask.sim.xarm_arm import ARM_JOINTS, GRIPPER_JOINT, asset_path

    movable = (*ARM_JOINTS, GRIPPER_JOINT)  # what /joint_states carries; the other gripper joints stay fixed
    model = mujoco.MjModel.from_xml_path(str(asset_path(scene)))
    root = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, ROOT_BODY)
    if root < 0:
        raise ValueError(f"the xArm model {asset_path(scene)} has no body {ROOT_BODY!r}")
    names = {b: mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, b) for b in range(model.nbody)}
    names[root] = ROOT
    subtree, frontier = [], [root]
    while frontier:  # breadth-first from link_base: parents are written before their children
        b = frontier.pop(0)
        subtree.append(b)
        frontier += [c for c in range(model.nbody) if c != b and model.body_parentid[c] == b]
    lines = [
        '<?xml version="1.0"?>',
        "<!-- Generated by `python -m polytask.robot.urdf` from gym-xarm's MJCF (the simulated xArm); do not edit. -->",
        f'<robot name="{ROBOT_NAME}">',
    ]
    shown = [
        g for g in range(model.ngeom) if model.geom_bodyid[g] in subtree and int(model.geom_group[g]) in VISUAL_GROUPS
    ]
    materials = {_material_name(model, g): model.geom_rgba[g] for g in shown}
    for name, rgba in sorted(materials.items()):  # declared once, referenced by name
        lines.append(f'  <material name="{name}"><color rgba="{" ".join(_f(c) for c in rgba)}"/></material>')
    for b in subtree:
        visuals = [v for g in shown if model.geom_bodyid[g] == b for v in [_visual(model, g)] if v]
        lines.append(f"  <link name={quoteattr(names[b])}>")
        lines += visuals
        lines.append("  </link>")
        if b != root:
            lines.append(_joint(model, b, names[int(model.body_parentid[b])], names[b], movable))
    lines.append("</robot>")
    return "\n".join(lines) + "\n"


def base_pose_in_world(scene: str = "reach") -> tuple[np.ndarray, tuple[float, float, float]]:
    """Where the base (`link_base`) sits in the simulated scene's world frame: xyz (m) and rpy (rad)."""
    import mujoco

    from polytask.sim.xarm_arm import asset_path

    model = mujoco.MjModel.from_xml_path(str(asset_path(scene)))
    data = mujoco.MjData(model)
    mujoco.mj_kinematics(model, data)
    body = model.body(ROOT_BODY).id
    return data.xpos[body].copy(), quat_wxyz_to_rpy(data.xquat[body])


if __name__ == "__main__":
    sys.stdout.write(xarm_urdf())
