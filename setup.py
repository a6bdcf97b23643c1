"""One distribution and one ROS 2 package, `polytask`, built from the design card's top-level folders.

The folders map into a single import namespace so nothing generic (`sim`, `learning`) lands in site-packages:
ros2_ws/ -> polytask, sim/ -> polytask.sim, learning/ -> polytask.learning, launch/ -> polytask.launch.
The same file serves `pip install -e .` and `colcon build` (ament_python).
"""

from __future__ import annotations

import glob
import os

from setuptools import setup

PACKAGE = "polytask"
# top-level folder -> the import name it provides
NAMESPACE_ROOTS = {
    "ros2_ws": PACKAGE,
    "sim": f"{PACKAGE}.sim",
    "learning": f"{PACKAGE}.learning",
    "launch": f"{PACKAGE}.launch",
}


def discover_packages() -> tuple[list[str], dict[str, str]]:
    """Every folder with an __init__.py under the roots becomes a package of the polytask namespace."""
    packages: list[str] = []
    package_dir: dict[str, str] = {}
    for folder, import_name in NAMESPACE_ROOTS.items():
        for dirpath, _dirnames, filenames in os.walk(folder):
            if "__init__.py" not in filenames or "__pycache__" in dirpath:
                continue
            rel = os.path.relpath(dirpath, folder)
            name = import_name if rel == "." else f"{import_name}.{rel.replace(os.sep, '.')}"
            packages.append(name)
            package_dir[name] = dirpath
    return sorted(packages), package_dir


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


packages, package_dir = discover_packages()

setup(
    name=PACKAGE,
    version="0.1.0",
    description="PolyTask: unified robot policies through behaviour distillation",
    packages=packages,
    package_dir=package_dir,
    package_data={f"{PACKAGE}.sim": ["assets/**/*"], PACKAGE: ["py.typed"]},
    include_package_data=True,
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", sorted(glob.glob("launch/*.launch.py"))),
        (f"share/{PACKAGE}/config", sorted(glob.glob("config/*.yaml"))),
        (f"share/{PACKAGE}/rviz", sorted(glob.glob("rviz/*.rviz"))),
    ],
    install_requires=["setuptools"],
    extras_require={"ray": optional_requirements("requirements-ray.txt")},
    zip_safe=False,
    python_requires=">=3.10",
    entry_points={"console_scripts": [f"{PACKAGE} = {PACKAGE}.cli:main", *node_entry_points()]},
)
