"""The simulated xArm behind the same contract as the real one: the MuJoCo SimArm from polytask.sim.xarm_arm.

It also serves fault drills: `inject_fault(error_code, warn_code)` makes the simulated controller report codes
like the SDK's `get_err_warn_code`, so the driver's stop/report/reset path runs on the simulated arm exactly as it
would on the real one.
"""

from __future__ import annotations

import numpy as np

from polytask.robot.backend import ArmBackend, ArmConnectError, ArmFault, ArmReading, FaultCodes

_DOWN_XYZW = np.array([1.0, 0.0, 0.0, 0.0])  # SimArm's mocap orientation (w,x,y,z = 0,1,0,0): gripper down


class XArmSim(ArmBackend):
    name = "sim"
    frame_id = "world"

    def __init__(self, scene: str = "reach", quality: str = "fast", camera: str = "") -> None:
        self.scene = scene
        self.quality = quality
        self.camera = camera
        self.arm = None
        self._fault = FaultCodes()
        self._stopped = False

    def default_workspace(self) -> tuple[np.ndarray, np.ndarray]:
        from polytask.sim.xarm_arm import WORKSPACE_HIGH, WORKSPACE_LOW

        return WORKSPACE_LOW.copy(), WORKSPACE_HIGH.copy()

    def connect(self) -> None:
        from polytask.sim.xarm_arm import SimArm

        try:
            self.arm = SimArm(self.scene, quality=self.quality)
        except (ValueError, RuntimeError) as err:
            raise ArmConnectError(f"simulated xArm (scene {self.scene!r}) could not start: {err}") from err
        self.arm.reset()

    @property
    def connected(self) -> bool:
        return self.arm is not None

    def read(self) -> ArmReading | None:
        if self.arm is None:
            return None
        return ArmReading(ee_xyz=self.arm.ee_position(), ee_quat_xyzw=_DOWN_XYZW.copy(),
                          joint_names=tuple(self.arm.joint_names()), joint_positions=self.arm.joint_positions(),
                          gripper=self.arm.gripper_closure())

    def inject_fault(self, error_code: int = 0, warn_code: int = 0) -> None:
        """Make the simulated controller report these codes until reset() (fault drills and tests)."""
        self._fault = FaultCodes(error_code=int(error_code), warn_code=int(warn_code))

    def fault_codes(self) -> FaultCodes:
        return self._fault if self.arm is not None else FaultCodes(api_code=-1)

    def move_to(self, target_xyz: np.ndarray, gripper: float | None) -> np.ndarray | None:
        if self.arm is None:
            raise ArmFault("simulated xArm not started", api_code=-1)
        if self._stopped or self._fault.faulted:
            raise ArmFault("simulated xArm is stopped; reset first", self._fault.error_code, self._fault.warn_code)
        delta = np.asarray(target_xyz, dtype=np.float64) - self.arm.target_position()
        self.arm.move(delta, gripper=gripper)
        return self.arm.target_position()  # SimArm limits how far the target may run ahead of the arm

    def hold(self) -> np.ndarray | None:
        if self.arm is None:
            return None
        self.arm.move(np.zeros(3))
        return self.arm.target_position()

    def stop(self, emergency: bool) -> None:
        self._stopped = True
        if self.arm is not None:  # freeze the target where the arm is now
            self.arm.move(self.arm.ee_position() - self.arm.target_position())

    def reset(self) -> None:
        if self.arm is None:
            self.connect()
        else:
            self.arm.reset()
        self._fault = FaultCodes()
        self._stopped = False

    def render(self, size: tuple[int, int]) -> np.ndarray | None:
        if self.arm is None:
            return None
        return self.arm.render(self.camera, size=size) if self.camera else self.arm.render(size=size)

    def close(self) -> None:
        if self.arm is not None:
            self.arm.close()
            self.arm = None



