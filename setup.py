"""One distribution and one ROS 2 package, `polytask`, built from the repository's top-level source
folders (ros2_ws/, sim/, learning/, launch/).

The import namespace `polytask` is the folder ros2_ws/, and the other top-level folders are reached through
relative symlinks inside it (ros2_ws/sim -> ../sim, ros2_ws/learning -> ../learning, ros2_ws/launch -> ../launch),
so nothing generic (`sim`, `learning`) lands in site-packages:
ros2_ws/ -> polytask, sim/ -> polytask.sim, learning/ -> polytask.learning, launch/ -> polytask.launch.

Why symlinks and one `package_dir` entry: `colcon build --symlink-install` links only the first-level packages
of `package_dir` into its build folder. With a single mapping (polytask -> ros2_ws) the link it makes is the whole
namespace, and the same file installs identically under `pip install .`, `pip install -e .`, `colcon build` and
`colcon build --symlink-install` (tests/test_packaging.py and tests/test_ros2_launch.py build each of them).
"""

from __future__ import annotations

import glob
import os

from setuptools import setup

PACKAGE = "polytask"
PACKAGE_DIR = "ros2_ws"
# the top-level folders that ros2_ws/ links to (each becomes polytask.<folder>)
LINKED_FOLDERS = ("sim", "learning", "launch")


def check_links() -> None:
    """A checkout without the symlinks (e.g. git with core.symlinks=false) must fail here, not install half."""
    for folder in LINKED_FOLDERS:
        link = os.path.join(PACKAGE_DIR, folder)
        if not os.path.isfile(os.path.join(link, "__init__.py")):
            raise SystemExit(f"setup.py: {link} must be a symlink to ../{folder} (a package with __init__.py); "
                             f"restore it with `ln -s ../{folder} {link}`")


def discover_packages() -> list[str]:
    """Every folder with an __init__.py under ros2_ws/ (following its symlinks) is a package of `polytask`."""
    packages: list[str] = []
    for dirpath, dirnames, filenames in os.walk(PACKAGE_DIR, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        if "__init__.py" not in filenames:
            dirnames[:] = []  # no namespace packages: a folder without __init__.py ends the walk there
            continue
        rel = os.path.relpath(dirpath, PACKAGE_DIR)
        packages.append(PACKAGE if rel == "." else f"{PACKAGE}.{rel.replace(os.sep, '.')}")
    return sorted(packages)


def node_entry_points() -> list[str]:
    """One executable per node module (ros2_ws/nodes/<name>_node.py -> `<name>_node`), installed in lib/polytask."""
    scripts = []
    for path in sorted(glob.glob("ros2_ws/nodes/*_node.py")):
        name = os.path.splitext(os.path.basename(path))[0]
        scripts.append(f"{name} = {PACKAGE}.nodes.{name}:main")
    return scripts


def optional_requirements(path: str) -> list[str]:
    """The requirement lines of an optional extra's file (e.g. requirements-ray.txt); none when it is absent."""
    if not os.path.exists(path):
        return []
    with open(path) as fh:
        return [line.strip() for line in fh if line.strip() and not line.startswith("#")]


check_links()

setup(
    name=PACKAGE,
    version="0.1.0",
    description="PolyTask: unified robot policies through behaviour distillation",
    packages=discover_packages(),
    package_dir={PACKAGE: PACKAGE_DIR},
    package_data={f"{PACKAGE}.sim": ["assets/**/*"], PACKAGE: ["py.typed"]},
    include_package_data=True,
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", sorted(glob.glob("launch/*.launch.py"))),
        (f"share/{PACKAGE}/config", sorted(glob.glob("config/*.yaml") + glob.glob("config/*.xml"))),
        (f"share/{PACKAGE}/rviz", sorted(glob.glob("rviz/*.rviz"))),
        (f"share/{PACKAGE}/urdf", sorted(glob.glob("urdf/*.urdf"))),
    ],
    install_requires=["setuptools"],
    extras_require={"ray": optional_requirements("requirements-ray.txt")},
    zip_safe=False,
    python_requires=">=3.10",
    entry_points={"console_scripts": [f"{PACKAGE} = {PACKAGE}.cli:main", *node_entry_points()]},
)
