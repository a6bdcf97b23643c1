"""Interoperability with standard ROS 2 publishers and tools, node processes over DDS:

- a camera that publishes best effort (sensor-data QoS, as realsense2_camera, usb_cam and v4l2_camera do) gets
  actions from the policy server;
- a publisher whose QoS cannot match a subscription is reported by the node (topic, policy), not silent;
- every status also arrives on /diagnostics as a DiagnosticStatus with a level;
- the camera node publishes a CameraInfo with each frame, its intrinsics carried through crop and resize.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.ros

TASK = "metaworld/button-press"


def _sensor_data_qos():
    """rclpy's qos_profile_sensor_data: what the standard camera drivers publish with."""
    from rclpy.qos import qos_profile_sensor_data

    return qos_profile_sensor_data


def test_best_effort_camera_gets_actions_and_status_reaches_diagnostics(tmp_path):
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import Image
    from std_msgs.msg import Float32MultiArray

    from polytask.ros.image_conversion import numpy_to_image
    from polytask.ros.testing import NodeProcess, Probe, allocate_domain
    from polytask.sim import registry

    state = registry.make(TASK, render=False).reset().state.astype(np.float32)
    with allocate_domain(70, 99) as domain:
        server = NodeProcess(
            "policy_server_node",
            domain_id=domain.id,
            log_dir=tmp_path,
            params={"checkpoint": "scripted", "task": TASK, "status_period_s": 0.3},
        )
        probe = Probe(domain.id, name="best_effort_camera")
        try:
            camera = probe.node.create_publisher(Image, "camera/image_raw", _sensor_data_qos())
            states = probe.node.create_publisher(Float32MultiArray, "robot/task_state", 10)
            actions = probe.subscribe("action")
            diagnostics = probe.subscribe("diagnostics")
            assert probe.spin_until(lambda: camera.get_subscription_count() >= 1, 30), server.log_text()
            frame = numpy_to_image(np.full((84, 84, 3), 100, np.uint8), "rgb8", stamp=Time(sec=42, nanosec=7))
            for _ in range(60):  # 2 s at 30 Hz
                states.publish(Float32MultiArray(data=state.tolist()))
                camera.publish(frame)
                probe.spin(1 / 30)
                if len(actions) >= 10:
                    break
            probe.spin_until(
                lambda: any(s.name == "policy_server: policy/status" for _, m in diagnostics for s in m.status), 5
            )
        finally:
            probe.close()
            server.stop()
    assert len(actions) >= 10, f"a best-effort camera got {len(actions)} actions; log:\n{server.log_text()[-2000:]}"
    assert all(len(m.position) == 4 and np.all(np.isfinite(m.position)) for _, m in actions)
    # each action carries the stamp of the frame it answers, not its publish time
    assert {(m.header.stamp.sec, m.header.stamp.nanosec) for _, m in actions} == {(42, 7)}
    ours = [s for _, m in diagnostics for s in m.status if s.name == "policy_server: policy/status"]
    assert ours, "policy/status never reached /diagnostics"
    values = {kv.key: kv.value for kv in ours[-1].values}
    assert ours[-1].level == b"\x00" and ours[-1].hardware_id == "policy_server"
    assert values["task"] == TASK and int(values["actions"]) >= 1


def test_a_qos_mismatch_is_reported_by_the_subscribing_node(tmp_path):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String

    from polytask.ros.testing import NodeProcess, Probe, allocate_domain

    with allocate_domain(70, 99) as domain:
        monitor = NodeProcess("monitor_node", domain_id=domain.id, log_dir=tmp_path)
        probe = Probe(domain.id, name="bad_qos")
        try:
            # the monitor requests a RELIABLE, transient-local robot/status; a best-effort writer can never match it
            pub = probe.node.create_publisher(
                String, "robot/status", QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
            )
            reported = probe.spin_until(lambda: "incompatible QoS on /robot/status" in monitor.log_text(), 30)
            assert pub.get_subscription_count() == 0
        finally:
            probe.close()
            monitor.stop()
    assert reported, monitor.log_text()[-2000:]
    line = next(x for x in monitor.log_text().splitlines() if "incompatible QoS on /robot/status" in x)
    assert "RELIABILITY" in line and "'latched'" in line


