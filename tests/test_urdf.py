"""urdf/xarm7.urdf is the MuJoCo xArm as robot_state_publisher needs it, and the graphs place it where the
simulated scene has it."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def test_the_shipped_urdf_is_the_generated_one():
    from polytask.robot.urdf import xarm_urdf

    assert (REPO / "urdf" / "xarm7.urdf").read_text() == xarm_urdf(), (
        "urdf/xarm7.urdf is stale: run `python -m polytask.robot.urdf > urdf/xarm7.urdf`"
    )


def test_urdf_is_one_tree_from_link_base_whose_movable_joints_are_the_published_ones():
    from polytask.sim.xarm_arm import SimArm

    root = ET.parse(REPO / "urdf" / "xarm7.urdf").getroot()
    links = {link.get("name") for link in root.findall("link")}
    joints = root.findall("joint")
    children = [j.find("child").get("link") for j in joints]
    parents = {j.find("parent").get("link") for j in joints}
    assert len(children) == len(set(children)) == len(links) - 1  # a tree: every link but the root has one parent
    assert parents <= links and set(children) <= links
    assert links - set(children) == {"link_base"}  # the real arm's base frame, where TF world -> link_base ends
    movable = [j.get("name") for j in joints if j.get("type") != "fixed"]
    assert movable == list(SimArm.joint_names())  # exactly what /joint_states carries, so every link gets a TF
    materials = {m.get("name") for m in root.findall("material")}
    for visual in root.iter("visual"):
        assert visual.find("material").get("name") in materials
    for j in joints:
        if j.get("type") == "revolute":
            lo, hi = float(j.find("limit").get("lower")), float(j.find("limit").get("upper"))
            assert lo < hi


def test_static_transform_puts_link_base_where_the_simulated_scene_has_it():
    from polytask.launch.graphs import SIM_XARM_BASE_XYZ
    from polytask.robot.urdf import base_pose_in_world

    xyz, rpy = base_pose_in_world()
    assert np.allclose(xyz, [float(v) for v in SIM_XARM_BASE_XYZ], atol=1e-6), xyz
    assert np.allclose(rpy, 0.0, atol=1e-9)  # the static TF carries no rotation
