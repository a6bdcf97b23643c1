"""Joystick reader: the Linux joystick device (/dev/input/jsN) -> sensor_msgs/Joy, for machines without `joy`.

The kernel's joystick API delivers 8-byte `struct js_event {u32 time_ms; s16 value; u8 type; u8 number}` records
(type 1 button, 2 axis, | 0x80 for the initial state burst). Axes are scaled to [-1, 1] and, like the ROS `joy`
node, negated by default (stick up / left = +1). A Joy message is published on every change and repeated at
`autorepeat_rate` Hz while the device is alive, so a held stick keeps the teleop command alive and silence really
means the joystick is gone. When the device disappears (unplugged: ENODEV / EOF / file gone) the node reports it
on joy/status, publishes nothing, and reopens it every `reconnect_period_s`.
"""

from __future__ import annotations

import errno
import os
import struct
import sys
import time

from rclpy.node import Node
from sensor_msgs.msg import Joy

from polytask.ros import topics
from polytask.ros.node_base import Param, declare_params, json_string, run_node

JS_EVENT = struct.Struct("<IhBB")  # time (ms), value, type, number
JS_EVENT_BUTTON, JS_EVENT_AXIS, JS_EVENT_INIT = 0x01, 0x02, 0x80
MAX_INDEX = 64  # the kernel allows up to ABS_CNT axes / KEY_MAX buttons; no pad has more than this

PARAMS = (
    Param("device", "/dev/input/js0", "joystick device file (or a FIFO/file producing js_event records)"),
    Param("poll_hz", 200.0, "how often the device is read", min=1.0, max=2000.0),
    Param("autorepeat_rate", 20.0, "republish the current state at this rate (Hz); 0 = only on change", min=0.0,
          max=1000.0),
    Param("invert_axes", True, "negate axes like the ROS joy node (stick up/left = +1)"),
    Param("deadzone", 0.05, "axis values with |v| below this are published as 0", min=0.0, max=0.9),
    Param("reconnect_period_s", 0.5, "retry opening a lost device this often", min=0.05, max=60.0),
    Param("frame_id", "joy", "header.frame_id of published messages"),
)


def decode_events(buffer: bytes) -> tuple[list[tuple[int, int, int, int]], bytes]:
    """Split a byte buffer into js_event tuples (time, value, type, number) and the incomplete remainder."""
    n = len(buffer) // JS_EVENT.size
    events = [JS_EVENT.unpack_from(buffer, i * JS_EVENT.size) for i in range(n)]
    return events, buffer[n * JS_EVENT.size:]


class JoyReaderNode(Node):
    def __init__(self) -> None:
        super().__init__("joy_reader")
        self.p = declare_params(self, PARAMS)
        self.pub = topics.publisher(self, "joy")
        self.pub_status = topics.publisher(self, "joy_status")
        self.fd: int | None = None
        self.axes: list[float] = []
        self.buttons: list[int] = []
        self.counters = {"events": 0, "published": 0, "reconnects": 0, "losses": 0, "bad_events": 0}
        self.last_error = ""
        self._rest = b""
        self._ever = False
        self._live = False  # data arrived since the device was opened (a real js device sends its state at once)
        self._next_open = 0.0
        self._last_pub = 0.0
        self._open()
        self.timer = self.create_timer(1.0 / self.p.poll_hz, self._poll)
        self.status_timer = self.create_timer(1.0, self._publish_status)

    def _open(self) -> None:
        self._next_open = time.monotonic() + self.p.reconnect_period_s
        try:
            self.fd = os.open(self.p.device, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as err:
            self.last_error = f"cannot open joystick {self.p.device!r}: {err.strerror}"
            return
        self._rest = b""
        self._live = False
        self.axes, self.buttons = [], []  # the kernel sends the initial state again after opening

    def _went_live(self) -> None:
        self._live = True
        if self._ever:
            self.counters["reconnects"] += 1
            self.get_logger().info(f"joystick {self.p.device!r} reconnected")
        self._ever = True
        self.last_error = ""
        self._publish_status()

    def _lose(self, reason: str, eof: bool = False) -> None:
        if eof and not self._live:  # opened, no data yet (a FIFO without writer): keep it open and wait
            self.last_error = self.last_error or "waiting for the device to send its state"
            return
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        self._next_open = time.monotonic() + self.p.reconnect_period_s
        if not self._live:
            self.last_error = reason
            return
        self._live = False
        self.counters["losses"] += 1
        self.get_logger().warn(f"joystick {self.p.device!r} lost: {reason}; retrying every "
                               f"{self.p.reconnect_period_s:g} s")
        self.last_error = reason
        self._publish_status()

    def _poll(self) -> None:
        if self.fd is None:
            if time.monotonic() >= self._next_open:
                self._open()
            if self.fd is None:
                return
        changed = False
        while True:
            try:
                chunk = os.read(self.fd, JS_EVENT.size * 64)
            except BlockingIOError:
                break
            except OSError as err:  # ENODEV when unplugged
                self._lose(f"read failed: {errno.errorcode.get(err.errno, err.errno)} {err.strerror}")
                return
            if not chunk:  # EOF: the writer (FIFO) or the file is gone
                self._lose("end of stream (device closed)", eof=True)
                return
            if not self._live:
                self._went_live()
            events, self._rest = decode_events(self._rest + chunk)
            for _t, value, etype, number in events:
                changed |= self._apply(value, etype, number)
            if len(chunk) < JS_EVENT.size * 64:
                break
        now = time.monotonic()
        repeat = self.p.autorepeat_rate > 0 and now - self._last_pub >= 1.0 / self.p.autorepeat_rate
        if (changed or repeat) and (self.axes or self.buttons):
            self._publish(now)

    def _apply(self, value: int, etype: int, number: int) -> bool:
        kind = etype & ~JS_EVENT_INIT
        if number >= MAX_INDEX or kind not in (JS_EVENT_BUTTON, JS_EVENT_AXIS):
            self.counters["bad_events"] += 1
            self.last_error = f"ignored js_event type {etype:#x} number {number}"
            return False
        self.counters["events"] += 1
        if kind == JS_EVENT_AXIS:
            if number >= len(self.axes):
                self.axes.extend([0.0] * (number + 1 - len(self.axes)))
            v = max(-1.0, min(1.0, value / 32767.0))
            v = -v if self.p.invert_axes else v
            self.axes[number] = 0.0 if abs(v) < self.p.deadzone else v
        else:
            if number >= len(self.buttons):
                self.buttons.extend([0] * (number + 1 - len(self.buttons)))
            self.buttons[number] = 1 if value else 0
        return True

    def _publish(self, now: float) -> None:
        msg = Joy()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.p.frame_id
        msg.axes = [float(a) for a in self.axes]
        msg.buttons = [int(b) for b in self.buttons]
        self.pub.publish(msg)
        self._last_pub = now
        self.counters["published"] += 1

    def _publish_status(self) -> None:
        self.pub_status.publish(json_string({"connected": self._live, "device": self.p.device,
                                             **self.counters, "last_error": self.last_error}))

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def main(args: list[str] | None = None) -> int:
    return run_node(JoyReaderNode, args)


if __name__ == "__main__":
    sys.exit(main())
