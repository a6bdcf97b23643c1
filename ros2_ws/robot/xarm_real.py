"""The real xArm through xarm-python-sdk, made safe to call from a ROS node.

What the SDK (xarm-python-sdk 1.18.4) does that we must not inherit, measured against a silent TCP peer and an
unconnected SDK (tests/test_xarm_safety.py checks the backend against both):
- `XArmAPI(ip)` against a peer that accepts TCP but never answers blocks for 254 s. We construct with
  `do_not_open=True`, probe TCP 502 with a short timeout, then run `connect()` and the set-up calls in a worker
  thread and give up at our own deadline (the thread is abandoned and the API disconnected).
- Unconnected, every call returns -1 and `position` returns a made-up default pose [201.5, 0, 140.5, 180, 0, 0].
  `read()` therefore uses `get_position()` and its return code, never the cached `position`, and returns None
  unless the call succeeded on a connected arm.
- Servo Cartesian streaming needs mode 1 and state 0; targets are mm and degrees. Controller error/warn codes
  (`get_err_warn_code`) and non-zero API return codes become ArmFault / FaultCodes so the controller stops.
"""

from __future__ import annotations

import contextlib
import io
import math
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from polytask.robot.backend import ArmBackend, ArmConnectError, ArmFault, ArmReading, FaultCodes

XARM_TCP_PORT = 502
SDK_DEFAULT_POSE = (201.5, 0.0, 140.5, 180.0, 0.0, 0.0)  # what an unconnected XArmAPI reports as `position`
DOWN_RPY_DEG = (180.0, 0.0, 0.0)  # gripper pointing down: the fixed orientation of every servo target
# A box in front of the base (metres, base frame) used when the driver's parameters leave it empty.
DEFAULT_WORKSPACE_LOW = np.array([0.20, -0.30, 0.05])
DEFAULT_WORKSPACE_HIGH = np.array([0.60, 0.30, 0.45])


def _make_sdk_api(ip: str) -> Any:
    with contextlib.redirect_stdout(io.StringIO()):  # the SDK prints its version on import
        from xarm.wrapper import XArmAPI
    return XArmAPI(ip, do_not_open=True, is_radian=False)


def rpy_deg_to_quat_xyzw(roll: float, pitch: float, yaw: float) -> np.ndarray:
    r, p, y = (math.radians(v) / 2 for v in (roll, pitch, yaw))
    cr, sr, cp, sp, cy, sy = math.cos(r), math.sin(r), math.cos(p), math.sin(p), math.cos(y), math.sin(y)
    return np.array([sr * cp * cy - cr * sp * sy, cr * sp * cy + sr * cp * sy,
                     cr * cp * sy - sr * sp * cy, cr * cp * cy + sr * sp * sy])


