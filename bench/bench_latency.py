"""Camera -> action latency across processes, against inference alone, in one run.

    MUJOCO_GL=egl AMENT_PREFIX_PATH=$PWD/.venv .venv/bin/python bench/bench_latency.py --seconds 20

This process plays the camera: it publishes rgb8 frames (84x84 and 640x480) at 30 Hz on `camera/image_raw` and
records when each action comes back on `robot/action` from a policy server running as its own process (the real
node, `polytask.nodes.policy_server_node`, with a pixel unified-policy checkpoint of the paper's size and
`image_size:=84`, so 640x480 frames are resized as on the robot). The server answers every frame with one action,
so the k-th action belongs to the k-th frame; drops are counted, not hidden.

Baselines measured in this same process on the same frames and checkpoint, paced at the camera rate like the
server's work: `inference` (policy.act on an 84x84 frame) and `decode+resize+inference` (Image message -> numpy
-> resize -> act, what the server does per frame). The cross-process figure minus the second is the cost of
DDS transport and scheduling.
Fast DDS transports, set for both processes (the camera side runs in a fresh process per configuration because
Fast DDS reads the settings once per process):
- `default`: Fast DDS's own defaults (no profile file: what the nodes ran with before config/fastdds_large_frames.xml);
- `LARGE_DATA`: FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA on top of the defaults;
- `large_frames`: config/fastdds_large_frames.xml (a 10 MB shared-memory segment), what every node now applies.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TASK = "metaworld/button-press"
RATE_HZ = 30.0


def transport_env(transport: str) -> dict[str, str]:
    """The environment variables of one transport configuration (empty profile variables = Fast DDS defaults)."""
    from polytask.ros.transport import PROFILE_VARIABLES, profile_path

    off = dict.fromkeys(PROFILE_VARIABLES, "")
    if transport == "default":
        return off
    if transport == "LARGE_DATA":
        return {**off, "FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"}
    if transport == "large_frames":
        return dict.fromkeys(PROFILE_VARIABLES, str(profile_path()))
    raise ValueError(f"transport {transport!r} unknown; expected default, LARGE_DATA or large_frames")


def make_checkpoint(path: Path, hidden: int, feature_dim: int) -> Path:
    """A randomly initialised pixel student (frame stack 3, 84x84, one-hot goal): inference cost of the real one."""
    from polytask.learning.goals import onehot
    from polytask.learning.nets.student import StudentNet, StudentSpec
    from polytask.learning.policies.student import save_student
    from polytask.sim import registry

    task_id = registry.spec(TASK).task_id
    spec = StudentSpec(obs="pixels", obs_dim=84, action_dim=4, goal="onehot", goal_dim=16, hidden=hidden,
                       feature_dim=feature_dim)
    return save_student(path, StudentNet(spec), {TASK: onehot(task_id, 16)}, [TASK], step=0)


def frame_latencies(sent: list[float], received: list[float]) -> tuple[list[float], str]:
    """Publish -> action latency per answered frame (ms).

    Every frame answered: the k-th action is the k-th frame's ("exact"). With drops that pairing shifts by a
    frame period per lost frame, so each action is paired with the last frame published before it instead
    ("latest"): a lower bound on the latency, exact while it stays under one frame period.
    """
    if len(received) == len(sent):
        return [(r - s) * 1e3 for s, r in zip(sent, received, strict=True)], "exact"
    out, i = [], 0
    for r in received:
        while i + 1 < len(sent) and sent[i + 1] <= r:
            i += 1
        if sent and sent[i] <= r:
            out.append((r - sent[i]) * 1e3)
    return out, "latest"


def percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms, dtype=np.float64)
    return {"p50_ms": round(float(np.percentile(a, 50)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3),
            "n": int(a.size)}


def frames(h: int, w: int, n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for _ in range(n)]


def inference_alone(ckpt: Path, size: tuple[int, int], repeats: int) -> dict[str, dict[str, float]]:
    """In-process timings: act() alone, and message decode + resize + act (the server's per-frame work)."""
    import torch

    from polytask.learning.policies.loaders import policy_for_task
    from polytask.ros.image_conversion import image_to_rgb8, numpy_to_image
    from polytask.sim.frames import prepare_frame
    from polytask.sim.task import Goal, Step

    torch.set_num_threads(1)
    loaded = policy_for_task(str(ckpt), TASK)
    goal = Goal(task_id=loaded.spec.task_id, name=TASK)
    imgs = frames(size[0], size[1], 8)
    msgs = [numpy_to_image(f, "rgb8") for f in imgs]
    small = [prepare_frame(f, 84) for f in imgs]

    def step_of(px):
        return Step(state=np.zeros(39, np.float32), pixels=px, reward=0.0, success=False, terminal=False,
                    truncated=False, goal=goal)

    loaded.policy.reset(step_of(small[0]))
    for i in range(10):  # warm-up
        loaded.policy.act(step_of(small[i % 8]))
    act_ms, full_ms, act_cpu_ms = [], [], []
    period = 1.0 / RATE_HZ

    def paced() -> None:
        # at the camera rate: on a loaded machine a busy loop is descheduled far more than a 30 Hz callback
        time.sleep(period)

    for i in range(repeats):
        paced()
        t0, c0 = time.perf_counter(), time.thread_time()
        loaded.policy.act(step_of(small[i % 8]))
        act_ms.append((time.perf_counter() - t0) * 1e3)
        act_cpu_ms.append((time.thread_time() - c0) * 1e3)  # CPU time: what the wall time is without preemption
        paced()
        t0 = time.perf_counter()
        loaded.policy.act(step_of(prepare_frame(image_to_rgb8(msgs[i % 8]), 84)))
        full_ms.append((time.perf_counter() - t0) * 1e3)
    return {"inference": percentiles(act_ms), "inference_cpu": percentiles(act_cpu_ms),
            "decode+resize+inference": percentiles(full_ms)}


def across_processes(ckpt: Path, size: tuple[int, int], transport: str, seconds: float, domain_id: int,
                     log_dir: Path) -> dict[str, float]:
    """Publish frames at 30 Hz to a policy server process; latency from publish to action receipt."""
    from polytask.ros import topics
    from polytask.ros.image_conversion import numpy_to_image
    from polytask.ros.testing import NodeProcess, Probe

    extra = transport_env(transport)
    wrong = {k: os.environ.get(k) for k, v in extra.items() if os.environ.get(k) != v}
    if wrong:
        raise RuntimeError(f"camera side runs with {wrong}, expected {extra} for transport {transport!r}")
    server = NodeProcess("policy_server_node", domain_id=domain_id, log_dir=log_dir, extra_env=extra,
                         params={"checkpoint": str(ckpt), "task": TASK, "image_size": 84, "use_state": False,
                                 "threads": 1})
    probe = Probe(domain_id, name="latency_bench")
    try:
        received: list[float] = []
        server_ms: list[float] = []
        probe.node.create_subscription(topics.load_type(topics.topic("policy_latency").msg_type),
                                       topics.topic("policy_latency").name,
                                       lambda m: server_ms.append(float(m.data)), topics.qos_profile("state", 100))
        probe.node.create_subscription(topics.load_type(topics.topic("action").msg_type), topics.topic("action").name,
                                       lambda _m: received.append(time.perf_counter()),
                                       topics.qos_profile("command", depth=100))
        pub = probe.publisher("image")
        if not probe.spin_until(lambda: pub.get_subscription_count() >= 1 and
                                probe.node.count_publishers("/" + topics.topic("action").name) >= 1, 60):
            raise RuntimeError(f"policy server did not connect; log {server.log_path}")
        imgs = [numpy_to_image(f, "rgb8") for f in frames(size[0], size[1], 16)]
        period = 1.0 / RATE_HZ
        # warm-up: until the server answers (first checkpoint load, first inference)
        deadline = time.perf_counter() + 30
        while not received and time.perf_counter() < deadline:
            pub.publish(imgs[0])
            probe.spin(period)
        probe.spin(0.5)
        received.clear()
        server_ms.clear()
        sent: list[float] = []
        n = int(seconds * RATE_HZ)
        t_next = time.perf_counter()
        for k in range(n):
            now = time.perf_counter()
            if t_next > now:
                probe.spin(t_next - now)
            sent.append(time.perf_counter())
            pub.publish(imgs[k % len(imgs)])
            t_next += period
        probe.spin(1.0)
        lat, pairing = frame_latencies(sent, received)
        rate = (len(received) - 1) / (received[-1] - received[0]) if len(received) > 1 else 0.0
        return {**percentiles(lat), "pairing": pairing, "sent": len(sent), "answered": len(received),
                "dropped": len(sent) - len(received), "rate_hz": round(rate, 2),
                "in_server": percentiles(server_ms) if server_ms else None}
    finally:
        probe.close()
        server.stop()


def camera_side(ckpt: Path, size: tuple[int, int], transport: str, seconds: float, domain_id: int,
                log_dir: Path) -> dict[str, float]:
    """Run `across_processes` in a fresh process: Fast DDS reads its transport setting once per process."""
    import subprocess

    env = dict(os.environ)
    env.pop("FASTDDS_BUILTIN_TRANSPORTS", None)
    env.update(transport_env(transport))
    args = json.dumps({"ckpt": str(ckpt), "size": list(size), "transport": transport, "seconds": seconds,
                       "domain": domain_id, "log_dir": str(log_dir)})
    out = subprocess.run([sys.executable, __file__, "--camera-side", args], env=env, capture_output=True, text=True,
                         timeout=seconds + 180)
    if out.returncode != 0:
        raise RuntimeError(f"camera side for {size} {transport} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(seconds: float, sizes: list[tuple[int, int]], transports: list[str], hidden: int, feature_dim: int,
        domain_id: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="polytask-bench-"))
    ckpt = make_checkpoint(work / "student.safetensors", hidden, feature_dim)
    results = {"seconds": seconds, "rate_hz": RATE_HZ,
               "discovery_range": os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE"), "hidden": hidden,
               "feature_dim": feature_dim, "rows": [],
               "cpus": os.cpu_count(), "loadavg_before": [round(v, 2) for v in os.getloadavg()]}
    for size in sizes:
        base = inference_alone(ckpt, size, repeats=int(seconds * RATE_HZ / 2))
        for transport in transports:
            e2e = camera_side(ckpt, size, transport, seconds, domain_id, work)
            results["rows"].append({"size": f"{size[1]}x{size[0]}", "transport": transport, "camera_to_action": e2e,
                                    **base})
    results["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
    return results


def markdown(results: dict) -> str:
    lines = ["| frame | transport | camera->action p50 / p99 (ms) | answered / sent | action rate (Hz) | "
             "in the server: decode+inference+publish p50 / p99 (ms) | inference alone p50 / p99 (ms) | "
             "inference CPU time p50 (ms) | decode+resize+inference alone p50 / p99 (ms) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        e, i, d, c = r["camera_to_action"], r["inference"], r["decode+resize+inference"], r["inference_cpu"]
        srv = e.get("in_server") or {"p50_ms": "-", "p99_ms": "-"}
        lines.append(f"| {r['size']} | {r['transport']} | {e['p50_ms']} / {e['p99_ms']}"
                     f"{'' if e.get('pairing', 'exact') == 'exact' else ' (lower bound)'} | {e['answered']} / "
                     f"{e['sent']} | {e['rate_hz']} | {srv['p50_ms']} / {srv['p99_ms']} | {i['p50_ms']} / "
                     f"{i['p99_ms']} | {c['p50_ms']} | {d['p50_ms']} / {d['p99_ms']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=20.0, help="measured seconds per configuration")
    p.add_argument("--sizes", nargs="+", default=["84x84", "640x480"], help="frame sizes WxH")
    p.add_argument("--transports", nargs="+", default=["default", "LARGE_DATA", "large_frames"])
    p.add_argument("--hidden", type=int, default=1024, help="student hidden width (Table V: 1024)")
    p.add_argument("--feature-dim", type=int, default=512)
    p.add_argument("--domain", type=int, default=0, help="ROS domain id (0: pick a free one in 70..99)")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--discovery-range", default="LOCALHOST", choices=("LOCALHOST", "SUBNET"),
                   help="ROS_AUTOMATIC_DISCOVERY_RANGE for both processes")
    p.add_argument("--camera-side", default=None, help=argparse.SUPPRESS)  # internal: one configuration
    args = p.parse_args(argv)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = args.discovery_range
    if args.camera_side:
        a = json.loads(args.camera_side)
        os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        res = across_processes(Path(a["ckpt"]), tuple(a["size"]), a["transport"], a["seconds"], a["domain"],
                               Path(a["log_dir"]))
        print(json.dumps(res))
        return 0
    sizes = []
    for s in args.sizes:
        w, h = (int(v) for v in s.lower().split("x"))
        sizes.append((h, w))
    from polytask.ros.testing import allocate_domain

    domain = allocate_domain(args.domain, args.domain) if args.domain else allocate_domain(70, 99)
    try:
        results = run(args.seconds, sizes, args.transports, args.hidden, args.feature_dim, domain.id)
    finally:
        domain.release()
    sys.stdout.write(markdown(results))
    print(f"discovery range {results['discovery_range']}, cpus {results['cpus']}, load average before "
          f"{results['loadavg_before']}, after {results['loadavg_after']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
