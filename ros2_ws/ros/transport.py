"""Fast DDS transport settings for the node processes: large camera frames through shared memory.

Fast DDS's default shared-memory segment (512 kB) is smaller than a 640x480 rgb8 frame (921 kB), so such frames
went fragmented over UDP loopback: ~15 ms camera -> policy server here, against ~5 ms through a large segment, and
a best-effort image subscription (which the standard camera drivers require) lost about a third of them. Every
node applies config/fastdds_large_frames.xml before it creates its participant (`apply_default_profile`, called
by `run_node`), unless the user set a profile file already (their choice wins; an empty value keeps Fast DDS's
defaults). Publishers decide the transport of what they send, so the profile matters on the camera side most:
start a third-party camera driver with the same variables (docs/benchmarks-ros.md).
"""

from __future__ import annotations

import os
from pathlib import Path

PROFILE_FILE = "fastdds_large_frames.xml"
# Fast DDS 2.x (ROS 2 Jazzy) reads the first, Fast DDS 3.x (Kilted and later) the second.
PROFILE_VARIABLES = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")


def profile_path() -> Path | None:
    """config/fastdds_large_frames.xml of this checkout, else of the installed package's share folder."""
    checkout = Path(__file__).resolve().parents[2] / "config" / PROFILE_FILE
    if checkout.is_file():
        return checkout
    try:
        from ament_index_python.packages import get_package_share_directory

        installed = Path(get_package_share_directory("polytask")) / "config" / PROFILE_FILE
    except (ImportError, LookupError, OSError, ValueError):
        return None
    return installed if installed.is_file() else None


def apply_default_profile(environ: dict[str, str] | None = None) -> str | None:
    """Point Fast DDS at the large-frames profile unless a profile variable is set; returns the file in force.

    Only for Fast DDS (RMW_IMPLEMENTATION unset or rmw_fastrtps_*); must run before the first participant of
    the process exists (rclpy.init).
    """
    env = os.environ if environ is None else environ
    if any(v in env for v in PROFILE_VARIABLES):
        return next((env[v] for v in PROFILE_VARIABLES if env.get(v)), None)
    rmw = env.get("RMW_IMPLEMENTATION", "")
    if rmw and not rmw.startswith("rmw_fastrtps"):
        return None
    path = profile_path()
    if path is None:
        return None
    for var in PROFILE_VARIABLES:
        env[var] = str(path)
    return str(path)
