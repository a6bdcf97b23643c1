"""The launch graphs agree with everything else that describes them: the generated launch docs and README
section, the nodes' config files and declared parameters (defaults declared once), and the RViz config against the
topic table. No ROS processes are started in this file; the graphs themselves: test_launch_graphs.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from polytask.launch import graph_docs, graphs

REPO = Path(__file__).resolve().parents[1]


def test_markdown_lists_every_graph_argument_and_node():
    text = graph_docs.markdown()
    for g in graphs.GRAPHS.values():
        assert f"### `{g.name}`" in text
        for a in g.arguments:
            assert f"| `{a.name}` | `{a.default_text}` |" in text
        for n in g.nodes:
            assert f"| `{n.name}` |" in text
    readme = REPO / "README.md"
    if readme.is_file() and graph_docs.README_BEGIN in readme.read_text():
        assert graph_docs.render_readme(readme.read_text()) == readme.read_text(), (
            "README launch section is stale: run `polytask launch --write-readme README.md`"
        )


def test_readme_section_is_rewritten_between_its_markers(tmp_path):
    from polytask.cli import main

    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n## Launch\n{graph_docs.README_BEGIN}\nold text\n{graph_docs.README_END}\n\n## After\n")
    assert main(["launch", "--write-readme", str(readme)]) == 0
    text = readme.read_text()
    assert "old text" not in text and "### `deploy`" in text and text.endswith("## After\n")
    assert graph_docs.render_readme(text) == text  # idempotent
    with pytest.raises(ValueError, match="no launch section markers"):
        graph_docs.render_readme("# no markers\n")


# camera, joy_reader, teleop_recorder and xarm_driver: tests/test_ros_robot_config.py (with their run-time-only
# parameters)
OWN_NODES = {
    "sim_bridge": "sim_bridge_node",
    "policy_server": "policy_server_node",
    "monitor": "monitor_node",
    "online_trainer": "online_trainer_node",
    "offline_distiller": "offline_distiller_node",
}


@pytest.mark.parametrize("node", sorted(OWN_NODES))
def test_config_files_hold_exactly_the_declared_parameters(node):
    import importlib

    module = importlib.import_module(f"polytask.nodes.{OWN_NODES[node]}")
    data = yaml.safe_load((REPO / "config" / f"{node}.yaml").read_text())
    assert list(data) == [node]
    values = data[node]["ros__parameters"]
    declared = {p.name: p for p in module.PARAMS}
    assert set(values) == set(declared)
    for k, v in values.items():
        assert type(v) is type(declared[k].default), f"config/{node}.yaml: {k}"
        assert v == declared[k].default, f"config/{node}.yaml: {k} differs from the node's default"
    # every parameter the graphs pass to this node is declared by it
    for g in graphs.GRAPHS.values():
        for n in g.nodes:
            if n.name == node:
                assert {k for k, _ in n.parameters} <= set(declared), f"{g.name}: {n.name}"


RVIZ_TYPES = {
    "rviz_default_plugins/Image": "sensor_msgs/msg/Image",
    "rviz_default_plugins/MarkerArray": "visualization_msgs/msg/MarkerArray",
    "rviz_default_plugins/Pose": "geometry_msgs/msg/PoseStamped",
    "rviz_default_plugins/RobotModel": "std_msgs/msg/String",
}


def rviz_topics() -> dict[str, str]:
    """Topic -> message type of every display of rviz/polytask.rviz that subscribes to a topic."""
    cfg = yaml.safe_load((REPO / "rviz" / "polytask.rviz").read_text())
    out = {}
    for d in cfg["Visualization Manager"]["Displays"]:
        topic = (d.get("Topic") or {}).get("Value") or d.get("Description Topic", {}).get("Value")
        if topic:
            assert d["Class"] in RVIZ_TYPES, f"display class {d['Class']} has no known message type"
            out[topic] = RVIZ_TYPES[d["Class"]]
    return out


def test_rviz_displays_match_the_topic_table_and_deploy_publishers():
    from polytask.ros import topics

    shown = rviz_topics()
    assert {"/camera/image_raw", "/monitor/markers", "/robot/ee_pose", "/robot_description"} <= set(shown)
    cfg = yaml.safe_load((REPO / "rviz" / "polytask.rviz").read_text())["Visualization Manager"]
    assert "rviz_default_plugins/TF" in {d["Class"] for d in cfg["Displays"]}
    assert cfg["Global Options"]["Fixed Frame"] == "world"  # the graphs publish world -> link_base
    by_path = {t.path: t for t in topics.TOPICS.values()}
    deploy_exes = {n.executable for n in graphs.DEPLOY.nodes}
    for path, msg_type in shown.items():
        assert path in by_path, f"rviz shows {path}, which is not in the topic table"
        assert by_path[path].msg_type == msg_type
        assert any(p.split(" ")[0] in deploy_exes for p in by_path[path].publishers), path


def test_every_parameter_a_graph_passes_is_declared_by_its_node():
    """Guards against drift between the graphs and the nodes (an undeclared `-p` would be silently ignored)."""
    import importlib

    for g in graphs.GRAPHS.values():
        for n in g.nodes:
            if n.external:
                continue
            module = importlib.import_module(n.module)
            declared = {p.name: p for p in module.PARAMS}
            for key, value in n.parameters:
                assert key in declared, f"graph {g.name}: node {n.name} has no parameter {key!r}"
                choices = declared[key].choices
                if choices and not isinstance(value, graphs.Arg | graphs.Share):
                    assert value in choices, f"graph {g.name}: {n.name}.{key}={value!r} not in {choices}"
                if choices and isinstance(value, graphs.Arg):
                    arg = g.argument(value.name)
                    allowed = set(arg.allowed) if arg.allowed else {arg.default_text}
                    assert allowed <= set(choices), f"graph {g.name}: {arg.name} values {allowed} vs {choices}"


def test_a_launch_default_is_never_a_copy_of_a_node_default():
    """Declared once: an argument that passes a node parameter on either has a default of its own (a value the
    graph chooses) or takes the node's (NodeDefault); it never repeats the node's default as a literal."""
    import importlib

    for g in graphs.GRAPHS.values():
        for n in g.nodes:
            if n.external:
                continue
            declared = {p.name: p for p in importlib.import_module(n.module).PARAMS}
            for key, value in n.parameters:
                if not isinstance(value, graphs.Arg):
                    continue
                arg = g.argument(value.name)
                if isinstance(arg.default, graphs.NodeDefault):
                    continue
                node_default = graphs.node_param_text(n.executable, key)
                assert arg.default != node_default or declared[key].default in ("", None), (
                    f"graph {g.name}: argument {arg.name!r} repeats {n.executable}'s default of {key!r} "
                    f"({node_default}); use NodeDefault({n.executable!r}, {key!r})"
                )


def test_node_defaults_of_arguments_are_the_node_parameters():
    from polytask.nodes.online_trainer_node import PARAMS as TRAINER
    from polytask.nodes.policy_server_node import PARAMS as SERVER

    steps = next(p for p in TRAINER if p.name == "steps")
    assert graphs.TRAIN_TASK.argument("steps").default_text == str(steps.default)
    checkpoint = next(p for p in SERVER if p.name == "checkpoint")
    assert graphs.DEPLOY.argument("checkpoint").default_text == checkpoint.default
    assert graphs.DEPLOY.argument("bag").default_text == ""  # a string default is the text itself, not YAML "''"
    assert graphs.DISTILL.argument("lifelong").default_text == "false"
    assert graphs.DISTILL.argument("lifelong").allowed == ("true", "false")
    assert graphs.DISTILL.argument("goal").allowed == ("onehot", "sinusoid", "language", "image")
    for g in graphs.GRAPHS.values():  # conditions name values their argument can take
        for n in g.nodes:
            if n.when:
                allowed = g.argument(n.when[0]).allowed
                assert not allowed or set(n.when[1]) <= set(allowed), (g.name, n.name)
