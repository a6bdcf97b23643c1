"""Where things are installed: this package's share folder (config/, rviz/, urdf/, launch/) and the other ROS
packages a graph may start (rviz2, joy, robot_state_publisher, tf2_ros), looked up in the ament index the way
`ros2 launch` and `ros2 run` look them up, so `polytask launch` starts and skips exactly what they would.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from polytask.launch.graph_model import PACKAGE, NodeSpec


def share_dir() -> Path:
    """Where config/, rviz/ and launch/ live: the installed share folder, else the source checkout."""
    here = Path(__file__).resolve().parent.parent  # launch/.. = repository root in a checkout
    if (here / "config").is_dir() and (here / "package.xml").is_file():
        return here
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE))
    except Exception as err:  # PackageNotFoundError or no ament index at all
        raise FileNotFoundError(
            f"cannot find the {PACKAGE} share directory (no checkout at {here}, "
            f"not in AMENT_PREFIX_PATH={os.environ.get('AMENT_PREFIX_PATH', '')!r})"
        ) from err


def package_prefix(package: str) -> Path | None:
    """The install prefix of ROS package `package` from the ament index (AMENT_PREFIX_PATH), or None."""
    try:
        from ament_index_python.packages import get_package_prefix

        return Path(get_package_prefix(package))
    except (ImportError, LookupError, OSError, ValueError):  # not installed, or no ament index at all
        return None


def package_installed(package: str) -> bool:
    """What `ros2 launch` checks before it starts a node of `package` (it aborts the launch when this is False)."""
    return package_prefix(package) is not None


def external_executable(package: str, executable: str) -> str | None:
    """Where `ros2 run package executable` would find it (<prefix>/lib/<package>/), else on PATH, else None."""
    prefix = package_prefix(package)
    if prefix is not None:
        candidate = prefix / "lib" / package / executable
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
        return shutil.which(executable)
    return None


def skipped_message(spec: NodeSpec) -> str:
    """The one log line for an external node that is not started because its package is missing."""
    return (
        f"not starting {spec.name}: ROS package '{spec.package}' is not installed here (not in the ament index; "
        f"install it, e.g. ros-jazzy-{spec.package.replace('_', '-')}, to get {spec.executable})"
    )
