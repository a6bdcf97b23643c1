"""config/<node>.yaml of the robot-side nodes match the parameters the nodes declare (names, types, ranges), and
bad values stop a node with an error naming the node, the parameter and the expectation."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

from polytask.ros.node_base import Param, ParamError, _coerce, format_param_value, ros_args

ROOT = Path(__file__).resolve().parents[1]
NODES = {"camera": "camera_node", "joy_reader": "joy_reader_node", "teleop_recorder": "teleop_recorder_node",
         "xarm_driver": "xarm_driver_node"}
RUNTIME_ONLY = {"inject_error_code"}


@pytest.mark.parametrize("name", sorted(NODES))
def test_config_matches_declared_parameters(name):
    module = importlib.import_module(f"polytask.nodes.{NODES[name]}")
    doc = yaml.safe_load((ROOT / "config" / f"{name}.yaml").read_text())
    assert list(doc) == [name], f"config/{name}.yaml: top-level key must be the node name {name!r}"
    values = doc[name]["ros__parameters"]
    declared = {p.name: p for p in module.PARAMS}
    assert set(values) == set(declared) - RUNTIME_ONLY, f"config/{name}.yaml keys differ from the node's parameters"
    for key, value in values.items():
        p = declared[key]
        coerced = _coerce(name, p, value)
        if key not in ("store",):
            default = list(p.default) if isinstance(p.default, tuple) else p.default
            assert coerced == default, f"config/{name}.yaml: {key} = {value!r} differs from the node default"
        assert p.description


@pytest.mark.parametrize(("param", "value", "needle"), [
    (Param("rate_hz", 10.0, "x", min=0.5), 10, None),
    (Param("rate_hz", 10.0, "x", min=0.5), 0.1, "below the minimum 0.5"),
    (Param("rate_hz", 10.0, "x"), "fast", "expected a number"),
    (Param("flag", True, "x"), 1, "expected true or false"),
    (Param("n", 3, "x"), 2.5, "expected an integer"),
    (Param("mode", "sim", "x", choices=("sim", "real")), "mock", "expected one of ['sim', 'real']"),
    (Param("crop", [], "x", type="int_array"), None, None),
    (Param("axes", [1, 0, 4], "x", type="int_array", length=3), [1, 2], "expected a list of 3 values"),
    (Param("axes", [1, 0, 4], "x", type="int_array", length=3), "1,2,3", "expected a list"),
])
def test_parameter_coercion_and_errors(param, value, needle):
    if needle is None:
        out = _coerce("n", param, value)
        assert out == (10.0 if param.name == "rate_hz" else [])
        assert type(out) is (float if param.name == "rate_hz" else list)
    else:
        with pytest.raises(ParamError, match=needle.replace("[", r"\[").replace("]", r"\]")) as err:
            _coerce("cam", param, value)
        assert f"node 'cam': parameter {param.name!r}" in str(err.value)


def test_ros_args_round_trip_through_yaml():
    args = ros_args(params={"device": "0", "crop": [1, 2, 3, 4], "loop": False, "rate_hz": 5.0, "ip": ""},
                    params_files=["config/camera.yaml"], name="cam", namespace="/arm2", remaps={"a": "b"})
    assert args[:3] == ["--ros-args", "--params-file", "config/camera.yaml"]
    values = dict(a.split(":=", 1) for a in args if ":=" in a and not a.startswith("__"))
    assert yaml.safe_load(values["device"]) == "0" and yaml.safe_load(values["crop"]) == [1, 2, 3, 4]
    assert yaml.safe_load(values["loop"]) is False and yaml.safe_load(values["ip"]) == ""
    assert "__node:=cam" in args and "__ns:=/arm2" in args and "a:=b" in args
    assert format_param_value("12") == "'12'"


def test_task_state_and_action_topics_go_through_the_table():
    """The nodes that speak `robot/task_state` and `robot/action` create their endpoints through the table (one
    source for name, type and QoS): no topic name or message type of their own."""
    import inspect

    from polytask.ros import topics

    t = topics.topic("task_state")
    assert (t.name, t.msg_type, t.qos) == ("robot/task_state", "std_msgs/msg/Float32MultiArray", "state")
    assert topics.topic("action").msg_type == "sensor_msgs/msg/JointState"
    for module in ("nodes.sim_bridge_node", "nodes.policy_server_node", "ros.topic_task"):  # the trainer's topic task
        source = inspect.getsource(importlib.import_module(f"polytask.{module}"))
        assert '"task_state"' in source and f'"{t.name}"' not in source and "Float32MultiArray" not in source, module
    assert set(t.publishers) == {"sim_bridge_node", "xarm_driver_node"}
    assert "teleop_recorder_node" in t.subscribers  # what teleop stores as the episode's state
