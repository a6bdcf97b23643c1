"""One description of each launch graph: its arguments, its nodes, their parameters, remappings and conditions.

Why one description: a ROS 2 user runs `ros2 launch polytask deploy.launch.py robot:=sim`, and a machine without
the `ros2` CLI runs `polytask launch deploy robot:=sim`; both must start the same nodes with the same parameters.
So the graphs are plain data here, `resolve()` turns a graph plus `arg:=value` overrides into concrete node
invocations (what `polytask launch` starts), and `launch_description()` builds the equivalent `launch_ros` actions
(what the `.launch.py` files return). Tests compare the two.

Values in a node's parameters, arguments and conditions may refer to a launch argument (`Arg("task")`), to a
file installed with the package (`Share("config/x.yaml")`) or its text (`FileText(...)`), or to whether another
ROS package is installed (`Installed("robot_state_publisher")`); everything else is a literal.

Declared once: a launch argument that only passes a node's parameter on takes that parameter's declared default
(`NodeDefault("online_trainer_node", "steps")` reads `Param("steps", 6000, ...)` of the node), so a default lives
in the node's PARAMS (and its config/<node>.yaml, which a test keeps equal) and nowhere else.

Nodes of other ROS packages (rviz2, joy, robot_state_publisher, tf2_ros) start only where the ament index has
their package; elsewhere the graph logs one line naming what it skipped and starts the rest."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polytask.launch.graph_model import (
    PACKAGE,
    RESPAWN_DELAY_S,
    RESPAWN_MAX_RETRIES,
    Arg,
    FileText,
    Graph,
    Installed,
    LaunchArg,
    NodeDefault,
    NodeSpec,
    Share,
    Value,
    node_param,
    node_param_text,
)
from polytask.launch.packages import package_installed, share_dir

__all__ = ["PACKAGE", "RESPAWN_DELAY_S", "RESPAWN_MAX_RETRIES", "Arg", "FileText", "Graph", "Installed",
           "LaunchArg", "NodeDefault", "NodeSpec", "Share", "Value", "node_param", "node_param_text"]


# --- the arguments shared by several graphs --------------------------------------------------------------------
ROBOT_ARG = LaunchArg("robot", "sim", "the arm: `sim` = the sim bridge of `task` (any registry task), `xarm_sim` = "
                      "the xArm driver on its simulated backend of `task` (an `xarm/*` task: the real arm's node, "
                      "command guard and servo semantics), `xarm` = the real xArm + camera",
                      ("sim", "xarm_sim", "xarm"))
TASK_ARG = LaunchArg("task", NodeDefault("policy_server_node", "task"),
                     "registry task name (the simulated task; the policy's, trainer's and recorder's task)")
XARM_IP_ARG = LaunchArg("xarm_ip", "192.168.1.185", "controller address of the real xArm (robot:=xarm)")
CAMERA_ARG = LaunchArg("camera_device", NodeDefault("camera_node", "device"),
                       "OpenCV device of the robot camera: index, path or URL (robot:=xarm)")
RATE_ARG = LaunchArg("rate", NodeDefault("sim_bridge_node", "rate"), "camera / control rate in Hz")

# The xArm's URDF (generated from the MuJoCo model by polytask.robot.urdf; a test keeps it current) and where its
# base sits: in the simulated scene the MJCF's link_base pose in the world (a test checks it against the model);
# on the real arm the world frame is the arm's base frame.
XARM_URDF = "urdf/xarm7.urdf"
SIM_XARM_BASE_XYZ, REAL_XARM_BASE_XYZ = ("1.09", "0.28", "0.655"), ("0.0", "0.0", "0.0")


def world_to_base(name: str, xyz: tuple[str, str, str], when: tuple[str, tuple[str, ...]] | None) -> NodeSpec:
    """tf2_ros's static_transform_publisher: world -> link_base (RViz's fixed frame is `world`)."""
    return NodeSpec(name, "static_transform_publisher", package="tf2_ros",
                    arguments=("--x", xyz[0], "--y", xyz[1], "--z", xyz[2], "--frame-id", "world",
                               "--child-frame-id", "link_base"),
                    when=when, description="static TF world -> link_base (the xArm's base frame)")


def state_publisher(when: tuple[str, tuple[str, ...]] | None) -> NodeSpec:
    """robot_state_publisher with the xArm URDF: TF of every link from /joint_states, and /robot_description."""
    return NodeSpec("robot_state_publisher", "robot_state_publisher", package="robot_state_publisher",
                    parameters=(("robot_description", FileText(XARM_URDF)),), when=when,
                    description="xArm URDF -> TF of the links from joint_states; latches robot_description")


CAMERA = NodeSpec("camera", "camera_node", params_file="config/camera.yaml",
                  parameters=(("device", Arg("camera_device", string=True)), ("rate_hz", Arg("rate"))),
                  when=("robot", ("xarm",)), respawn=True,
                  description="OpenCV camera -> sensor_msgs/Image + CameraInfo")
REAL_XARM = NodeSpec("xarm_driver", "xarm_driver_node", params_file="config/xarm_driver.yaml",
                     parameters=(("backend", "real"), ("ip", Arg("xarm_ip")), ("task", Arg("task"))),
                     when=("robot", ("xarm",)),
                     description="xArm servo control: watchdog, workspace box, e-stop and reset services")
SIM_XARM = NodeSpec("xarm_driver", "xarm_driver_node", params_file="config/xarm_driver.yaml",
                    parameters=(("backend", "sim"), ("task", Arg("task")), ("rate_hz", Arg("rate"))),
                    when=("robot", ("xarm_sim",)),
                    description="the xArm driver on the simulated xArm task `task`: camera, joint states, task "
                                "state, reward, success; the real arm's guard and watchdog")
SIM_BRIDGE = NodeSpec("sim_bridge", "sim_bridge_node", params_file="config/sim_bridge.yaml",
                      parameters=(("task", Arg("task")), ("rate", Arg("rate"))), when=("robot", ("sim",)),
                      description="a registry task exposed as a robot: camera, state, action, reset, reward, success")

MONITOR_DESCRIPTION = "MarkerArray + status for RViz, /diagnostics, success counters"
MONITOR = NodeSpec("monitor", "monitor_node", params_file="config/monitor.yaml",
                   parameters=(("task", Arg("task")),), description=MONITOR_DESCRIPTION)
# Where the arm is an xArm the monitor latches its URDF on /robot_description, unless robot_state_publisher
# runs (it publishes the same topic; two publishers of one latched topic would clash).
XARM_DESCRIPTION_PARAMS = (("robot_description_file", Share(XARM_URDF)),
                           ("publish_robot_description", Installed("robot_state_publisher", negate=True)))

TELEOP_RECORD = Graph(
    name="teleop_record",
    description="Record demonstrations with a joystick: joystick -> teleop recorder -> arm; episodes to a store.",
    arguments=(
        LaunchArg("robot", "sim", "the arm: `sim` = the simulated xArm task `task` (MuJoCo, any `xarm/*` task), "
                  "`xarm` = the real xArm + camera", ("sim", "xarm")),
        TASK_ARG,
        LaunchArg("store", "data/demos", "episode store folder (resumed when it exists)"),
        LaunchArg("joystick", "reader", "`reader` = polytask's Linux joystick reader, `joy` = the ROS joy package, "
                  "`none` = no joystick node (Joy comes from elsewhere: a remote machine, a scripted operator)",
                  ("reader", "joy", "none")),
        LaunchArg("joy_device", NodeDefault("joy_reader_node", "device"), "Linux joystick device (joystick:=reader)"),
        LaunchArg("joy_device_id", "0", "SDL joystick index for the ROS joy node (joystick:=joy)"),
        LaunchArg("joy_device_name", "", "SDL joystick name for the ROS joy node; takes precedence over the index "
                  "(joystick:=joy)"),
        LaunchArg("rate", NodeDefault("teleop_recorder_node", "rate_hz"), "teleop command and arm control rate in Hz"),
        LaunchArg("bag", NodeDefault("monitor_node", "bag"),
                  "also record the session's topics into this rosbag2 MCAP folder (empty: off)"),
        XARM_IP_ARG, CAMERA_ARG,
    ),
    nodes=(
        NodeSpec("xarm_driver", "xarm_driver_node", params_file="config/xarm_driver.yaml",
                 parameters=(("backend", "sim"), ("task", Arg("task")), ("rate_hz", Arg("rate"))),
                 when=("robot", ("sim",)),
                 description="the simulated xArm task `task` (MuJoCo) with its camera, same topics as the real one"),
        NodeSpec("xarm_driver", "xarm_driver_node", params_file="config/xarm_driver.yaml",
                 parameters=(("backend", "real"), ("ip", Arg("xarm_ip")), ("task", Arg("task")),
                             ("rate_hz", Arg("rate"))),
                 when=("robot", ("xarm",)), description="the real xArm"),
        NodeSpec("camera", "camera_node", params_file="config/camera.yaml",
                 parameters=(("device", Arg("camera_device", string=True)), ("rate_hz", 30.0)),
                 when=("robot", ("xarm",)), respawn=True,
                 description="OpenCV camera -> sensor_msgs/Image + CameraInfo"),
        NodeSpec("joy_reader", "joy_reader_node", params_file="config/joy_reader.yaml",
                 parameters=(("device", Arg("joy_device")),), when=("joystick", ("reader",)), respawn=True,
                 description="Linux joystick device -> sensor_msgs/Joy"),
        NodeSpec("joy", "joy_node", package="joy",
                 parameters=(("device_id", Arg("joy_device_id")),
                             ("device_name", Arg("joy_device_name", string=True)),
                             ("deadzone", 0.05), ("autorepeat_rate", 20.0)),
                 when=("joystick", ("joy",)), description="the standard ROS joy driver (SDL)"),
        NodeSpec("teleop_recorder", "teleop_recorder_node", params_file="config/teleop_recorder.yaml",
                 parameters=(("task", Arg("task")), ("store", Arg("store")), ("rate_hz", Arg("rate"))),
                 description="Joy -> Δxyz + gripper actions; buttons start/save/redo/cancel episodes"),
        world_to_base("world_to_base", SIM_XARM_BASE_XYZ, ("robot", ("sim",))),
        world_to_base("world_to_base", REAL_XARM_BASE_XYZ, ("robot", ("xarm",))),
        state_publisher(None),
        NodeSpec("monitor", "monitor_node", params_file="config/monitor.yaml", description=MONITOR_DESCRIPTION,
                 parameters=(("task", Arg("task")), ("bag", Arg("bag", string=True)), *XARM_DESCRIPTION_PARAMS)),
    ),
)

TRAIN_TASK = Graph(
    name="train_task",
    description="Train one expert (demo-guided DrQ-v2) on a task, through the sim bridge's topics or in-process.",
    arguments=(
        LaunchArg("robot", NodeDefault("online_trainer_node", "env"), "`sim` = the trainer drives the sim bridge "
                  "through the robot topics, `inprocess` = the trainer steps the task itself"),
        TASK_ARG,
        LaunchArg("demos", NodeDefault("online_trainer_node", "demos"), "episode store with the task's "
                  "demonstrations"),
        LaunchArg("run_dir", NodeDefault("online_trainer_node", "run_dir"),
                  "run folder: replay episodes, checkpoints (resumed if present)"),
        LaunchArg("steps", NodeDefault("online_trainer_node", "steps"), "training budget in agent steps"),
        LaunchArg("reward", NodeDefault("online_trainer_node", "reward"),
                  "`env` = the task's reward, `ot` = optimal transport against the demos"),
        LaunchArg("config", NodeDefault("online_trainer_node", "config_file"),
                  "expert config YAML (empty: the paper's defaults)"),
        LaunchArg("rate", NodeDefault("sim_bridge_node", "rate"), "tick rate of the sim bridge in Hz"),
    ),
    nodes=(
        NodeSpec("sim_bridge", "sim_bridge_node", params_file="config/sim_bridge.yaml",
                 parameters=(("task", Arg("task")), ("rate", Arg("rate")), ("auto_reset", False)),
                 when=("robot", ("sim",)),
                 description="the task as a robot; the trainer starts each episode with robot/reset"),
        NodeSpec("online_trainer", "online_trainer_node", params_file="config/online_trainer.yaml",
                 parameters=(("task", Arg("task")), ("env", Arg("robot")), ("demos", Arg("demos")),
                             ("run_dir", Arg("run_dir")), ("steps", Arg("steps")), ("reward", Arg("reward")),
                             ("config_file", Arg("config", string=True))),
                 description="the expert loop of learning/rl/expert.py; replay episodes, checkpoints, progress"),
        MONITOR,
    ),
)

DEPLOY = Graph(
    name="deploy",
    description="Run a (unified) policy on the arm: camera -> policy server -> arm, watched by the monitor/RViz.",
    arguments=(
        ROBOT_ARG, TASK_ARG,
        LaunchArg("checkpoint", NodeDefault("policy_server_node", "checkpoint"), "policy checkpoint path, or "
                  "`scripted` / `scripted:<task>` for the task's scripted expert"),
        LaunchArg("rviz", "true", "start RViz with rviz/polytask.rviz (when rviz2 is installed)", ("true", "false")),
        RATE_ARG, XARM_IP_ARG, CAMERA_ARG,
        LaunchArg("summary", NodeDefault("monitor_node", "summary_file"), "the monitor writes what it saw (rate, "
                  "latency, successes) here as JSON at shutdown (empty: log only)"),
        LaunchArg("bag", NodeDefault("monitor_node", "bag"),
                  "record the session's topics into this rosbag2 MCAP folder (empty: off)"),
    ),
    nodes=(
        SIM_BRIDGE, SIM_XARM, CAMERA, REAL_XARM,
        NodeSpec("policy_server", "policy_server_node", params_file="config/policy_server.yaml",
                 parameters=(("checkpoint", Arg("checkpoint")), ("task", Arg("task"))),
                 description="images (+ state) -> actions at camera rate; task/checkpoint switch at runtime"),
        world_to_base("world_to_base", REAL_XARM_BASE_XYZ, ("robot", ("xarm",))),
        world_to_base("world_to_base", SIM_XARM_BASE_XYZ, ("robot", ("xarm_sim",))),
        state_publisher(("robot", ("xarm", "xarm_sim"))),
        NodeSpec("monitor", "monitor_node", params_file="config/monitor.yaml",
                 parameters=(("task", Arg("task")), ("summary_file", Arg("summary", string=True)),
                             ("bag", Arg("bag", string=True))),
                 when=("robot", ("sim",)), description=MONITOR_DESCRIPTION),
        NodeSpec("monitor", "monitor_node", params_file="config/monitor.yaml",
                 parameters=(("task", Arg("task")), ("summary_file", Arg("summary", string=True)),
                             ("bag", Arg("bag", string=True)), *XARM_DESCRIPTION_PARAMS),
                 when=("robot", ("xarm", "xarm_sim")), description=MONITOR_DESCRIPTION + "; the xArm URDF"),
        NodeSpec("rviz", "rviz2", package="rviz2", arguments=("-d", Share("rviz/polytask.rviz")),
                 when=("rviz", ("true",)), description="RViz with the PolyTask display config"),
    ),
)

DISTILL = Graph(
    name="distill",
    description="Distil experts into one unified policy from their episode stores, then evaluate it.",
    arguments=(
        LaunchArg("stores", NodeDefault("offline_distiller_node", "stores"),
                  "comma-separated episode stores, one task each"),
        LaunchArg("experts", NodeDefault("offline_distiller_node", "experts"), "teachers: expert checkpoints, "
                  "comma-separated in store order, or one for all (`scripted` = the tasks' scripted experts)"),
        LaunchArg("out", NodeDefault("offline_distiller_node", "out"),
                  "run folder for the relabelled stores, unified checkpoint and evaluation"),
        LaunchArg("goal", NodeDefault("offline_distiller_node", "goal"), "goal modality of the student"),
        LaunchArg("goal_images", NodeDefault("offline_distiller_node", "goal_images"),
                  "demo store for image goals (goal:=image)"),
        LaunchArg("steps", NodeDefault("offline_distiller_node", "steps"),
                  "distillation gradient steps (per added task when lifelong)"),
        LaunchArg("eval_episodes", NodeDefault("offline_distiller_node", "eval_episodes"),
                  "evaluation episodes per task after distillation"),
        LaunchArg("lifelong", NodeDefault("offline_distiller_node", "lifelong"),
                  "add the stores' tasks one by one to a lifelong run"),
        LaunchArg("config", NodeDefault("offline_distiller_node", "config_file"),
                  "distillation YAML (empty: Table V defaults)"),
    ),
    nodes=(
        NodeSpec("offline_distiller", "offline_distiller_node", params_file="config/offline_distiller.yaml",
                 parameters=(("stores", Arg("stores")), ("experts", Arg("experts")), ("out", Arg("out")),
                             ("goal", Arg("goal")), ("goal_images", Arg("goal_images", string=True)),
                             ("steps", Arg("steps")), ("eval_episodes", Arg("eval_episodes")),
                             ("lifelong", Arg("lifelong")), ("config_file", Arg("config", string=True))),
                 description="relabel + distil (learning/distill) + evaluate; publishes progress"),
    ),
)

GRAPHS: dict[str, Graph] = {g.name: g for g in (TELEOP_RECORD, TRAIN_TASK, DEPLOY, DISTILL)}


def graph(name: str) -> Graph:
    if name not in GRAPHS:
        raise KeyError(f"unknown launch graph {name!r}; known: {', '.join(GRAPHS)}")
    return GRAPHS[name]


# --- resolution: graph + overrides -> concrete nodes ----------------------------------------------------------------
@dataclass
class ResolvedNode:
    """One node to start: everything `polytask launch` passes on its command line."""

    name: str
    executable: str
    package: str
    module: str
    params_files: list[str]
    parameters: dict[str, str]  # value as the command line carries it (`-p name:=value`, YAML-parsed by ROS)
    remappings: list[tuple[str, str]]
    arguments: list[str]
    respawn: bool
    external: bool = False
    respawn_max_retries: int = RESPAWN_MAX_RETRIES
    extra: dict[str, Any] = field(default_factory=dict)

    def ros_args(self) -> list[str]:
        """`--ros-args ...` exactly as launch_ros builds it for a Node action."""
        out = ["--ros-args", "-r", f"__node:={self.name}"]
        for f in self.params_files:
            out += ["--params-file", f]
        for k, v in self.parameters.items():
            out += ["-p", f"{k}:={v}"]
        for src, dst in self.remappings:
            out += ["-r", f"{src}:={dst}"]
        return out


def parse_overrides(graph_: Graph, items: list[str]) -> dict[str, str]:
    """`["task:=x", "robot:=sim"]` -> values, refusing unknown names and values outside an argument's choices."""
    values: dict[str, str] = {}
    for item in items:
        if ":=" not in item:
            raise ValueError(f"launch argument {item!r} must look like name:=value (graph {graph_.name!r}; "
                             f"arguments: {', '.join(graph_.arg_names())})")
        name, value = item.split(":=", 1)
        values[name.strip()] = value
    return validate_args(graph_, values)


