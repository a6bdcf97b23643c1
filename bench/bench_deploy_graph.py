"""How fast the deploy graph answers the camera (the timings tests/test_ros_graph_deploy.py used to assert).

The deploy graph (sim bridge + policy server + monitor, separate processes over DDS) runs on a Meta-World task with
the scripted expert served from the received state, as in the test. Over `--seconds` the benchmark counts, in its
own process: the camera frames the bridge publishes (the baseline: the rate the policy server must keep up with),
the actions the server answers with, the action rate / camera rate ratio and the longest gap between actions; the
server's own latency p50/p99 from policy/status; then, across a checkpoint swap, the longest gap; then the time from
SIGKILL of the policy server to the bridge's watchdog reporting `stale` (its command_timeout_s is the baseline).

  MUJOCO_GL=egl AMENT_PREFIX_PATH=$PWD/.venv .venv/bin/python bench/bench_deploy_graph.py --seconds 20
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import time

import numpy as np

from polytask.launch.graphs import resolve
from polytask.launcher import Launcher
from polytask.learning.data.atomic import write_json
from polytask.ros.node_base import child_env
from polytask.ros.testing import Probe, allocate_domain

TASK = "metaworld/button-press"
COMMAND_TIMEOUT_S = 0.5  # the sim bridge's default watchdog


def rate(stamps: list[float]) -> float:
    return (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 and stamps[-1] > stamps[0] else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--json", help="write the figures here too")
    args = ap.parse_args()
    load = os.getloadavg()
    domain = allocate_domain(70, 99)
    log = tempfile.NamedTemporaryFile("w", prefix="deploy-bench-", suffix=".log", delete=False)
    launcher = Launcher(resolve("deploy", [f"task:={TASK}", "rviz:=false"]), env=child_env(domain.id), output=log)
    launcher.start()
    probe = Probe(domain.id, name="deploy_bench")
    try:
        acts, imgs = probe.subscribe("action"), probe.subscribe("image")
        status, robot = probe.subscribe("policy_status"), probe.subscribe("robot_status")
        if not probe.spin_until(lambda: len(acts) >= 30, 90):
            raise SystemExit(f"no actions from the deploy graph; log: {log.name}")
        a0, i0 = len(acts), len(imgs)
        probe.spin(args.seconds)
        act_t, img_t = [t for t, _ in acts[a0:]], [t for t, _ in imgs[i0:]]
        last = json.loads(status[-1][1].data)
        out = {"camera_hz": round(rate(img_t), 2), "action_hz": round(rate(act_t), 2),
               "ratio": round(rate(act_t) / max(rate(img_t), 1e-9), 3), "frames": len(img_t), "actions": len(act_t),
               "max_gap_s": round(float(np.diff(act_t).max()), 3), "server_latency_ms_p50": last["latency_ms_p50"],
               "server_latency_ms_p99": last["latency_ms_p99"]}
        a1 = len(acts)
        probe.set_parameters("policy_server", {"checkpoint": f"scripted:{TASK}"})
        probe.spin(3.0)
        out["swap_max_gap_s"] = round(float(np.diff([t for t, _ in acts[a1:]]).max()), 3)
        launcher.kill("policy_server", signal.SIGKILL)
        killed = time.monotonic()
        probe.spin_until(lambda: json.loads(robot[-1][1].data)["state"] == "stale", 10)
        out["stale_after_kill_s"] = round(time.monotonic() - killed, 3)
    finally:
        probe.close()
        launcher.shutdown()
        domain.release()
        log.close()
    out["load_before"] = [round(x, 2) for x in load]
    out["load_after"] = [round(x, 2) for x in os.getloadavg()]
    print(f"camera (baseline) {out['camera_hz']} Hz -> actions {out['action_hz']} Hz: ratio {out['ratio']} "
          f"({out['actions']} actions for {out['frames']} frames, longest gap {out['max_gap_s']} s); server latency "
          f"p50 {out['server_latency_ms_p50']} ms, p99 {out['server_latency_ms_p99']} ms; longest gap across a "
          f"swap {out['swap_max_gap_s']} s; watchdog stale {out['stale_after_kill_s']} s after the kill "
          f"(command_timeout_s {COMMAND_TIMEOUT_S}: ratio {out['stale_after_kill_s'] / COMMAND_TIMEOUT_S:.2f})")
    print(json.dumps(out))
    if args.json:
        write_json(args.json, out, indent=1)  # atomic: a killed run leaves no half file


if __name__ == "__main__":
    main()
