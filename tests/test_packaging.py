"""The tree installs as one ament_python package: executables in lib/polytask, launch/config/rviz in
share/polytask, the ament index marker, and one import namespace (no top-level `sim` or `learning`)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_package_xml_is_format3_ament_python_with_ros_deps() -> None:
    root = ET.parse(REPO / "package.xml").getroot()
    assert root.get("format") == "3" and root.findtext("name") == "polytask"
    assert root.findtext("export/build_type") == "ament_python"
    deps = {e.text for e in root.findall("exec_depend")}
    assert {"rclpy", "rcl_interfaces", "ament_index_python", "sensor_msgs", "std_msgs", "geometry_msgs",
            "visualization_msgs", "diagnostic_msgs", "std_srvs", "launch", "launch_ros",
            "python3-numpy", "python3-opencv", "python3-yaml"} <= deps
    # rosdep keys of rosdistro's python.yaml for the learning/simulator stack
    assert {"python3-torch", "python3-mujoco-pip", "python3-rosbags-pip", "python3-gymnasium-robotics-pip",
            "python3-tensorboard-pip"} <= deps
    # every ROS package a graph starts is declared (the graphs still skip one that is missing)
    from polytask.launch.graphs import GRAPHS

    assert {n.package for g in GRAPHS.values() for n in g.nodes if n.external} <= deps
    tests = {e.text for e in root.findall("test_depend")}
    assert "python3-pytest" in tests and "python3-pytest" not in deps  # a test tool, not a run-time dependency


def test_every_imported_ros_package_is_declared() -> None:
    """The ROS Python packages the code imports (messages, rclpy, ament_index_python) are in package.xml."""
    import re

    root = ET.parse(REPO / "package.xml").getroot()
    deps = {e.text for e in root.findall("exec_depend")}
    ros_packages = {"rclpy", "rcl_interfaces", "ament_index_python", "std_msgs", "sensor_msgs", "geometry_msgs",
                    "visualization_msgs", "diagnostic_msgs", "std_srvs", "launch", "launch_ros"}
    used = set()
    for folder in ("ros2_ws", "launch"):
        for path in (REPO / folder).rglob("*.py"):
            if path.is_relative_to(REPO / "ros2_ws" / "sim") or path.is_relative_to(REPO / "ros2_ws" / "learning"):
                continue
            for name in re.findall(r"^\s*(?:from|import) ([a-z_]+)", path.read_text(), re.M):
                if name in ros_packages:
                    used.add(name)
    # message/service packages named in the topic table are imported through it (load_type)
    from polytask.ros import topics

    used |= {t.msg_type.split("/")[0] for t in topics.TOPICS.values()}
    used |= {s.srv_type.split("/")[0] for s in topics.SERVICES.values()}
    assert used <= deps, f"imported but not declared in package.xml: {sorted(used - deps)}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """What colcon's ament_python build does: `setup.py install` with setup.cfg's script dir, into a prefix."""
    src = tmp_path_factory.mktemp("src")
    for item in ("setup.py", "setup.cfg", "package.xml", "resource", "ros2_ws", "sim", "learning", "launch",
                 "config", "rviz", "urdf"):
        if (REPO / item).is_dir():
            shutil.copytree(REPO / item, src / item, symlinks=True)  # ros2_ws/ keeps its relative links
        else:
            shutil.copy(REPO / item, src / item)
    prefix = tmp_path_factory.mktemp("install")
    proc = subprocess.run([sys.executable, "setup.py", "-q", "install", f"--prefix={prefix}",
                           "--single-version-externally-managed", "--root=/"], cwd=src, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return prefix


def test_install_layout_matches_ros2_conventions(installed: Path) -> None:
    share = installed / "share" / "polytask"
    assert (installed / "share/ament_index/resource_index/packages/polytask").is_file()
    assert (share / "package.xml").is_file()
    launch_files = sorted(p.name for p in (share / "launch").glob("*.launch.py"))
    assert launch_files == sorted(p.name for p in (REPO / "launch").glob("*.launch.py"))
    assert {"teleop_record.launch.py", "train_task.launch.py", "deploy.launch.py"} <= set(launch_files)
    assert (share / "rviz" / "polytask.rviz").is_file()
    assert (share / "urdf" / "xarm7.urdf").is_file()
    assert (share / "config" / "fastdds_large_frames.xml").is_file()
    assert sorted(p.name for p in (share / "config").glob("*.yaml")) == \
        sorted(p.name for p in (REPO / "config").glob("*.yaml"))
    executables = {p.name for p in (installed / "lib" / "polytask").iterdir()}
    nodes = {p.stem for p in (REPO / "ros2_ws" / "nodes").glob("*_node.py")}
    assert nodes and nodes <= executables and "polytask" in executables


def test_one_import_namespace(installed: Path) -> None:
    site = next(installed.glob("lib/python3*/site-packages"))
    top = {p.name for p in site.iterdir()}
    assert "polytask" in top
    assert not top & {"sim", "learning", "launch", "ros2_ws"}, top
    for sub in ("sim", "learning", "launch", "nodes", "commands", "ros", "robot"):
        assert (site / "polytask" / sub / "__init__.py").is_file(), sub


def test_every_graph_executable_is_installed(installed: Path) -> None:
    from polytask.launch.graphs import GRAPHS

    executables = {p.name for p in (installed / "lib" / "polytask").iterdir()}
    for graph in GRAPHS.values():
        for node in graph.nodes:
            if node.package == "polytask":
                assert node.executable in executables, (graph.name, node.executable)


def test_top_level_folders_are_linked_into_the_namespace_folder() -> None:
    """ros2_ws/ is the `polytask` package; sim/, learning/, launch/ join it through relative symlinks, so the one
    `package_dir` entry covers every sub-package (what colcon --symlink-install links into its build folder)."""
    for folder in ("sim", "learning", "launch"):
        link = REPO / "ros2_ws" / folder
        assert link.is_symlink(), f"{link} must be a symlink"
        assert Path(link.readlink()) == Path("..") / folder, f"{link} must point at ../{folder} (relative)"
        assert (link / "__init__.py").is_file()


def test_the_environment_imports_every_part_of_the_namespace_from_this_checkout() -> None:
    """`pip install -e .` (make setup): polytask.sim/learning/launch resolve to the top-level folders."""
    import polytask

    if Path(polytask.__file__).resolve().parent != REPO / "ros2_ws":
        pytest.skip(f"polytask is not installed from this checkout (it comes from {polytask.__file__})")
    import polytask.launch.graphs
    import polytask.learning.rl.agent
    import polytask.sim.registry

    for module, folder in ((polytask.sim.registry, "sim"), (polytask.learning.rl.agent, "learning"),
                           (polytask.launch.graphs, "launch")):
        assert (REPO / folder) in Path(module.__file__).resolve().parents, module.__file__
