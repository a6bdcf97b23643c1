"""The launch graphs: `.launch.py` files and `polytask launch` start the same nodes with the same parameters.

`launch`/`launch_ros` cannot be installed here, so the `.launch.py` files run against small fakes of those modules
that record every `Node(...)` and evaluate substitutions and conditions the way launch does. The result is
compared with what `polytask launch` would start (polytask.launch.graphs.resolve + the launcher's command lines).
No ROS processes are started in this file.
"""

from __future__ import annotations

import os
import runpy
import sys
import types
from pathlib import Path

import pytest
import yaml

from polytask.launch import graphs, packages
from polytask.launcher import Launcher, node_command

REPO = Path(__file__).resolve().parents[1]


# --- fakes of launch / launch_ros ------------------------------------------------------------------------------------
class _Sub:
    def __init__(self, *args, **kwargs) -> None:
        self.args, self.kwargs = args, kwargs


class LaunchConfiguration(_Sub):
    pass


class PathJoinSubstitution(_Sub):
    pass


class PythonExpression(_Sub):
    pass


class FindPackageShare(_Sub):
    pass


class ParameterValue(_Sub):
    pass


class EqualsSubstitution(_Sub):
    pass


class FileContent(_Sub):
    pass


class IfCondition(_Sub):
    pass


class DeclareLaunchArgument(_Sub):
    pass


class LogInfo(_Sub):
    pass


class FakeNode(_Sub):
    pass


class LaunchDescription(_Sub):
    pass


@pytest.fixture
def fake_launch(monkeypatch):
    mods = {
        "launch": {"LaunchDescription": LaunchDescription},
        "launch.actions": {"DeclareLaunchArgument": DeclareLaunchArgument, "LogInfo": LogInfo},
        "launch.conditions": {"IfCondition": IfCondition},  # no LaunchConfigurationEquals: deprecated in Jazzy
        "launch.substitutions": {"LaunchConfiguration": LaunchConfiguration, "EqualsSubstitution": EqualsSubstitution,
                                 "FileContent": FileContent, "PathJoinSubstitution": PathJoinSubstitution,
                                 "PythonExpression": PythonExpression},
        "launch_ros": {},
        "launch_ros.actions": {"Node": FakeNode},
        "launch_ros.substitutions": {"FindPackageShare": FindPackageShare},
        "launch_ros.parameter_descriptions": {"ParameterValue": ParameterValue},
    }
    for name, attrs in mods.items():
        m = types.ModuleType(name)
        for k, v in attrs.items():
            setattr(m, k, v)
        monkeypatch.setitem(sys.modules, name, m)


def perform(x, ctx: dict[str, str], share: Path):
    """Evaluate a (fake) substitution as launch would, to text."""
    if isinstance(x, LaunchConfiguration):
        return ctx[x.args[0]]
    if isinstance(x, FindPackageShare):
        assert x.args[0] == "polytask"
        return str(share)
    if isinstance(x, PathJoinSubstitution):
        return os.path.join(*[perform(p, ctx, share) for p in x.args[0]])
    if isinstance(x, PythonExpression):
        return str(eval("".join(perform(p, ctx, share) for p in x.args[0])))  # launch evaluates it the same way
    if isinstance(x, EqualsSubstitution):
        return str(perform(x.args[0], ctx, share) == perform(x.args[1], ctx, share)).lower()
    if isinstance(x, FileContent):
        return Path(perform(x.args[0], ctx, share)).read_text()
    if isinstance(x, list):
        return "".join(perform(p, ctx, share) for p in x)
    return x


def param_value(x, ctx, share):
    """A parameter as the node receives it: launch_ros YAML-parses substituted text unless value_type=str."""
    if isinstance(x, ParameterValue):
        assert x.kwargs.get("value_type") is str
        return perform(x.args[0], ctx, share)
    if isinstance(x, _Sub):
        return yaml.safe_load(perform(x, ctx, share))
    return x


def condition_holds(cond, ctx, share) -> bool:
    if cond is None:
        return True
    if isinstance(cond, IfCondition):
        return perform(cond.args[0], ctx, share).lower() == "true"
    raise AssertionError(f"unexpected condition {cond!r}")