def test_camera_info_follows_crop_and_resize_and_status_is_diagnosed(tmp_path):
    from polytask.ros.testing import NodeProcess, Probe, allocate_domain

    folder = tmp_path / "cam"
    folder.mkdir()
    for i in range(4):
        cv2.imwrite(str(folder / f"f_{i:03d}.png"), np.full((48, 64, 3), 50 * i, np.uint8))
    k = [100.0, 0.0, 32.0, 0.0, 110.0, 24.0, 0.0, 0.0, 1.0]
    with allocate_domain(40, 69) as domain, Probe(domain.id) as probe:
        node = NodeProcess(
            "camera_node",
            domain_id=domain.id,
            log_dir=tmp_path,
            params={
                "device": str(folder / "f_%03d.png"),
                "rate_hz": 20.0,
                "width": 16,
                "height": 12,
                "crop": [16, 12, 32, 24],
                "camera_matrix": k,
                "distortion": [0.1, -0.05, 0.0, 0.0, 0.01],
            },
        )
        try:
            frames = probe.subscribe("image")
            infos = probe.subscribe("camera_info")
            diagnostics = probe.subscribe("diagnostics")
            assert probe.spin_until(lambda: len(infos) >= 5 and len(frames) >= 5, 20), node.log_text()
            probe.spin_until(lambda: bool(diagnostics), 5)
        finally:
            node.stop()
    info = infos[-1][1]
    assert (info.width, info.height) == (16, 12) and info.distortion_model == "plumb_bob"
    # crop at (16, 12) of 32x24, then x0.5 both ways: fx 50, fy 55, cx (32-16)/2 = 8, cy (24-12)/2 = 6
    assert np.allclose(info.k, [50.0, 0.0, 8.0, 0.0, 55.0, 6.0, 0.0, 0.0, 1.0])
    assert np.allclose(info.p, [50.0, 0.0, 8.0, 0.0, 0.0, 55.0, 6.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    assert np.allclose(info.d, [0.1, -0.05, 0.0, 0.0, 0.01])
    image_stamps = {(m.header.stamp.sec, m.header.stamp.nanosec) for _, m in frames}
    assert (info.header.stamp.sec, info.header.stamp.nanosec) in image_stamps  # one CameraInfo per frame
    assert info.header.frame_id == frames[-1][1].header.frame_id
    status = [s for _, m in diagnostics for s in m.status if s.name == "camera: camera/status"]
    assert status and status[-1].level == b"\x00"
    assert {kv.key: kv.value for kv in status[-1].values}["connected"] == "true"


def test_diagnostic_levels_follow_the_status():
    from polytask.ros.diagnostics import ERROR, OK, WARN, diagnostic_level, to_diagnostic_array

    assert diagnostic_level({"state": "estop"})[0] == ERROR
    assert diagnostic_level({"state": "error", "last_error": "controller error 24"}) == (
        ERROR,
        "error: controller error 24",
    )
    assert diagnostic_level({"connected": False, "last_error": "cannot open"})[0] == ERROR
    assert diagnostic_level({"state": "resetting"})[0] == WARN
    assert diagnostic_level({"state": "ready", "last_error": "bad frame"})[0] == WARN
    assert diagnostic_level({"state": "stale", "last_error": ""}) == (OK, "stale")
    array = to_diagnostic_array(
        {"state": "ready", "commands": {"accepted": 3}}, "xarm_driver: robot/status", "xarm_driver"
    )
    (status,) = array.status
    assert {kv.key: kv.value for kv in status.values} == {"state": "ready", "commands": '{"accepted":3}'}


def test_nodes_get_the_large_frames_profile_unless_one_is_chosen():
    import xml.etree.ElementTree as ET

    from polytask.ros.transport import PROFILE_VARIABLES, apply_default_profile, profile_path

    path = profile_path()
    env: dict[str, str] = {}
    assert apply_default_profile(env) == str(path) and all(env[v] == str(path) for v in PROFILE_VARIABLES)
    mine = {"FASTRTPS_DEFAULT_PROFILES_FILE": "/etc/my_dds.xml"}
    assert apply_default_profile(mine) == "/etc/my_dds.xml" and "FASTDDS_DEFAULT_PROFILES_FILE" not in mine
    off = {"FASTRTPS_DEFAULT_PROFILES_FILE": ""}
    assert apply_default_profile(off) is None and off == {"FASTRTPS_DEFAULT_PROFILES_FILE": ""}
    cyclone = {"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}
    assert apply_default_profile(cyclone) is None and set(cyclone) == {"RMW_IMPLEMENTATION"}
    # the segment holds a 640x480 rgb8 frame with room to spare, and a message may be that large
    ns = {"f": "http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles"}
    shm = next(
        t
        for t in ET.parse(path).getroot().iterfind(".//f:transport_descriptor", ns)
        if t.findtext("f:type", namespaces=ns) == "SHM"
    )
    frame = 640 * 480 * 3 + 48
    assert int(shm.findtext("f:maxMessageSize", namespaces=ns)) >= 4 * frame
    assert int(shm.findtext("f:segment_size", namespaces=ns)) >= 2 * int(
        shm.findtext("f:maxMessageSize", namespaces=ns)
    )
