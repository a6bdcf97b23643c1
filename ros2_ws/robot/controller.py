"""The arm controller: one state machine between commands, the guard and a backend (no ROS).

States: connecting -> ready <-> stale; close -> shutdown; any -> error (SDK error/warn code or a refused servo
call: the arm is stopped, commands are refused); any -> estop (e-stop service: emergency stop, commands
refused); connect failure -> disconnected; reset() -> resetting -> stale (or error / disconnected). Only
`reset()` leaves error, estop and disconnected. The driver node calls `tick()` at its control rate, `submit()`
for each action message and `estop()`/`reset()` from its services; everything the operator needs to know is in
`status()`.

A reset may take as long as the SDK's connect deadline (a controller that accepts TCP and never answers). It
therefore runs without holding the controller's lock: meanwhile `tick()` makes no SDK call (state `resetting`),
and `status()`, `submit()` (refused: locked) and `estop()` answer at once, so the driver keeps its control
ticks and its status going. An e-stop during a reset wins: the reset's outcome is discarded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from polytask.robot.backend import ArmBackend, ArmConnectError, ArmFault, ArmReading, FaultCodes
from polytask.robot.safety import CommandGuard, GuardConfig, Observed, Verdict

STATES = ("connecting", "ready", "stale", "error", "estop", "disconnected", "resetting", "shutdown")


class ArmController:
    def __init__(self, backend: ArmBackend, guard_config: GuardConfig,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.backend = backend
        self.guard = CommandGuard(guard_config)
        self.guard.lock()
        self.clock = clock
        self.state = "connecting"
        self.target: np.ndarray | None = None
        self.faults = FaultCodes()
        self.last_error = ""
        self.last_refusal = ""
        self.ticks = 0
        self.no_reading_ticks = 0
        self._lock = threading.RLock()
        self._connect_thread: threading.Thread | None = None
        self._connect_result: BaseException | str | None = "pending"
        self._epoch = 0  # bumped by estop() and close(): a reset that started before either does not apply

    # --- connection (in a thread, so services answer while the SDK is busy) ----------------------------------------
    def start_connect(self) -> None:
        with self._lock:
            self.state = "connecting" if self.state != "estop" else "estop"
            self._connect_result = "pending"

        def work() -> None:
            try:
                self.backend.connect()
                result: BaseException | None = None
            except (ArmConnectError, ArmFault) as err:
                result = err
            except Exception as err:  # an unexpected SDK exception must surface as a status, not kill the node
                result = ArmConnectError(f"{type(err).__name__}: {err}")
            with self._lock:
                self._connect_result = result

        self._connect_thread = threading.Thread(target=work, name="arm-connect", daemon=True)
        self._connect_thread.start()

    def _finish_connect(self) -> None:
        result = self._connect_result
        if result == "pending":
            return
        self._connect_result = "done"
        if result == "done":
            return
        if result is not None:
            self.last_error = str(result)
            if self.state != "estop":
                self.state = "disconnected"
            return
        reading = self.backend.read()
        self.target = None if reading is None else reading.ee_xyz.copy()
        if self.state == "estop":  # an e-stop during connecting stays in force
            self.backend.stop(emergency=True)
            return
        if reading is None:
            self.state, self.last_error = "disconnected", "connected but the arm reports no position"
            return
        self.state = "stale"
        self.guard.unlock()

    # --- inputs -----------------------------------------------------------------------------------------------------
    def submit(self, values: Any, observed: Observed | None = None) -> Verdict:
        """One command, with the stamp of the observation it answers (see CommandGuard.submit)."""
        with self._lock:
            verdict = self.guard.submit(values, self.clock(), observed)
            if not verdict.accepted:
                self.last_refusal = f"{verdict.reason}: {verdict.detail}"
            return verdict

    def refuse(self, reason: str, detail: str) -> Verdict:
        """A command the caller could not even read (a malformed message): counted like the guard's refusals."""
        with self._lock:
            verdict = self.guard.refuse(Verdict(False, reason, detail))
            self.last_refusal = f"{reason}: {detail}"
            return verdict

    def estop(self) -> str:
        with self._lock:
            self.guard.lock()
            self.state = "estop"
            self._epoch += 1
        self.backend.stop(emergency=True)  # outside the lock: a stuck SDK must not block status and ticks
        return "emergency stop: commands refused until reset"

    def reset(self) -> tuple[bool, str]:
        with self._lock:
            if self.state == "connecting":
                return False, "still connecting; try again when the status says disconnected or ready"
            if self.state in ("resetting", "shutdown"):
                return False, f"{self.state}; try again when the status says disconnected, error or ready"
            self.guard.lock()
            self.state = "resetting"
            epoch = self._epoch
        try:  # the slow part (SDK connect / enable), with the lock released
            self.backend.reset()
            reading = self.backend.read()
            failure = None if reading is not None else "reset: the arm reports no position"
        except (ArmConnectError, ArmFault) as err:
            reading, failure = None, f"reset failed: {err}"
        with self._lock:
            if self._epoch != epoch:  # an e-stop (or close) arrived during the reset: it stays in force
                return False, f"reset overtaken by {self.state}; reset again"
            if failure is not None:
                self.last_error = failure.removeprefix("reset failed: ")
                self.state = "disconnected" if not self.backend.connected else "error"
                return False, failure
            self.target = reading.ee_xyz.copy()
            self.faults = FaultCodes()
            self.last_error = ""
            self.state = "stale"
            self.guard.unlock()
            return True, "reset: arm ready, holding until the next command"

    # --- the control tick -------------------------------------------------------------------------------------------
    def tick(self) -> ArmReading | None:
        """One control step; returns the reading to publish (None: nothing trustworthy to publish)."""
        with self._lock:
            self.ticks += 1
            if self.state == "resetting":
                return None  # the reset owns the SDK until it ends; nothing trustworthy to publish meanwhile
            if self.state in ("connecting", "estop") and self._connect_result not in ("done",):
                self._finish_connect()
            if self.state in ("ready", "stale"):
                self._control()
            reading = self.backend.read() if self.backend.connected else None
            self.no_reading_ticks += int(reading is None)
            return reading

    def _control(self) -> None:
        faults = self.backend.fault_codes()
        if faults.faulted:
            self._fault(faults, f"controller reported error {faults.error_code}, warning {faults.warn_code}, "
                                f"api code {faults.api_code}")
            return
        plan = self.guard.plan(self.target, self.clock())
        try:
            if plan.moving:
                effective = self.backend.move_to(plan.target, plan.gripper)
                self.target = plan.target if effective is None else np.asarray(effective, dtype=np.float64)
            else:
                held = self.backend.hold()
                if held is not None:
                    self.target = np.asarray(held, dtype=np.float64)
        except ArmFault as err:
            self._fault(FaultCodes(err.error_code, err.warn_code, err.api_code), str(err))
            return
        self.state = "stale" if plan.stale else "ready"

    def _fault(self, faults: FaultCodes, message: str) -> None:
        self.faults = faults
        self.last_error = message
        self.state = "error"
        self.guard.lock()
        self.backend.stop(emergency=False)

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {"state": self.state, "backend": self.backend.name, "connected": self.backend.connected,
                    "error_code": self.faults.error_code, "warn_code": self.faults.warn_code,
                    "api_code": self.faults.api_code, "last_error": self.last_error,
                    "last_refusal": self.last_refusal, "commands": self.guard.counters.as_dict(),
                    "ticks": self.ticks, "target": None if self.target is None else self.target.round(4).tolist()}

    def close(self) -> None:
        with self._lock:
            self.guard.lock()
            self.state = "shutdown"
            self._epoch += 1
            if self.backend.connected:
                self.backend.stop(emergency=False)
            self.backend.close()
