"""The simulated xArm behind the same contract as the real one: any registered `xarm/*` task, as the arm.

Why the task and not a bare arm: the task already holds the simulated arm (polytask.sim.xarm_arm.SimArm) in the
scene with the task's objects, its workspace box, its tool (gripper, or the pour cup's tilt) and its success
rule. The driver drives that one copy of the physics: each control tick is one `task.step` (a move: the commanded
displacement expressed as the task's action; a hold: the zero displacement with the tool left as it was), so the
driver publishes the task's own state, reward and success (`feedback()`), and a teleop recording stores exactly
the state layout a scripted episode of the task stores. Resets draw the task's next initialisation from
`seed`, `seed + 1`, ... like the sim bridge.

It also serves fault drills: `inject_fault(error_code, warn_code)` makes the simulated controller report codes
like the SDK's `get_err_warn_code`, so the driver's stop/report/reset path runs on the simulated arm exactly as it
would on the real one.
"""

from __future__ import annotations

import numpy as np

from polytask.robot.backend import ArmBackend, ArmConnectError, ArmFault, ArmReading, FaultCodes
from polytask.sim.task import Step

_DOWN_XYZW = np.array([1.0, 0.0, 0.0, 0.0])  # SimArm's mocap orientation (w,x,y,z = 0,1,0,0): gripper down


def check_xarm_task(task: str) -> str:
    """`task` if it names a registered xArm task; a ValueError naming the known ones otherwise."""
    from polytask.sim import registry

    known = registry.names("xarm/*")
    if task not in known:
        raise ValueError(f"task {task!r} is not a simulated xArm task; expected one of {', '.join(known)}")
    return task


class XArmSim(ArmBackend):
    name = "sim"
    frame_id = "world"

    def __init__(self, task: str = "xarm/reach", quality: str = "fast", seed: int = 0) -> None:
        self.task_name = check_xarm_task(task)
        self.quality = quality
        self.seed = int(seed)
        self.task = self._build()  # built here (the workspace box is the task's); connect() starts an episode
        self._connected = False
        self._step: Step | None = None
        self._finished_successes = 0
        self._tool = -1.0  # the last tool command (action[3]); a hold keeps it
        self._fault = FaultCodes()
        self._stopped = False

    def _build(self):
        from polytask.sim import registry

        try:
            return registry.make(self.task_name, render=False, quality=self.quality)
        except (ValueError, RuntimeError) as err:
            raise ArmConnectError(f"simulated xArm (task {self.task_name!r}) could not start: {err}") from err

    @property
    def arm(self):
        return self.task.arm if self._connected else None

    def default_workspace(self) -> tuple[np.ndarray, np.ndarray]:
        arm = self.task.arm
        return arm.workspace_low.copy(), arm.workspace_high.copy()

    def connect(self) -> None:
        if self.task is None:
            self.task = self._build()
        self._new_episode()
        self._connected = True

    @property
    def successes(self) -> int:  # episodes ended with the task's success, and the current one if it succeeds now
        return self._finished_successes + int(self._step is not None and bool(self._step.success))

    def _new_episode(self) -> None:
        if self._step is not None and self._step.success:
            self._finished_successes += 1
        self._step = self.task.reset(seed=self.seed)
        self.seed += 1
        self.episodes += 1
        # until a command sets it, a hold keeps the tool as the reset left it (state slot 3, 0..1 -> -1 / +1)
        self._tool = 1.0 if float(self._step.state[3]) > 0.5 else -1.0

    @property
    def connected(self) -> bool:
        return self._connected

    def read(self) -> ArmReading | None:
        arm = self.arm
        if arm is None:
            return None
        return ArmReading(ee_xyz=arm.ee_position(), ee_quat_xyzw=_DOWN_XYZW.copy(),
                          joint_names=tuple(arm.joint_names()), joint_positions=arm.joint_positions(),
                          gripper=arm.gripper_closure())

    def feedback(self) -> Step | None:
        """The task's latest step (state, reward, success) after the last tick or reset."""
        return self._step

    def inject_fault(self, error_code: int = 0, warn_code: int = 0) -> None:
        """Make the simulated controller report these codes until reset() (fault drills and tests)."""
        self._fault = FaultCodes(error_code=int(error_code), warn_code=int(warn_code))

    def fault_codes(self) -> FaultCodes:
        return self._fault if self._connected else FaultCodes(api_code=-1)

    def _advance(self, delta_m: np.ndarray) -> np.ndarray:
        """One task step moving the target by `delta_m`; returns the target the arm was actually given."""
        from polytask.sim.xarm_arm import MAX_STEP_M

        action = np.append(np.clip(np.asarray(delta_m, dtype=np.float64) / MAX_STEP_M, -1.0, 1.0), self._tool)
        self._step = self.task.step(action)
        return self.task.arm.target_position()  # clipped to the task's rule and box, and SimArm's lag limit

    def move_to(self, target_xyz: np.ndarray, gripper: float | None) -> np.ndarray | None:
        if not self._connected:
            raise ArmFault("simulated xArm not started", api_code=-1)
        if self._stopped or self._fault.faulted:
            raise ArmFault("simulated xArm is stopped; reset first", self._fault.error_code, self._fault.warn_code)
        if gripper is not None:
            self._tool = float(np.clip(gripper, -1.0, 1.0))
        return self._advance(np.asarray(target_xyz, dtype=np.float64) - self.task.arm.target_position())

    def hold(self) -> np.ndarray | None:
        if not self._connected:
            return None
        return self._advance(np.zeros(3))

    def stop(self, emergency: bool) -> None:
        self._stopped = True
        arm = self.arm
        if arm is not None:  # freeze the target where the arm is now
            arm.move(arm.ee_position() - arm.target_position())

    def reset(self) -> None:
        if not self._connected:
            self.connect()
        else:
            self._new_episode()
        self._fault = FaultCodes()
        self._stopped = False

    def render(self, size: tuple[int, int]) -> np.ndarray | None:
        if not self._connected:
            return None
        return self.task.arm.render(self.task.camera, size=size)

    def close(self) -> None:
        if self.task is not None:
            self.task.close()
            self.task = None
        self._connected = False
        self._step = None
