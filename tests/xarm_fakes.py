"""Fakes for the arm-safety tests: a settable clock, the subset of the xArm SDK the real backend calls (recording
every motion call), a controller connected through them, and a controller that accepts TCP and never answers;
no ROS, no arm."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest

from polytask.robot.controller import ArmController
from polytask.robot.safety import GuardConfig
from polytask.robot.xarm_real import SDK_DEFAULT_POSE, XArmReal

LOW, HIGH = (0.2, -0.3, 0.05), (0.6, 0.3, 0.45)
CFG = GuardConfig(action_dim=4, max_step_m=0.025, workspace_low=LOW, workspace_high=HIGH, command_timeout_s=0.5)


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class FakeSDK:
    """The subset of XArmAPI the backend uses, recording every motion call; codes are settable by the test."""

    axis = 7

    def __init__(self, pose_mm=(400.0, 0.0, 200.0, 180.0, 0.0, 0.0)) -> None:
        self.pose = list(pose_mm)
        self.connected = False
        self.error_code = 0
        self.warn_code = 0
        self.servo_return = 0
        self.servo_calls: list[list[float]] = []
        self.calls: list[str] = []

    def connect(self):
        self.connected = True

    def disconnect(self):
        self.connected = False

    def _call(self, name):
        self.calls.append(name)
        return 0 if self.connected else -1

    def clean_warn(self):
        return self._call("clean_warn")

    def clean_error(self):
        if self.connected:
            self.error_code = 0
        return self._call("clean_error")

    def motion_enable(self, enable=True):
        return self._call("motion_enable")

    def set_mode(self, mode):
        return self._call(f"set_mode({mode})")

    def set_state(self, state):
        return self._call(f"set_state({state})")

    def emergency_stop(self):
        return self._call("emergency_stop")

    def get_position(self, is_radian=False):
        return (0, list(self.pose)) if self.connected else (-1, list(SDK_DEFAULT_POSE))

    def get_servo_angle(self, is_radian=True):
        return (0, [0.1] * 7) if self.connected else (-1, [0.0] * 7)

    def get_err_warn_code(self):
        return (0, [self.error_code, self.warn_code]) if self.connected else (-1, [0, 0])

    def set_servo_cartesian(self, pose, speed=None, is_radian=False):
        if not self.connected:
            return -1
        self.servo_calls.append(list(pose))
        if self.servo_return == 0:
            self.pose[:3] = pose[:3]
        return self.servo_return


def make_controller(listener_port, sdk=None):
    sdk = sdk or FakeSDK()
    backend = XArmReal("127.0.0.1", 2.0, port=listener_port, api_factory=lambda ip: sdk)
    clock = FakeClock()
    ctl = ArmController(backend, CFG, clock=clock)
    ctl.start_connect()
    ctl._connect_thread.join(5)
    ctl.tick()
    assert ctl.state == "stale", ctl.status()
    return ctl, sdk, clock


@contextmanager
def silent_controller() -> Iterator[tuple[str, list[socket.socket]]]:
    """A controller on a random loopback address that accepts TCP on port 502 and never answers (the SDK's
    constructor would block 254 s on it): yields (host, the connections it accepted). Skips where binding port
    502 needs root."""
    host = f"127.0.{np.random.randint(1, 250)}.{np.random.randint(2, 250)}"
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        srv.bind((host, 502))
    except PermissionError:
        srv.close()
        pytest.skip("binding port 502 needs root")
    srv.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def loop() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(srv.accept()[0])
            except OSError:
                continue

    threading.Thread(target=loop, daemon=True).start()
    try:
        yield host, accepted
    finally:
        stop.set()
        for conn in accepted:
            conn.close()
        srv.close()
