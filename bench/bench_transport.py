"""Image transport alone across processes: frames out, one tiny echo back per frame, per Fast DDS setting.

    AMENT_PREFIX_PATH=$PWD/.venv .venv/bin/python bench/bench_transport.py --seconds 8

bench_latency.py measures camera -> action through the real policy server; this isolates what the transport
costs: an echo process (its own participant) answers every frame it receives with a 1-float message, and the
camera process records publish -> echo receipt. Rows: frame size x transport (see bench_latency.transport_env)
x the echo's image subscription QoS (`sensor_in` best effort, as our nodes subscribe now; `sensor` reliable, as
before). Both processes use the same transport setting; the camera side runs in a fresh process per row.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_latency import frame_latencies, percentiles, transport_env

RATE_HZ = 30.0


def echo(domain: int, sub_qos: str) -> None:
    import rclpy
    from rclpy.node import Node
    from sensor_msgs.msg import Image

    from polytask.ros import topics
    from polytask.ros.action_msg import action_message

    rclpy.init(domain_id=domain)
    node = Node("transport_echo")
    action_type = topics.load_type(topics.topic("action").msg_type)
    pub = node.create_publisher(action_type, topics.topic("action").name, topics.qos_profile("command"))
    node.create_subscription(
        Image,
        topics.topic("image").name,
        lambda m: pub.publish(action_message([float(m.height)], m.header.stamp)),
        topics.qos_profile(sub_qos),
    )
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass


def camera(domain: int, seconds: float, w: int, h: int) -> dict:
    import rclpy
    from rclpy.node import Node
    from sensor_msgs.msg import Image

    from polytask.ros import topics
    from polytask.ros.image_conversion import numpy_to_image

    rclpy.init(domain_id=domain)
    node = Node("transport_camera")
    got: list[float] = []
    node.create_subscription(
        topics.load_type(topics.topic("action").msg_type),
        topics.topic("action").name,
        lambda _m: got.append(time.perf_counter()),
        topics.qos_profile("command", 100),
    )
    pub = node.create_publisher(Image, topics.topic("image").name, topics.qos_profile("sensor"))
    deadline = time.monotonic() + 60
    while pub.get_subscription_count() < 1 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    img = numpy_to_image(np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8), "rgb8")
    for _ in range(20):  # warm-up: matching, first allocations
        pub.publish(img)
        rclpy.spin_once(node, timeout_sec=0.05)
    end = time.perf_counter() + 1.0
    while time.perf_counter() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
    got.clear()
    sent: list[float] = []
    t_next = time.perf_counter()
    for _ in range(int(seconds * RATE_HZ)):
        while time.perf_counter() < t_next:
            rclpy.spin_once(node, timeout_sec=max(0.0, t_next - time.perf_counter()))
        sent.append(time.perf_counter())
        pub.publish(img)
        t_next += 1.0 / RATE_HZ
    end = time.perf_counter() + 1.0
    while time.perf_counter() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
    lat, pairing = frame_latencies(sent, got)
    return {**percentiles(lat), "pairing": pairing, "sent": len(sent), "answered": len(got)}


def row(size: tuple[int, int], transport: str, sub_qos: str, seconds: float, domain: int) -> dict:
    env = dict(os.environ)
    env.pop("FASTDDS_BUILTIN_TRANSPORTS", None)
    env.update(transport_env(transport))
    echo_proc = subprocess.Popen(
        [sys.executable, __file__, "--echo", str(domain), sub_qos],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--camera", json.dumps([domain, seconds, size[1], size[0]])],
            env=env,
            capture_output=True,
            text=True,
            timeout=seconds + 120,
        )
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-2000:])
        return {
            "size": f"{size[1]}x{size[0]}",
            "transport": transport,
            "sub_qos": sub_qos,
            **json.loads(out.stdout.strip().splitlines()[-1]),
        }
    finally:
        echo_proc.terminate()
        echo_proc.wait(10)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--sizes", nargs="+", default=["84x84", "640x480"])
    p.add_argument("--transports", nargs="+", default=["default", "large_frames"])
    p.add_argument("--qos", nargs="+", default=["sensor", "sensor_in"])
    p.add_argument("--echo", nargs=2, help=argparse.SUPPRESS)
    p.add_argument("--camera", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    if args.echo:
        echo(int(args.echo[0]), args.echo[1])
        return 0
    if args.camera:
        domain, seconds, w, h = json.loads(args.camera)
        print(json.dumps(camera(domain, seconds, w, h)))
        return 0
    from polytask.ros.testing import allocate_domain

    domain = allocate_domain(130, 139)
    load_before = [round(v, 2) for v in os.getloadavg()]
    print("| frame | transport | echo subscription | publish -> echo p50 / p99 (ms) | answered / sent |")
    print("|---|---|---|---|---|")
    try:
        for s in args.sizes:
            w, h = (int(v) for v in s.lower().split("x"))
            for transport in args.transports:
                for qos in args.qos:
                    r = row((h, w), transport, qos, args.seconds, domain.id)
                    bound = "" if r["pairing"] == "exact" else " (lower bound)"
                    print(
                        f"| {r['size']} | {transport} | {qos} | {r['p50_ms']} / {r['p99_ms']}{bound} | "
                        f"{r['answered']} / {r['sent']} |",
                        flush=True,
                    )
    finally:
        domain.release()
    print(f"load average before {load_before}, after {[round(v, 2) for v in os.getloadavg()]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
