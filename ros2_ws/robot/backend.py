"""The contract between the arm controller and an arm (real SDK or simulation), and the errors it raises."""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np


class ArmConnectError(RuntimeError):
    """The arm could not be reached or did not answer within the deadline."""


class ArmFault(RuntimeError):
    """The arm (or SDK) reported an error; the controller stops and waits for a reset."""

    def __init__(self, message: str, error_code: int = 0, warn_code: int = 0, api_code: int = 0) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.warn_code = warn_code
        self.api_code = api_code


@dataclass(frozen=True)
class ArmReading:
    """A measured arm state. Backends return None instead of a reading they cannot vouch for."""

    ee_xyz: np.ndarray  # metres, in the backend's frame
    ee_quat_xyzw: np.ndarray
    joint_names: tuple[str, ...]
    joint_positions: np.ndarray  # radians
    gripper: float  # 0 open .. 1 closed, NaN when unknown


@dataclass(frozen=True)
class FaultCodes:
    error_code: int = 0
    warn_code: int = 0
    api_code: int = 0  # SDK return code of the query itself (non-zero: the query failed, e.g. -1 disconnected)

    @property
    def faulted(self) -> bool:
        return bool(self.error_code or self.warn_code or self.api_code)


class ArmBackend(abc.ABC):
    name: str = "arm"
    frame_id: str = "world"
    episodes: int = 0  # episodes begun (simulation: resets of its task); reported in the driver's status
    successes: int = 0  # of those, the ones whose latest step met the task's success rule (simulation)

    @abc.abstractmethod
    def default_workspace(self) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) xyz box in metres used when the driver's parameters leave it empty."""

    @abc.abstractmethod
    def connect(self) -> None:
        """Connect and enable motion within the backend's deadline; raise ArmConnectError otherwise."""

    @property
    @abc.abstractmethod
    def connected(self) -> bool: ...

    @abc.abstractmethod
    def read(self) -> ArmReading | None:
        """The measured state, or None when it is unknown (never a made-up default pose)."""

    @abc.abstractmethod
    def fault_codes(self) -> FaultCodes: ...

    @abc.abstractmethod
    def move_to(self, target_xyz: np.ndarray, gripper: float | None) -> np.ndarray | None:
        """Send one servo target (metres); return the target actually commanded when the backend limited it (lag,
        speed), else None. Raise ArmFault when the arm refuses it."""

    @abc.abstractmethod
    def hold(self) -> np.ndarray | None:
        """A control tick without motion: the arm stops where it is commanded now (returned when known)."""

    @abc.abstractmethod
    def stop(self, emergency: bool) -> None:
        """Stop motion now. `emergency` uses the arm's e-stop (motion disabled until reset)."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Clear errors, re-enable motion (connecting first if needed)."""

    def render(self, size: tuple[int, int]) -> np.ndarray | None:
        """A camera frame (uint8 HxWx3) where the backend has one (simulation)."""
        return None

    def feedback(self):
        """The task's latest `Step` (state, reward, success) where the backend runs the task (simulation); None
        where nothing but the arm is measured (the real arm: `arm_task_state` of a reading is all there is)."""
        return None

    def close(self) -> None:  # noqa: B027 - optional
        """Release the connection / simulator."""


def arm_task_state(reading: ArmReading) -> np.ndarray:
    """The 10-D xArm task state (polytask.sim.xarm_suite.xarm_state) from what the arm alone measures.

    The real arm knows its end effector and gripper, not where the task's objects or goal are; so the achieved
    point and the goal are the end effector itself (as in `xarm/reach` at the goal) and the tool is the gripper's
    closure (0 when unknown). The layout stays the one every xArm task stores, so teleop and task episodes share
    one schema; a state expert needs a perception node publishing the objects to be meaningful there, a pixel
    expert does not.
    """
    from polytask.sim.xarm_suite import xarm_state

    tool = float(reading.gripper) if np.isfinite(reading.gripper) else 0.0
    return xarm_state(reading.ee_xyz, tool, reading.ee_xyz, reading.ee_xyz)