def run_launch_file(name: str, overrides: dict[str, str], share: Path) -> list[dict]:
    """Execute launch/<name>.launch.py against the fakes; return the started nodes, evaluated."""
    ld = runpy.run_path(str(REPO / "launch" / f"{name}.launch.py"))["generate_launch_description"]()
    declared = {a.args[0]: a.kwargs for a in ld.args[0] if isinstance(a, DeclareLaunchArgument)}
    for k, v in overrides.items():
        assert k in declared, f"{name}.launch.py does not declare {k}"
        if declared[k].get("choices"):
            assert v in declared[k]["choices"]
    ctx = {k: overrides.get(k, kw["default_value"]) for k, kw in declared.items()}
    started = []
    for action in ld.args[0]:
        if not isinstance(action, FakeNode):
            continue
        kw = action.kwargs
        if not condition_holds(kw.get("condition"), ctx, share):
            continue
        files, params = [], {}
        for p in kw.get("parameters", []):
            if isinstance(p, dict):
                params.update({k: param_value(v, ctx, share) for k, v in p.items()})
            else:
                files.append(perform(p, ctx, share))
        started.append({"name": kw["name"], "package": kw["package"], "executable": kw["executable"],
                        "params_files": files, "parameters": params,
                        "remappings": list(kw.get("remappings", [])),
                        "arguments": [perform(a, ctx, share) for a in kw.get("arguments", [])]})
    return started


def run_cli_graph(name: str, overrides: dict[str, str], share: Path) -> list[dict]:
    """What `polytask launch` starts: the parsed `--ros-args` of each node's command line."""
    nodes = graphs.resolve(name, [f"{k}:={v}" for k, v in overrides.items()], share=share)
    out = []
    for n in nodes:
        if n.external and not packages.package_installed(n.package):
            continue  # the launcher skips it, as the launch file does (with one log line each)
        cmd = node_command(n, python="python")
        if cmd is None:  # installed package without the executable: compare the plan itself
            cmd = [n.executable, *n.arguments, *n.ros_args()]
        i = cmd.index("--ros-args")
        pre, ros = cmd[:i], cmd[i + 1:]
        files, params, remaps, node_name = [], {}, [], None
        it = iter(ros)
        for flag in it:
            value = next(it)
            if flag == "--params-file":
                files.append(value)
            elif flag == "-p":
                k, v = value.split(":=", 1)
                params[k] = yaml.safe_load(v)  # rcl reads -p values as YAML
            elif flag == "-r" and value.startswith("__node:="):
                node_name = value.split(":=", 1)[1]
            elif flag == "-r":
                remaps.append(tuple(value.split(":=", 1)))
            else:
                raise AssertionError(f"unexpected ros arg {flag} {value}")
        arguments = pre[3:] if pre[:2] == ["python", "-m"] else pre[1:]
        out.append({"name": node_name, "package": n.package, "executable": n.executable, "params_files": files,
                    "parameters": params, "remappings": remaps, "arguments": arguments})
    return out


CASES = [
    ("teleop_record", {}),
    ("teleop_record", {"robot": "xarm", "joystick": "joy", "camera_device": "2", "store": "/tmp/s"}),
    ("train_task", {}),
    ("train_task", {"robot": "inprocess", "steps": "100", "task": "metaworld/door-open"}),
    ("train_task", {"reward": "ot", "config": "config/expert.yaml", "rate": "100"}),
    ("deploy", {}),
    ("deploy", {"robot": "xarm", "rviz": "false", "checkpoint": "/tmp/u.safetensors", "rate": "15"}),
    ("distill", {"stores": "a/door-open,a/drawer-open", "goal": "language", "lifelong": "true"}),
]


@pytest.mark.parametrize(("name", "overrides"), CASES)
def test_launch_file_and_cli_start_the_same_nodes(fake_launch, name, overrides):
    share = packages.share_dir()
    from_file = run_launch_file(name, overrides, share)
    from_cli = run_cli_graph(name, overrides, share)
    assert [n["name"] for n in from_file] == [n["name"] for n in from_cli]
    for a, b in zip(from_file, from_cli, strict=True):
        assert a == b, f"{name}: node {a['name']} differs"
    assert from_cli, name


@pytest.mark.parametrize("name", sorted(graphs.GRAPHS))
def test_every_parameter_file_of_a_graph_exists_and_names_its_node(name):
    for spec in graphs.graph(name).nodes:
        if spec.params_file:
            path = packages.share_dir() / spec.params_file
            assert path.is_file(), f"graph {name}: node {spec.name} needs {path}"
            data = yaml.safe_load(path.read_text())
            assert spec.name in data or "/**" in data, f"{path} has no section for node {spec.name}"


def test_arguments_reach_the_nodes_with_their_types(fake_launch):
    share = packages.share_dir()
    nodes = {n["name"]: n for n in run_cli_graph("teleop_record", {"robot": "xarm", "camera_device": "2"}, share)}
    assert nodes["camera"]["parameters"]["device"] == "2"  # digits stay a string (a device index or a path)
    assert "sim_bridge" not in nodes and {"camera", "xarm_driver"} <= set(nodes)
    deploy = {n["name"]: n for n in run_cli_graph("deploy", {"rate": "15", "task": "metaworld/hammer"}, share)}
    assert deploy["sim_bridge"]["parameters"] == {"task": "metaworld/hammer", "rate": 15}
    assert deploy["policy_server"]["parameters"]["task"] == "metaworld/hammer"
    rviz = next(n for n in graphs.resolve("deploy", [], share=share) if n.name == "rviz")
    assert rviz.arguments == ["-d", str(share / "rviz" / "polytask.rviz")]