def validate_args(graph_: Graph, values: Mapping[str, str]) -> dict[str, str]:
    """Defaults filled in; unknown names and values outside `choices` are errors naming the argument."""
    known = {a.name: a for a in graph_.arguments}
    for name in values:
        if name not in known:
            raise ValueError(f"graph {graph_.name!r}: unknown launch argument {name!r}; "
                             f"known: {', '.join(known)}")
    out = {}
    for a in graph_.arguments:
        v = str(values[a.name]) if a.name in values else a.default_text
        allowed = a.allowed
        if allowed and v not in allowed:
            raise ValueError(f"graph {graph_.name!r}: launch argument {a.name!r} is {v!r}, "
                             f"expected one of {', '.join(allowed)}")
        out[a.name] = v
    return out


def _value(v: Value, args: Mapping[str, str], share: Path) -> str:
    if isinstance(v, Arg):
        return _quote(args[v.name]) if v.string else args[v.name]
    if isinstance(v, Share):
        return str(share / v.relpath)
    if isinstance(v, FileText):
        return _quote((share / v.relpath).read_text())
    if isinstance(v, Installed):
        v = package_installed(v.package) != v.negate
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _quote(text: str) -> str:
    """YAML that reads back as the string `text` (what `-p` needs for digits that must stay a string)."""
    import yaml

    return yaml.safe_dump(text, default_flow_style=True).strip().removesuffix("...").strip()


