"""`polytask launch` as a user runs it: a real graph comes up, Ctrl-C (SIGINT) or SIGTERM stops every node cleanly.

The launcher is started as its own process (the `polytask` CLI), the graph's nodes talk over DDS to a probe here;
after the signal the launcher must exit 0 within seconds and leave no node process behind. A node that ignores
SIGINT is escalated to SIGTERM/SIGKILL (checked on a stub process, no ROS needed).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from polytask.launch.graphs import ResolvedNode
from polytask.launcher import Launcher


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie still answers kill(0); read its state
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


@pytest.mark.ros
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_polytask_launch_stops_the_whole_graph_on_a_signal(tmp_path, sig):
    from polytask.ros.node_base import child_env
    from polytask.ros.testing import Probe, allocate_domain

    with allocate_domain(70, 99) as domain:
        log = open(tmp_path / "launch.log", "w+")
        cmd = [sys.executable, "-m", "polytask.cli", "launch", "deploy", "task:=xarm/reach", "rviz:=false",
               f"summary:={tmp_path / 'seen.json'}"]
        proc = subprocess.Popen(cmd, env=child_env(domain.id), stdout=log, stderr=subprocess.STDOUT)
        probe = Probe(domain.id, name="launch_probe")
        try:
            actions = probe.subscribe("action")
            markers = probe.subscribe("markers")
            up = probe.spin_until(lambda: len(actions) >= 60 and len(markers) >= 2, 60)  # ~2 s of streaming
            log.flush()
            text = (tmp_path / "launch.log").read_text()
            pids = {name: int(pid) for name, pid in re.findall(r"started (\w+) \(pid (\d+)\)", text)}
            assert up, f"graph did not come up:\n{text[-3000:]}"
            assert set(pids) == {"sim_bridge", "policy_server", "monitor"}
            t0 = time.monotonic()
            proc.send_signal(sig)
            code = proc.wait(20)
            took = time.monotonic() - t0
        finally:
            probe.close()
            if proc.poll() is None:
                proc.kill()
            log.close()
    text = (tmp_path / "launch.log").read_text()
    assert code == 0, text[-3000:]
    assert took < 10.0
    assert not [n for n, p in pids.items() if _alive(p)], "node processes outlived the launcher"
    assert "sending SIGKILL" not in text and "sending SIGTERM" not in text, "a node needed escalation"
    assert "monitor summary" in text  # the monitor's close() ran: a clean rclpy shutdown, not a kill
    seen = json.loads((tmp_path / "seen.json").read_text())  # what `make demo` prints after its deploy run
    assert seen["task"] == "xarm/reach" and seen["actions"] >= 10  # its rate is measured in bench/


def test_a_node_that_ignores_sigint_is_escalated_and_respawn_restarts_crashes(tmp_path):
    stubborn = tmp_path / "stubborn.py"
    stubborn.write_text("import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                        "print('up', flush=True)\ntime.sleep(60)\n")
    crasher = tmp_path / "crasher.py"
    crasher.write_text("print('crash', flush=True)\nraise SystemExit(3)\n")

    def node(name: str) -> ResolvedNode:
        return ResolvedNode(name=name, executable=name, package="polytask", module=name, params_files=[],
                            parameters={}, remappings=[], arguments=[], respawn=False)

    launcher = Launcher([node("stubborn"), node("crasher")], respawn=True, respawn_delay=0.2,
                        max_restarts=2, quiet=True)
    for name, script in (("stubborn", stubborn), ("crasher", crasher)):
        launcher.procs[name].command = [sys.executable, str(script)]
    launcher.start()
    time.sleep(2.5)
    assert launcher.procs["crasher"].starts == 3  # first start + 2 restarts, then it stays down
    assert launcher.procs["crasher"].exit_codes == [3, 3, 3]
    assert launcher.alive() == ["stubborn"]
    t0 = time.monotonic()
    codes = launcher.shutdown(sigint_timeout=1.0, sigterm_timeout=1.0)
    assert codes["stubborn"] == -signal.SIGTERM  # SIGINT ignored -> SIGTERM after the deadline
    assert time.monotonic() - t0 < 4.0
