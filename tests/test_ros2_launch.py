"""The four graphs as a ROS 2 user runs them: a colcon workspace, `source install/setup.bash`, `ros2 launch`.

The package is built into a temporary workspace with colcon from PyPI, once plainly and once with
`--symlink-install` (one build per layout for the whole session), and each graph is started with
`ros2 launch polytask <graph>.launch.py ...`: the real launch / launch_ros / ros2launch code (a real `ros2` where
one is installed, else the Jazzy launch sources kept beside the repository), every node its own
process. This process watches the graph over DDS on a private ROS domain.

The editable install of `.venv` (make setup) could satisfy `import polytask.launch` from the checkout and hide a
workspace that lacks it (a symlink install used to link only ros2_ws/). Every process started here therefore runs
with a PYTHONPATH entry that shadows the editable finder, so `polytask` can only come from the workspace, and
the import check asserts the files resolve into it.

Skips (with the reason) where colcon or a launch front end is missing; on CI (CI=true) that is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from training_inputs import distill_inputs, tiny_expert_inputs

pytestmark = pytest.mark.ros

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO.parent / "shared" / "ros2-jazzy-launch"
LAYOUTS = ("plain", "symlink")


def _missing(reason: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI must run the real-launch tests)")
    pytest.skip(reason)


def ros2_launch_command() -> list[str]:
    """`ros2` of a real ROS 2 install, else the Jazzy launch sources' bin/ros2 run by this Python."""
    real = shutil.which("ros2")
    if real:
        return [real]
    script = BUNDLE / "bin" / "ros2"
    if not script.is_file():
        _missing(f"no ros2 CLI and no launch bundle at {BUNDLE}")
    return [sys.executable, str(script)]


def colcon() -> str:
    exe = shutil.which("colcon", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    if exe is None:
        _missing("colcon is not installed (make setup installs it from requirements.txt)")
    return exe


def editable_shadow(root: Path) -> Path:
    """A folder for PYTHONPATH holding no-op stand-ins of the editable-install finders of `polytask`.

    pip's editable install hooks a finder module in through a .pth file of site-packages; PYTHONPATH comes
    before site-packages, so a module of the same name here is imported instead and installs nothing.
    """
    root.mkdir(parents=True, exist_ok=True)
    import site

    for sp in site.getsitepackages():
        for pth in Path(sp).glob("__editable__*polytask*.pth"):
            for line in pth.read_text().splitlines():
                if line.startswith("import "):
                    module = line.split()[1].rstrip(";")
                    (root / f"{module}.py").write_text("def install():\n    pass\n")
    return root


def copy_checkout(dest: Path) -> None:
    """The files a clean clone has (tracked and untracked-but-not-ignored), symlinks kept."""
    dest.mkdir(parents=True)
    listing = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True, check=False
    )
    if listing.returncode != 0:
        shutil.copytree(
            REPO,
            dest,
            symlinks=True,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns(".venv", ".git", "build", "install", "log", "runs", "data"),
        )
        return
    for rel in filter(None, listing.stdout.decode().split("\0")):
        src, dst = REPO / rel, dest / rel
        if not src.exists() and not src.is_symlink():
            continue  # deleted in the working tree
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            dst.symlink_to(os.readlink(src))
        else:
            shutil.copy2(src, dst)


class Workspace:
    """A built colcon workspace and the environment `source install/setup.bash` gives."""

    def __init__(self, root: Path, layout: str, env: dict[str, str], build_s: float) -> None:
        self.root, self.layout, self.env, self.build_s = root, layout, env, build_s

    def run(self, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, **kwargs)