def is_active(node: NodeSpec, args: Mapping[str, str]) -> bool:
    if node.when is None:
        return True
    name, allowed = node.when
    return args[name] in allowed


def resolve(name: str, overrides: Mapping[str, str] | list[str] = (), share: Path | None = None) -> list[ResolvedNode]:
    """The nodes `name` starts for these argument values, with parameters as strings (as on a command line)."""
    g = graph(name)
    args = parse_overrides(g, list(overrides)) if isinstance(overrides, list | tuple) else validate_args(g, overrides)
    share = share or share_dir()
    nodes = []
    for spec in g.nodes:
        if not is_active(spec, args):
            continue
        params_files = [str(share / spec.params_file)] if spec.params_file else []
        nodes.append(ResolvedNode(
            name=spec.name, executable=spec.executable, package=spec.package, module=spec.module,
            params_files=params_files,
            parameters={k: _value(v, args, share) for k, v in spec.parameters},
            remappings=list(spec.remappings),
            arguments=[_value(v, args, share) for v in spec.arguments],
            respawn=spec.respawn, external=spec.external, respawn_max_retries=spec.respawn_max_retries))
    return nodes


def check_graph(g: Graph) -> None:
    """Internal consistency: every Arg referenced is declared, node names unique, conditions name real choices.

    Only an argument's own `choices` are checked here (NodeDefault choices would import the nodes at import time;
    tests/test_launch_graphs.py checks those).
    """
    declared = {a.name: a for a in g.arguments}
    names = [n.name for n in g.nodes if n.when is None]
    if len(set(names)) != len(names):
        raise ValueError(f"graph {g.name!r}: duplicate unconditional node names {names}")
    for n in g.nodes:
        refs = [v for _, v in n.parameters if isinstance(v, Arg)] + [v for v in n.arguments if isinstance(v, Arg)]
        if n.when:
            refs.append(Arg(n.when[0]))
            arg = declared.get(n.when[0])
            if arg and arg.choices and not set(n.when[1]) <= set(arg.choices):
                raise ValueError(f"graph {g.name!r} node {n.name!r}: condition values {n.when[1]} outside "
                                 f"the choices {arg.choices} of {arg.name!r}")
        for r in refs:
            if r.name not in declared:
                raise ValueError(f"graph {g.name!r} node {n.name!r} refers to undeclared argument {r.name!r}")


for _g in GRAPHS.values():
    check_graph(_g)