class XArmReal(ArmBackend):
    name = "real"
    frame_id = "link_base"

    def __init__(self, ip: str, connect_timeout_s: float = 5.0, *, port: int = XARM_TCP_PORT,
                 speed_mm_s: float = 100.0, use_gripper: bool = False, servo_hz: float = 0.0,
                 api_factory: Callable[[str], Any] | None = None) -> None:
        if not ip:
            raise ValueError("XArmReal: parameter 'ip' is empty; expected the controller's IP address")
        if not connect_timeout_s > 0:
            raise ValueError(f"XArmReal: connect_timeout_s {connect_timeout_s}: expected > 0 seconds")
        self.ip = ip
        self.port = port
        self.connect_timeout_s = float(connect_timeout_s)
        self.speed_mm_s = float(speed_mm_s)
        if servo_hz < 0 or servo_hz > 1000:
            raise ValueError(f"XArmReal: servo_hz {servo_hz}: expected 0 (one servo call per move) or 1..1000 Hz")
        self.servo_hz = float(servo_hz)
        self.max_lag_mm = 50.0  # the streamed goal never runs further ahead of the last setpoint
        self._stream_lock = threading.Lock()
        self._goal_mm: np.ndarray | None = None  # where the streamer is heading
        self._sent_mm: np.ndarray | None = None  # the last setpoint sent
        self._stream_error = 0
        self._stream_thread: threading.Thread | None = None
        self._stream_stop = threading.Event()
        self.use_gripper = use_gripper
        self._api_factory = api_factory or _make_sdk_api
        self.api: Any = None
        self._last_gripper: float | None = None

    def default_workspace(self) -> tuple[np.ndarray, np.ndarray]:
        return DEFAULT_WORKSPACE_LOW.copy(), DEFAULT_WORKSPACE_HIGH.copy()

    # --- connection -------------------------------------------------------------------------------------------------
    def connect(self) -> None:
        deadline = time.monotonic() + self.connect_timeout_s
        try:  # fail fast when nothing listens (refused / unroutable) before the SDK gets a chance to retry
            with socket.create_connection((self.ip, self.port), timeout=self.connect_timeout_s):
                pass
        except OSError as err:
            raise ArmConnectError(f"xArm at {self.ip}:{self.port} is not reachable ({err})") from err
        api = self._api_factory(self.ip)
        result: dict[str, Any] = {}
        abandoned = threading.Event()

        def work() -> None:
            try:
                api.connect()
                if not api.connected:
                    raise ArmConnectError("the SDK did not connect")
                if abandoned.is_set():  # the controller answered after our deadline: do not leave it connected
                    self._quiet_disconnect(api)
                    return
                self._enable(api)
                result["ok"] = True
            except BaseException as err:
                result["error"] = err

        worker = threading.Thread(target=work, name=f"xarm-connect-{self.ip}", daemon=True)
        worker.start()
        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.is_alive() or not result.get("ok"):
            abandoned.set()
            threading.Thread(target=self._quiet_disconnect, args=(api,), daemon=True).start()
            if worker.is_alive():
                raise ArmConnectError(f"xArm at {self.ip} accepted TCP but did not answer within the connect "
                                      f"deadline of {self.connect_timeout_s:g} s")
            raise ArmConnectError(f"xArm at {self.ip}: connect failed ({result.get('error')})")
        self.api = api

    @staticmethod
    def _quiet_disconnect(api: Any) -> None:
        with contextlib.suppress(Exception):
            api.disconnect()

    def _enable(self, api: Any) -> None:
        """Clear errors and enter servo Cartesian mode (mode 1, state 0); raise ArmFault on a refusal."""
        for name, call in (("clean_warn", lambda: api.clean_warn()), ("clean_error", lambda: api.clean_error()),
                           ("motion_enable", lambda: api.motion_enable(enable=True)),
                           ("set_mode(1)", lambda: api.set_mode(1)), ("set_state(0)", lambda: api.set_state(0))):
            code = call()
            if code != 0:
                raise ArmFault(f"xArm {name} returned {code}", api_code=int(code))
        if self.use_gripper:
            api.set_gripper_enable(True)

    @property
    def connected(self) -> bool:
        return self.api is not None and bool(self.api.connected)

    # --- readings ---------------------------------------------------------------------------------------------------
    def read(self) -> ArmReading | None:
        if not self.connected:
            return None
        code, pose = self.api.get_position(is_radian=False)
        if code != 0 or pose is None or len(pose) < 6 or not np.all(np.isfinite(pose[:6])):
            return None
        code_j, angles = self.api.get_servo_angle(is_radian=True)
        n = int(getattr(self.api, "axis", 7) or 7)
        if code_j != 0 or angles is None or len(angles) < n:
            return None
        return ArmReading(ee_xyz=np.asarray(pose[:3], dtype=np.float64) / 1000.0,
                          ee_quat_xyzw=rpy_deg_to_quat_xyzw(*pose[3:6]),
                          joint_names=tuple(f"joint{i + 1}" for i in range(n)),
                          joint_positions=np.asarray(angles[:n], dtype=np.float64), gripper=math.nan)

    def fault_codes(self) -> FaultCodes:
        if not self.connected:
            return FaultCodes(api_code=-1)
        if self._stream_error:
            return FaultCodes(api_code=self._stream_error)
        code, codes = self.api.get_err_warn_code()
        if code != 0:
            return FaultCodes(api_code=int(code))
        return FaultCodes(error_code=int(codes[0]), warn_code=int(codes[1]))

    # --- motion -----------------------------------------------------------------------------------------------------
    def move_to(self, target_xyz: np.ndarray, gripper: float | None) -> np.ndarray | None:
        if not self.connected:
            raise ArmFault("xArm not connected", api_code=-1)
        goal = np.asarray(target_xyz, dtype=np.float64) * 1000.0
        if self.servo_hz > 0:
            effective = self._stream_to(goal) / 1000.0
        else:
            self._send(goal)
            effective = None
        if self.use_gripper and gripper is not None and (self._last_gripper is None
                                                          or abs(gripper - self._last_gripper) > 0.1):
            # -1 open .. +1 closed -> 850 (open) .. 0 (closed) in the SDK's gripper units
            self.api.set_gripper_position(float((1.0 - gripper) / 2.0 * 850.0), wait=False)
            self._last_gripper = gripper
        return effective

    def _send(self, xyz_mm: np.ndarray) -> None:
        pose = [*xyz_mm.tolist(), *DOWN_RPY_DEG]
        code = self.api.set_servo_cartesian(pose, speed=self.speed_mm_s, is_radian=False)
        if code != 0:
            raise ArmFault(f"xArm set_servo_cartesian returned {code}", api_code=int(code))

    # --- interpolated streaming: servo mode wants small steps at a steady high rate, not 2.5 cm jumps at 10 Hz ----
    def _stream_to(self, goal_mm: np.ndarray) -> np.ndarray:
        """Head the streamer for goal_mm, at most max_lag_mm ahead of the last setpoint; return the goal used."""
        if self._stream_error:
            raise ArmFault(f"xArm set_servo_cartesian returned {self._stream_error}", api_code=self._stream_error)
        with self._stream_lock:
            if self._sent_mm is None:
                reading = self.read()
                if reading is None:
                    raise ArmFault("xArm position unknown; cannot start streaming", api_code=-1)
                self._sent_mm = reading.ee_xyz * 1000.0
            lag = goal_mm - self._sent_mm
            dist = float(np.linalg.norm(lag))
            if dist > self.max_lag_mm:  # never wind up a target far ahead of the arm (the watchdog must stop it)
                goal_mm = self._sent_mm + lag * (self.max_lag_mm / dist)
            self._goal_mm = goal_mm.copy()
        if self._stream_thread is None or not self._stream_thread.is_alive():
            self._stream_stop.clear()
            self._stream_thread = threading.Thread(target=self._stream_loop, name="xarm-servo", daemon=True)
            self._stream_thread.start()
        return goal_mm

    def _stream_loop(self) -> None:
        """Send setpoints at servo_hz, each at most speed_mm_s / servo_hz from the last, until the goal is reached."""
        period = 1.0 / self.servo_hz
        max_step = self.speed_mm_s * period
        next_t = time.monotonic()
        while not self._stream_stop.is_set():
            with self._stream_lock:
                if self._goal_mm is None or self._sent_mm is None:
                    return
                delta = self._goal_mm - self._sent_mm
                dist = float(np.linalg.norm(delta))
                if dist < 1e-6:
                    return  # arrived: servo mode holds the last setpoint
                step = delta if dist <= max_step else delta * (max_step / dist)
                setpoint = self._sent_mm + step
            try:
                self._send(setpoint)
            except ArmFault as err:
                self._stream_error = err.api_code or -1
                return
            with self._stream_lock:
                self._sent_mm = setpoint
            next_t += period
            time.sleep(max(0.0, next_t - time.monotonic()))

    def _halt_stream(self) -> None:
        self._stream_stop.set()
        with self._stream_lock:
            self._goal_mm = self._sent_mm.copy() if self._sent_mm is not None else None
        thread = self._stream_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(1.0)

    def hold(self) -> np.ndarray | None:
        """No fresh command: stop the streamer where it is (servo mode then holds that setpoint)."""
        if self.servo_hz <= 0:
            return None
        self._halt_stream()
        return None if self._sent_mm is None else self._sent_mm / 1000.0

    def stop(self, emergency: bool) -> None:
        self._halt_stream()
        if self.api is None:
            return
        with contextlib.suppress(Exception):
            if emergency:
                self.api.emergency_stop()
            else:
                self.api.set_state(4)

    def reset(self) -> None:
        self._halt_stream()
        self._stream_error = 0
        self._sent_mm = self._goal_mm = None  # re-read the position before streaming again
        if not self.connected:
            self.connect()
            return
        self._enable(self.api)

    def close(self) -> None:
        if self.api is not None:
            self.stop(emergency=False)
            self._quiet_disconnect(self.api)
            self.api = None
