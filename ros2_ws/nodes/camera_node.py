"""Camera: an OpenCV device (index, file, image sequence or URL) -> sensor_msgs/Image at a set rate and size.

Frames are cropped to `crop` = [x, y, w, h] (the authors crop the 640x480 camera to the work area) and resized to
`width` x `height` with INTER_AREA by the one frame-preprocessing function (`polytask.sim.frames.prepare_frame`,
the one the recorder, the trainer and the policy server use), then published as rgb8 on camera/image_raw, each
frame with a sensor_msgs/CameraInfo of the same stamp on camera/camera_info: the calibration given in source pixels
(`camera_matrix`, `distortion`) carried through the crop and the resize; without one, K is all zero
(uncalibrated, as image_pipeline reads it). When the device disappears
(unplugged camera, stream down, file or folder gone) the node keeps running: it reports `connected: false` with the
reason on camera/status, stops publishing (so consumers see silence, not stale frames), and retries every
`reconnect_period_s`. A file or image-sequence source that reaches its end replays from the start (`loop`).

    python -m polytask.nodes.camera_node --ros-args -p device:=0 -p crop:="[160, 80, 320, 320]"
"""

from __future__ import annotations

import os
import sys
import time

import cv2
from rclpy.node import Node

from polytask.ros import topics
from polytask.ros.image_conversion import numpy_to_image
from polytask.ros.node_base import Param, ParamError, declare_params, json_string, run_node
from polytask.sim.frames import crop_box, prepare_frame

PARAMS = (
    Param("device", "0", "OpenCV source: camera index ('0'), video file, image sequence ('dir/f_%03d.png') or URL"),
    Param("rate_hz", 30.0, "publish rate (frames are read at this rate)", min=0.5, max=120.0),
    Param("width", 84, "published width in pixels (after crop)", min=1, max=4096),
    Param("height", 84, "published height in pixels (after crop)", min=1, max=4096),
    Param("crop", [], "crop region [x, y, w, h] in source pixels before resizing; [] = whole frame",
          type="int_array", min=0),
    Param("frame_id", "camera", "header.frame_id of published images"),
    Param("reconnect_period_s", 1.0, "retry opening a lost device this often", min=0.05, max=60.0),
    Param("loop", True, "replay a file / image sequence from the start when it ends"),
    Param("capture_width", 0, "ask the device for this capture width (0 = its default)", min=0, max=8192),
    Param("capture_height", 0, "ask the device for this capture height (0 = its default)", min=0, max=8192),
    Param("camera_matrix", [], "intrinsics K of the source frames, row-major [fx, 0, cx, 0, fy, cy, 0, 0, 1] "
          "(pixels); [] = uncalibrated (CameraInfo K all zero)", type="double_array"),
    Param("distortion", [], "plumb_bob distortion [k1, k2, t1, t2, k3] of the source frames; [] = none",
          type="double_array"),
)


def camera_info_for(frame_shape: tuple[int, int], crop: list[int], width: int, height: int, camera_matrix: list[float],
                    distortion: list[float], frame_id: str, stamp=None):
    """The CameraInfo of a published frame: source intrinsics shifted by the crop and scaled by the resize."""
    from sensor_msgs.msg import CameraInfo

    x0, y0, x1, y1 = crop_box(frame_shape, crop)
    cw, ch = x1 - x0, y1 - y0
    info = CameraInfo(width=int(width), height=int(height), distortion_model="plumb_bob")
    info.header.frame_id = frame_id
    if stamp is not None:
        info.header.stamp = stamp
    if camera_matrix:
        sx, sy = width / cw, height / ch
        fx, cx, fy, cy = camera_matrix[0], camera_matrix[2], camera_matrix[4], camera_matrix[5]
        k = [fx * sx, 0.0, (cx - x0) * sx, 0.0, fy * sy, (cy - y0) * sy, 0.0, 0.0, 1.0]
        info.k = k
        info.p = [k[0], 0.0, k[2], 0.0, 0.0, k[4], k[5], 0.0, 0.0, 0.0, 1.0, 0.0]
        info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        info.d = list(distortion) if distortion else [0.0] * 5
    return info


def is_file_source(device: str) -> bool:
    return not device.isdigit() and "://" not in device


def source_present(device: str) -> bool:
    """Whether a file source still exists (for a %-pattern: its folder); devices and URLs cannot be checked."""
    if not is_file_source(device):
        return True
    if "%" in device:
        return os.path.isdir(os.path.dirname(device) or ".")
    return os.path.exists(device)