def build_workspace(root: Path, layout: str) -> Workspace:
    copy_checkout(root / "src" / "polytask")
    base = dict(os.environ)
    base["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), base["PATH"]])
    base.pop("PYTHONPATH", None)
    args = [colcon(), "build", "--event-handlers", "console_direct-"] + (
        ["--symlink-install"] if layout == "symlink" else []
    )
    t0 = time.monotonic()
    done = subprocess.run(args, cwd=root, env=base, capture_output=True, text=True, timeout=600)
    build_s = time.monotonic() - t0
    assert done.returncode == 0, f"colcon build ({layout}) failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    base["PYTHONPATH"] = str(editable_shadow(root / "shadow"))
    # exactly what a user's shell gets from `source install/setup.bash`
    dump = subprocess.run(
        ["bash", "-c", f"source {root / 'install' / 'setup.bash'} && env -0"], env=base, capture_output=True, check=True
    )
    env = dict(item.split("=", 1) for item in dump.stdout.decode().split("\0") if "=" in item)
    return Workspace(root, layout, env, build_s)


_WORKSPACES: dict[str, Workspace] = {}


@pytest.fixture(scope="session")
def workspaces(tmp_path_factory):
    """Build on first use, once per layout and session (each build takes a few seconds)."""

    def get(layout: str) -> Workspace:
        if layout not in _WORKSPACES:
            _WORKSPACES[layout] = build_workspace(tmp_path_factory.mktemp(f"ws-{layout}"), layout)
        return _WORKSPACES[layout]

    return get


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_workspace_provides_the_whole_namespace(workspaces, layout):
    ws = workspaces(layout)
    code = (
        "import polytask, polytask.launch.graphs as g, polytask.sim.registry as r, polytask.learning.rl.agent as a, "
        "polytask.nodes.monitor_node as m; print('\\n'.join(x.__file__ for x in (polytask, g, r, a, m)))"
    )
    done = ws.run([sys.executable, "-c", code], timeout=120)
    assert done.returncode == 0, f"{layout}: {done.stderr[-2000:]}"
    for path in done.stdout.split():
        assert Path(path).is_relative_to(ws.root), f"{layout}: {path} is not from the workspace {ws.root}"
    share = Path(ws.env["AMENT_PREFIX_PATH"].split(os.pathsep)[0]) / "share" / "polytask"
    assert (share / "launch" / "deploy.launch.py").is_file() and (share / "urdf" / "xarm7.urdf").is_file()


# --- running a graph -----------------------------------------------------------------------------------------------
class Launch:
    """`ros2 launch polytask <file> args...` in the workspace's environment, on its own ROS domain."""

    def __init__(self, ws: Workspace, launch_file: str, args: list[str], domain_id: int, log: Path) -> None:
        env = dict(
            ws.env,
            ROS_DOMAIN_ID=str(domain_id),
            ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
            PYTHONUNBUFFERED="1",
            OMP_NUM_THREADS="1",
        )
        self.log_path = log
        self._log = open(log, "w")
        self.proc = subprocess.Popen(
            [*ros2_launch_command(), "launch", "polytask", launch_file, *args],
            env=env,
            cwd=ws.root,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGINT, as Ctrl-C: ros2 launch stops every node (SIGINT, then SIGTERM) and exits."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def domain():
    from polytask.ros.testing import allocate_domain

    d = allocate_domain(100, 129)
    yield d
    d.release()


def _latest(store) -> dict:
    return json.loads(store[-1][1].data) if store else {}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_deploy_streams_actions_and_the_monitor_summary_shows_them(workspaces, layout, domain, tmp_path):
    from polytask.ros.testing import Probe

    ws = workspaces(layout)
    summary = tmp_path / "summary.json"
    launch = Launch(ws, "deploy.launch.py", ["robot:=sim", f"summary:={summary}"], domain.id, tmp_path / "l.log")
    probe = Probe(domain.id, name="deploy_launch_probe")
    try:
        actions = probe.subscribe("action")
        diagnostics = probe.subscribe("diagnostics")
        markers = probe.subscribe("markers")
        assert probe.spin_until(lambda: len(actions) >= 30, 120), f"no actions; log:\n{launch.text()[-4000:]}"
        # the monitor may start after the others: once it draws markers and discovery shows it subscribed to the
        # actions, 30 more actions for its summary
        assert probe.spin_until(lambda: len(markers) >= 1, 60), f"no markers; log:\n{launch.text()[-4000:]}"
        assert probe.wait_for_subscriber_node("action", "monitor", 60), f"monitor off actions:\n{launch.text()[-4000:]}"
        seen_before = len(actions)
        assert probe.spin_until(lambda: len(actions) >= seen_before + 30, 60), "the action stream stopped"
        probe.spin_until(lambda: len(diagnostics) >= 2, 10)
    finally:
        probe.close()
        code = launch.stop()
    text = launch.text()
    assert code == 0, text[-3000:]
    assert "Traceback" not in text and "LaunchConfigurationEquals" not in text, text[-3000:]
    from polytask.launch.packages import package_installed

    if not package_installed("rviz2"):  # the default rviz:=true must not abort a launch without rviz2
        assert text.count("not starting rviz: ROS package 'rviz2' is not installed") == 1, text[-3000:]
    seen = json.loads(summary.read_text())
    assert seen["actions"] >= 10, seen  # its rate is measured in bench/
    names = {s.name for _, m in diagnostics for s in m.status}
    assert any(n.startswith("sim_bridge") for n in names) and any(n.startswith("policy_server") for n in names), names


def test_teleop_record_lands_an_episode_from_a_scripted_joy(workspaces, domain, tmp_path):
    from sensor_msgs.msg import Joy

    from polytask.learning.data.episodes import EpisodeStore
    from polytask.ros.testing import Probe

    ws = workspaces("symlink")
    store = tmp_path / "demos"
    launch = Launch(
        ws, "teleop_record.launch.py", ["robot:=sim", "joystick:=joy", f"store:={store}"], domain.id, tmp_path / "l.log"
    )
    probe = Probe(domain.id, name="teleop_launch_probe")
    try:
        status = probe.subscribe("recorder_status")
        robot = probe.subscribe("robot_status")
        pub = probe.publisher("joy")

        def joy(buttons: dict[int, int], stick_up: bool) -> None:
            axes = [0.0] * 8
            axes[1] = 1.0 if stick_up else 0.0
            msg = Joy(axes=axes, buttons=[buttons.get(i, 0) for i in range(12)])
            msg.header.stamp = probe.node.get_clock().now().to_msg()
            pub.publish(msg)

        def hold(buttons: dict[int, int], stick_up: bool, seconds: float) -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                joy(buttons, stick_up)
                probe.spin(0.05)

        ready = probe.spin_until(
            lambda: (
                _latest(status).get("state") == "idle"
                and bool(robot)
                and _latest(robot).get("state") not in ("connecting", None)
            ),
            120,
        )
        assert ready, f"graph not ready; log:\n{launch.text()[-4000:]}"
        assert probe.wait_for_subscribers("joy", timeout=20)
        hold({}, False, 0.5)  # a pad at rest first: the recorder acts on button presses (edges)
        hold({0: 1}, False, 0.4)  # start
        assert probe.spin_until(lambda: _latest(status).get("state") == "recording", 20), _latest(status)
        deadline = time.monotonic() + 30
        while (_latest(status).get("steps") or 0) < 12 and time.monotonic() < deadline:
            hold({}, True, 0.2)
        hold({1: 1}, True, 0.4)  # save
        saved = probe.spin_until(lambda: len(EpisodeStore(store).paths()) >= 1, 30)
    finally:
        probe.close()
        code = launch.stop()
    text = launch.text()
    assert saved, f"no episode saved: {_latest(status)}; log:\n{text[-4000:]}"
    assert code == 0, text[-3000:]
    (ep,) = EpisodeStore(store).episodes()
    assert ep.source == "teleop" and ep.task == "xarm/reach" and len(ep) >= 10
    assert np.abs(ep.action[:, :3]).max() > 0.9, "the stick's command is not in the recorded actions"
    from polytask.launch.packages import package_installed

    for package in ("joy", "robot_state_publisher", "tf2_ros"):
        if not package_installed(package):
            assert f"ROS package '{package}' is not installed" in text, text[-3000:]


def _follow_job(launch: Launch, domain_id: int, probe_name: str, timeout: float = 300.0) -> tuple[bool, dict]:
    """Follow a launched training graph's `training/progress` until done (or the timeout); then stop it."""
    from polytask.ros.testing import Probe

    probe = Probe(domain_id, name=probe_name)
    try:
        progress = probe.subscribe("training_progress")
        done = probe.spin_until(lambda: _latest(progress).get("done", False), timeout)
    finally:
        probe.close()
        launch.stop()
    return done, _latest(progress)


def test_train_task_writes_a_checkpoint(workspaces, domain, tmp_path):
    from polytask.learning.data.checkpoint import read_header

    ws = workspaces("symlink")
    demos, cfg, run_dir = tiny_expert_inputs(tmp_path, "xarm/reach")
    launch = Launch(
        ws,
        "train_task.launch.py",
        ["task:=xarm/reach", f"demos:={demos}", f"run_dir:={run_dir}", "steps:=100", f"config:={cfg}", "rate:=100"],
        domain.id,
        tmp_path / "l.log",
    )
    done, final = _follow_job(launch, domain.id, "train_launch_probe")
    assert done and final.get("error") == "", f"{final}; log:\n{launch.text()[-4000:]}"
    checkpoints = sorted((run_dir / "checkpoints").glob("*.safetensors"))
    assert checkpoints, f"no checkpoint in {run_dir}"
    assert read_header(checkpoints[-1])["step"] >= 50


def test_distill_writes_and_evaluates_a_unified_checkpoint(workspaces, domain, tmp_path):
    from polytask.learning.policies.student import load_student

    ws = workspaces("symlink")
    tasks = ("metaworld/button-press", "metaworld/drawer-close")
    stores, cfg = distill_inputs(tmp_path, tasks, transitions=200, checkpoint_every=100, hidden=64)
    out = tmp_path / "out"
    launch = Launch(
        ws,
        "distill.launch.py",
        [f"stores:={','.join(stores)}", f"out:={out}", "steps:=200", "eval_episodes:=1", f"config:={cfg}"],
        domain.id,
        tmp_path / "l.log",
    )
    done, final = _follow_job(launch, domain.id, "distill_launch_probe")
    assert done and final.get("stage") == "done" and final.get("error") == "", f"{final}; log:\n{launch.text()[-4000:]}"
    _student, goals, header, _ = load_student(final["checkpoint"])
    assert sorted(goals) == sorted(tasks) and header["step"] == 200
    assert (out / "eval.csv").is_file()
    rows = (out / "eval.csv").read_text().splitlines()
    assert len(rows) >= 1 + len(tasks), rows