@pytest.mark.parametrize(("items", "message"), [
    (["robot:=ur5"], "'robot' is 'ur5', expected one of sim, xarm"),
    (["robt:=sim"], "unknown launch argument 'robt'"),
    (["robot=sim"], "must look like name:=value"),
])
def test_bad_launch_arguments_are_named(items, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        graphs.resolve("deploy", items)


def test_unknown_graph_is_named():
    with pytest.raises(KeyError, match="unknown launch graph 'depoly'"):
        graphs.resolve("depoly", [])


def test_cli_dry_run_prints_the_node_commands(capsys):
    from polytask.cli import main

    assert main(["launch", "deploy", "task:=metaworld/hammer", "rviz:=false", "--dry-run"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":", 1)[0] for line in out] == ["sim_bridge", "policy_server", "monitor"]
    assert "-m polytask.nodes.policy_server_node" in out[1] and "task:=metaworld/hammer" in out[1]
    assert main(["launch", "deploy", "robot:=ur5", "--dry-run"]) == 1  # error message, not a traceback


def test_launcher_skips_uninstalled_external_nodes():
    nodes = graphs.resolve("deploy", ["rviz:=true"])
    launcher = Launcher(nodes, quiet=True)
    if node_command(next(n for n in nodes if n.name == "rviz")) is None:
        assert launcher.skipped == ["rviz"]
        assert "rviz" not in launcher.procs
    assert {"sim_bridge", "policy_server", "monitor"} <= set(launcher.procs)


def test_missing_external_packages_are_skipped_with_one_line_each(fake_launch):
    from polytask.launch.frontend import launch_description

    for name, g in graphs.GRAPHS.items():
        ld = launch_description(name)
        started = {a.kwargs["package"] for a in ld.args[0] if isinstance(a, FakeNode)}
        logged = [a for a in ld.args[0] if isinstance(a, LogInfo)]
        for spec in g.nodes:
            if not spec.external:
                continue
            if packages.package_installed(spec.package):
                assert spec.package in started
                continue
            assert spec.package not in started, f"{name}: {spec.package} is not installed but would be started"
            lines = [a for a in logged if a.kwargs["msg"] == packages.skipped_message(spec)]
            variants = [s for s in g.nodes if s.external and s.name == spec.name]  # e.g. one per `robot` value
            assert len(lines) == len(variants), f"{name}: expected one log line per variant of {spec.name}"
            assert all((line.kwargs["condition"] is None) == (spec.when is None) for line in lines)


def test_respawning_nodes_restart_a_bounded_number_of_times(fake_launch):
    from polytask.launch.frontend import launch_description

    respawning = 0
    for name in graphs.GRAPHS:
        for a in launch_description(name).args[0]:
            if isinstance(a, FakeNode) and a.kwargs.get("respawn"):
                respawning += 1
                assert a.kwargs["respawn_max_retries"] == graphs.RESPAWN_MAX_RETRIES > 0
    assert respawning >= 2  # camera, joy reader
    nodes = graphs.resolve("teleop_record", ["robot:=xarm"])
    assert next(n for n in nodes if n.name == "camera").respawn_max_retries == graphs.RESPAWN_MAX_RETRIES
    launcher = Launcher([n for n in nodes if not n.external], quiet=True)
    assert launcher._max_restarts["camera"] == graphs.RESPAWN_MAX_RETRIES


def test_joy_node_gets_the_joy_packages_own_parameters():
    joy = next(n for n in graphs.resolve("teleop_record", ["joystick:=joy", "joy_device_name:=Xbox Wireless"])
               if n.name == "joy")
    assert joy.parameters["device_id"] == "0"
    assert yaml.safe_load(joy.parameters["device_name"]) == "Xbox Wireless"
    assert "joy_device" not in joy.parameters and "device" not in joy.parameters


def test_urdf_reaches_robot_state_publisher_and_the_monitor_steps_aside():
    nodes = {n.name: n for n in graphs.resolve("teleop_record", [])}
    rsp = nodes["robot_state_publisher"]
    urdf = yaml.safe_load(rsp.parameters["robot_description"])
    assert urdf == (packages.share_dir() / graphs.XARM_URDF).read_text() and "<robot" in urdf
    monitor = nodes["monitor"]
    expected = "false" if packages.package_installed("robot_state_publisher") else "true"
    assert monitor.parameters["publish_robot_description"] == expected
    tf = nodes["world_to_base"]
    assert tf.package == "tf2_ros" and tf.arguments[-4:] == ["--frame-id", "world", "--child-frame-id", "link_base"]
