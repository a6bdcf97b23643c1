"""Session recording: the monitor writes what crosses the graph into a rosbag2 MCAP bag that rosbags reads back.

Frames and actions are published from this process; after a clean stop of the monitor the bag must exist under
its final name (no `.partial` left), carry metadata version 8 (readable by Humble and later), and hold every
message with its exact bytes (an image decoded from the bag equals the one sent).
"""

from __future__ import annotations

import numpy as np
import pytest
import yaml

pytestmark = pytest.mark.ros

N = 20


def test_monitor_records_a_bag_that_reads_back_exactly(tmp_path):
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    from polytask.ros.action_msg import action_message
    from polytask.ros.image_conversion import numpy_to_image
    from polytask.ros.testing import NodeProcess, Probe, allocate_domain

    bag = tmp_path / "session"
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, size=(84, 84, 3), dtype=np.uint8) for _ in range(N)]
    with allocate_domain(70, 99) as domain:
        monitor = NodeProcess("monitor_node", domain_id=domain.id, log_dir=tmp_path,
                              params={"bag": str(bag), "bag_topics": ["image", "action", "markers"]})
        probe = Probe(domain.id, name="bag_probe")
        try:
            img_pub, act_pub = probe.publisher("image"), probe.publisher("action")
            assert probe.spin_until(lambda: img_pub.get_subscription_count() >= 1
                                    and act_pub.get_subscription_count() >= 2, 30), monitor.log_text()
            markers = probe.subscribe("markers")
            assert probe.spin_until(lambda: len(markers) >= 3, 10)
            for k, f in enumerate(frames):
                stamp = probe.node.get_clock().now().to_msg()
                img_pub.publish(numpy_to_image(f, "rgb8", frame_id="camera", stamp=stamp))
                act_pub.publish(action_message([k / N, 0.0, 0.0, -1.0], stamp))
                probe.spin(0.02)
            probe.spin(1.0)
            assert not (tmp_path / "session").exists()  # still recording: only the .partial folder
            assert monitor.stop() == 0, monitor.log_text()
        finally:
            probe.close()
            monitor.stop()
    assert bag.is_dir() and not (tmp_path / "session.partial").exists()
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == 8 and meta["storage_identifier"] == "mcap"
    typestore = get_typestore(Stores.ROS2_JAZZY)
    with Reader(bag) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        assert counts["/camera/image_raw"] == N and counts["/robot/action"] == N
        assert counts["/monitor/markers"] >= 3
        images = [typestore.deserialize_cdr(raw, c.msgtype) for c, _, raw in reader.messages()
                  if c.topic == "/camera/image_raw"]
        actions = [typestore.deserialize_cdr(raw, c.msgtype) for c, _, raw in reader.messages()
                   if c.topic == "/robot/action"]
    for img, f in zip(images, frames, strict=True):
        assert (img.height, img.width, img.encoding) == (84, 84, "rgb8")
        assert np.array_equal(np.asarray(img.data, np.uint8).reshape(84, 84, 3), f)
    assert [round(float(a.position[0]), 4) for a in actions] == [round(k / N, 4) for k in range(N)]
    # each action keeps the stamp of the frame it answers, so a replay can pair them
    assert [(a.header.stamp.sec, a.header.stamp.nanosec) for a in actions] == \
        [(i.header.stamp.sec, i.header.stamp.nanosec) for i in images]
    assert list(actions[0].name) == ["a0", "a1", "a2", "a3"]