class CameraNode(Node):
    def __init__(self) -> None:
        super().__init__("camera")
        self.p = declare_params(self, PARAMS)
        if self.p.crop and (len(self.p.crop) != 4 or self.p.crop[2] <= 0 or self.p.crop[3] <= 0):
            raise ParamError(f"node 'camera': parameter 'crop' = {self.p.crop}: expected [x, y, w, h] with w, h > 0 "
                             "or [] for no crop")
        if self.p.camera_matrix and len(self.p.camera_matrix) != 9:
            raise ParamError(f"node 'camera': parameter 'camera_matrix' = {self.p.camera_matrix}: expected 9 values "
                             "(row-major 3x3 K) or [] for uncalibrated")
        if self.p.distortion and len(self.p.distortion) != 5:
            raise ParamError(f"node 'camera': parameter 'distortion' = {self.p.distortion}: expected 5 values "
                             "[k1, k2, t1, t2, k3] or []")
        self.pub = topics.publisher(self, "image")
        self.pub_info = topics.publisher(self, "camera_info")
        self.pub_status = topics.publisher(self, "camera_status")
        self.cap = None
        self.connected = False
        self.counters = {"frames": 0, "reconnects": 0, "losses": 0, "loops": 0, "bad_frames": 0}
        self.last_error = ""
        self._next_open = 0.0
        self._ever_connected = False
        self._open()
        self.timer = self.create_timer(1.0 / self.p.rate_hz, self._tick)
        self.status_timer = self.create_timer(1.0, self._publish_status)

    def _source(self):
        return int(self.p.device) if self.p.device.isdigit() else self.p.device

    def _open(self) -> bool:
        self._next_open = time.monotonic() + self.p.reconnect_period_s
        cap = cv2.VideoCapture(self._source())
        if not cap.isOpened() or not source_present(self.p.device):
            cap.release()
            self.last_error = f"cannot open camera device {self.p.device!r}"
            return False
        if self.p.capture_width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.p.capture_width)
        if self.p.capture_height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.p.capture_height)
        self.cap = cap
        if self._ever_connected and not self.connected:
            self.counters["reconnects"] += 1
            self.get_logger().info(f"camera {self.p.device!r} reconnected")
        self.connected = self._ever_connected = True
        self.last_error = ""
        self._publish_status()
        return True

    def _lose(self, reason: str) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None
        if self.connected:
            self.counters["losses"] += 1
            self.get_logger().warn(f"camera {self.p.device!r} lost: {reason}; retrying every "
                                   f"{self.p.reconnect_period_s:g} s")
        self.connected = False
        self.last_error = reason
        self._next_open = time.monotonic() + self.p.reconnect_period_s
        self._publish_status()

    def _tick(self) -> None:
        if self.cap is None:
            if time.monotonic() >= self._next_open:
                self._open()
            if self.cap is None:
                return
        ok, frame = self.cap.read()
        if not ok or frame is None:
            if self.p.loop and is_file_source(self.p.device) and source_present(self.p.device):
                self.cap.release()  # end of a file: replay from the start
                self.cap = cv2.VideoCapture(self._source())
                self.counters["loops"] += 1
                ok, frame = self.cap.read()
            if not ok or frame is None:
                self._lose(f"reading from {self.p.device!r} failed (device gone or stream ended)")
                return
        try:
            if frame.ndim == 2:
                frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
            rgb = prepare_frame(frame[:, :, ::-1], (self.p.height, self.p.width), list(self.p.crop))  # BGR -> RGB
        except (ValueError, cv2.error) as err:
            self.counters["bad_frames"] += 1
            self.last_error = str(err)
            return
        stamp = self.get_clock().now().to_msg()
        self.pub.publish(numpy_to_image(rgb, "rgb8", frame_id=self.p.frame_id, stamp=stamp))
        self.pub_info.publish(camera_info_for(frame.shape[:2], list(self.p.crop), self.p.width, self.p.height,
                                              list(self.p.camera_matrix), list(self.p.distortion), self.p.frame_id,
                                              stamp))
        self.counters["frames"] += 1

    def _publish_status(self) -> None:
        self.pub_status.publish(json_string({"connected": self.connected, "device": self.p.device, **self.counters,
                                             "last_error": self.last_error}))

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


def main(args: list[str] | None = None) -> int:
    return run_node(CameraNode, args)


if __name__ == "__main__":
    sys.exit(main())
