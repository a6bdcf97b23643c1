"""One description of each launch graph: its arguments, its nodes, their parameters, remappings and conditions.

Why one description: a ROS 2 user runs `ros2 launch polytask deploy.launch.py robot:=sim`, and a machine without
the `ros2` CLI runs `polytask launch deploy robot:=sim`; both must start the same nodes with the same parameters.
So the graphs are plain data here, `resolve()` turns a graph plus `arg:=value` overrides into concrete node
invocations (what `polytask launch` starts), and `launch_description()` builds the equivalent `launch_ros` actions
(what the `.launch.py` files return). Tests compare the two.

Values in a node's parameters, arguments and conditions may refer to a launch argument (`Arg("task")`) or to a
file installed with the package (`Share("config/x.yaml")`); everything else is a literal.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PACKAGE = "polytask"


@dataclass(frozen=True)
class Arg:
    """A reference to a launch argument's value.

    Both front ends let ROS read a parameter value as YAML (`-p k:=0` is the integer 0). `string=True` keeps the
    text a string (launch_ros `ParameterValue(..., value_type=str)`; a quoted `-p k:='0'` here).
    """

    name: str
    string: bool = False


@dataclass(frozen=True)
class Share:
    """A file installed under `share/polytask/` (in a source checkout: the repository root)."""

    relpath: str


Value = str | int | float | bool | Arg | Share


@dataclass(frozen=True)
class LaunchArg:
    name: str
    default: str
    description: str
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class NodeSpec:
    """One node of a graph.

    `executable` is the console script (`lib/<package>/<executable>`); for our own package the same code runs as
    `python -m polytask.nodes.<executable>`. `when=("robot", ("sim",))` starts the node only when the argument has
    one of the values. `external` nodes come from other ROS packages (rviz2, joy); `polytask launch` starts them
    only when their executable is on PATH.
    """

    name: str
    executable: str
    package: str = PACKAGE
    params_file: str | None = None  # relative to the share directory, e.g. "config/sim_bridge.yaml"
    parameters: tuple[tuple[str, Value], ...] = ()
    remappings: tuple[tuple[str, str], ...] = ()
    arguments: tuple[Value, ...] = ()
    when: tuple[str, tuple[str, ...]] | None = None
    respawn: bool = False
    description: str = ""

    @property
    def external(self) -> bool:
        return self.package != PACKAGE

    @property
    def module(self) -> str:
        return f"{PACKAGE}.nodes.{self.executable}"


@dataclass(frozen=True)
class Graph:
    name: str
    description: str
    arguments: tuple[LaunchArg, ...]
    nodes: tuple[NodeSpec, ...]

    def argument(self, name: str) -> LaunchArg:
        for a in self.arguments:
            if a.name == name:
                return a
        raise KeyError(f"graph {self.name!r} has no argument {name!r}; known: {', '.join(self.arg_names())}")

    def arg_names(self) -> list[str]:
        return [a.name for a in self.arguments]


# --- the arguments shared by several graphs --------------------------------------------------------------------
ROBOT_ARG = LaunchArg("robot", "sim", "the arm: `sim` = the sim bridge of `task` (any registry task), `xarm` = the "
                      "real xArm + camera", ("sim", "xarm"))
TASK_ARG = LaunchArg("task", "xarm/reach", "registry task name (sim bridge task; the policy's and trainer's task)")
XARM_IP_ARG = LaunchArg("xarm_ip", "192.168.1.185", "controller address of the real xArm (robot:=xarm)")
CAMERA_ARG = LaunchArg("camera_device", "0", "OpenCV device of the robot camera: index, path or URL (robot:=xarm)")
RATE_ARG = LaunchArg("rate", "30.0", "camera / control rate in Hz")


CAMERA = NodeSpec("camera", "camera_node", params_file="config/camera.yaml",
                  parameters=(("device", Arg("camera_device", string=True)), ("rate_hz", Arg("rate"))),
                  when=("robot", ("xarm",)), respawn=True, description="OpenCV camera -> sensor_msgs/Image")
REAL_XARM = NodeSpec("xarm_driver", "xarm_driver_node", params_file="config/xarm_driver.yaml",
                     parameters=(("backend", "real"), ("ip", Arg("xarm_ip"))), when=("robot", ("xarm",)),
                     description="xArm servo control: watchdog, workspace box, e-stop and reset services")
SIM_BRIDGE = NodeSpec("sim_bridge", "sim_bridge_node", params_file="config/sim_bridge.yaml",
                      parameters=(("task", Arg("task")), ("rate", Arg("rate"))), when=("robot", ("sim",)),
                      description="a registry task exposed as a robot: camera, state, action, reset, reward, success")

MONITOR = NodeSpec("monitor", "monitor_node", params_file="config/monitor.yaml",
                   parameters=(("task", Arg("task")),),
                   description="MarkerArray + status for RViz, latched /robot_description, success counters")

TELEOP_RECORD = Graph(
    name="teleop_record",
    description="Record demonstrations with a joystick: joystick -> teleop recorder -> arm; episodes to a store.",
    arguments=(
        LaunchArg("robot", "sim", "the arm: `sim` = the simulated xArm (MuJoCo), `xarm` = the real xArm + camera",
                  ("sim", "xarm")),
        TASK_ARG,
        LaunchArg("store", "data/demos", "episode store folder (resumed when it exists)"),
        LaunchArg("joystick", "reader", "`reader` = polytask's Linux joystick reader, `joy` = the ROS joy package",
                  ("reader", "joy")),
        LaunchArg("joy_device", "/dev/input/js0", "Linux joystick device (joystick:=reader)"),
        LaunchArg("rate", "10.0", "teleop command and arm control rate in Hz"),
        LaunchArg("bag", "", "also record the session's topics into this rosbag2 MCAP folder (empty: off)"),
        XARM_IP_ARG, CAMERA_ARG,
    ),
    nodes=(
        NodeSpec("xarm_driver", "xarm_driver_node", params_file="config/xarm_driver.yaml",
                 parameters=(("backend", "sim"), ("rate_hz", Arg("rate"))), when=("robot", ("sim",)),
                 description="the simulated xArm (MuJoCo) with its camera, same topics as the real one"),
        NodeSpec("xarm_driver", "xarm_driver_node", params_file="config/xarm_driver.yaml",
                 parameters=(("backend", "real"), ("ip", Arg("xarm_ip")), ("rate_hz", Arg("rate"))),
                 when=("robot", ("xarm",)), description="the real xArm"),
        NodeSpec("camera", "camera_node", params_file="config/camera.yaml",
                 parameters=(("device", Arg("camera_device", string=True)), ("rate_hz", 30.0)),
                 when=("robot", ("xarm",)), respawn=True, description="OpenCV camera -> sensor_msgs/Image"),
        NodeSpec("joy_reader", "joy_reader_node", params_file="config/joy_reader.yaml",
                 parameters=(("device", Arg("joy_device")),), when=("joystick", ("reader",)), respawn=True,
                 description="Linux joystick device -> sensor_msgs/Joy"),
        NodeSpec("joy", "joy_node", package="joy", when=("joystick", ("joy",)),
                 description="the standard ROS joy driver"),
        NodeSpec("teleop_recorder", "teleop_recorder_node", params_file="config/teleop_recorder.yaml",
                 parameters=(("task", Arg("task")), ("store", Arg("store")), ("rate_hz", Arg("rate"))),
                 description="Joy -> Δxyz + gripper actions; buttons start/save/redo/cancel episodes"),
        NodeSpec("monitor", "monitor_node", params_file="config/monitor.yaml",
                 parameters=(("task", Arg("task")), ("bag", Arg("bag", string=True))),
                 description=MONITOR.description),
    ),
)

TRAIN_TASK = Graph(
    name="train_task",
    description="Train one expert (demo-guided DrQ-v2) on a task, through the sim bridge's topics or in-process.",
    arguments=(
        LaunchArg("robot", "sim", "`sim` = the trainer drives the sim bridge through the robot topics, "
                  "`inprocess` = the trainer steps the task itself", ("sim", "inprocess")),
        TASK_ARG,
        LaunchArg("demos", "data/demos", "episode store with the task's demonstrations"),
        LaunchArg("run_dir", "runs/train_task", "run folder: replay episodes, checkpoints (resumed if present)"),
        LaunchArg("steps", "6000", "training budget in agent steps"),
        LaunchArg("reward", "env", "`env` = the task's reward, `ot` = optimal transport against the demos",
                  ("env", "ot")),
        LaunchArg("config", "", "expert config YAML (empty: the paper's defaults)"),
        LaunchArg("rate", "30.0", "tick rate of the sim bridge in Hz"),
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
        LaunchArg("checkpoint", "scripted", "policy checkpoint path, or `scripted` / `scripted:<task>` for the "
                  "task's scripted expert"),
        LaunchArg("rviz", "true", "start RViz with rviz/polytask.rviz (when rviz2 is installed)", ("true", "false")),
        RATE_ARG, XARM_IP_ARG, CAMERA_ARG,
        LaunchArg("summary", "", "the monitor writes what it saw (rate, latency, successes) here as JSON at "
                  "shutdown (empty: log only)"),
        LaunchArg("bag", "", "record the session's topics into this rosbag2 MCAP folder (empty: off)"),
    ),
    nodes=(
        SIM_BRIDGE, CAMERA, REAL_XARM,
        NodeSpec("policy_server", "policy_server_node", params_file="config/policy_server.yaml",
                 parameters=(("checkpoint", Arg("checkpoint")), ("task", Arg("task"))),
                 description="images (+ state) -> actions at camera rate; task/checkpoint switch at runtime"),
        NodeSpec("monitor", "monitor_node", params_file="config/monitor.yaml",
                 parameters=(("task", Arg("task")), ("summary_file", Arg("summary", string=True)),
                             ("bag", Arg("bag", string=True))),
                 description=MONITOR.description),
        NodeSpec("rviz", "rviz2", package="rviz2", arguments=("-d", Share("rviz/polytask.rviz")),
                 when=("rviz", ("true",)), description="RViz with the PolyTask display config"),
    ),
)

DISTILL = Graph(
    name="distill",
    description="Distil experts into one unified policy from their episode stores, then evaluate it.",
    arguments=(
        LaunchArg("stores", "data/replay/metaworld_button-press", "comma-separated episode stores, one task each"),
        LaunchArg("experts", "scripted", "teachers: expert checkpoints, comma-separated in store order, or one for "
                  "all (`scripted` = the tasks' scripted experts)"),
        LaunchArg("out", "runs/distill", "run folder for the relabelled stores, unified checkpoint and evaluation"),
        LaunchArg("goal", "onehot", "goal modality of the student", ("onehot", "sinusoid", "language", "image")),
        LaunchArg("goal_images", "", "demo store for image goals (goal:=image)"),
        LaunchArg("steps", "2000", "distillation gradient steps (per added task when lifelong)"),
        LaunchArg("eval_episodes", "10", "evaluation episodes per task after distillation"),
        LaunchArg("lifelong", "false", "add the stores' tasks one by one to a lifelong run", ("true", "false")),
        LaunchArg("config", "", "distillation YAML (empty: Table V defaults)"),
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


def share_dir() -> Path:
    """Where config/, rviz/ and launch/ live: the installed share folder, else the source checkout."""
    here = Path(__file__).resolve().parent.parent  # launch/.. = repository root in a checkout
    if (here / "config").is_dir() and (here / "package.xml").is_file():
        return here
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE))
    except Exception as err:  # PackageNotFoundError or no ament index at all
        raise FileNotFoundError(f"cannot find the {PACKAGE} share directory (no checkout at {here}, "
                                f"not in AMENT_PREFIX_PATH={os.environ.get('AMENT_PREFIX_PATH', '')!r})") from err


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
        v = str(values.get(a.name, a.default))
        if a.choices and v not in a.choices:
            raise ValueError(f"graph {graph_.name!r}: launch argument {a.name!r} is {v!r}, "
                             f"expected one of {', '.join(a.choices)}")
        out[a.name] = v
    return out


def _value(v: Value, args: Mapping[str, str], share: Path) -> str:
    if isinstance(v, Arg):
        return _quote(args[v.name]) if v.string else args[v.name]
    if isinstance(v, Share):
        return str(share / v.relpath)
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
            respawn=spec.respawn, external=spec.external))
    return nodes


def check_graph(g: Graph) -> None:
    """Internal consistency: every Arg referenced is declared, node names unique, conditions name real choices."""
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


# --- launch_ros front end (only on ROS 2 machines) -------------------------------------------------------------------
def launch_description(name: str):
    """The `launch.LaunchDescription` of graph `name`, built from the same data as `resolve()`.

    Imported lazily: `launch`/`launch_ros` exist only on ROS 2 machines (and as fakes in the tests).
    """
    from launch_ros.actions import Node
    from launch_ros.parameter_descriptions import ParameterValue
    from launch_ros.substitutions import FindPackageShare

    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument
    from launch.conditions import IfCondition, LaunchConfigurationEquals
    from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression

    g = graph(name)

    def sub(v: Value):
        if isinstance(v, Arg):
            if v.string:
                return ParameterValue(LaunchConfiguration(v.name), value_type=str)
            return LaunchConfiguration(v.name)
        if isinstance(v, Share):
            return PathJoinSubstitution([FindPackageShare(PACKAGE), *v.relpath.split("/")])
        return v  # literals keep their Python type (a bool parameter stays a bool)

    actions: list = [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description,
                                           **({"choices": list(a.choices)} if a.choices else {}))
                     for a in g.arguments]
    for spec in g.nodes:
        kwargs: dict[str, Any] = {"package": spec.package, "executable": spec.executable, "name": spec.name,
                                  "output": "screen"}
        params: list = []
        if spec.params_file:
            params.append(sub(Share(spec.params_file)))
        if spec.parameters:
            params.append({k: sub(v) for k, v in spec.parameters})
        if params:
            kwargs["parameters"] = params
        if spec.remappings:
            kwargs["remappings"] = list(spec.remappings)
        if spec.arguments:
            kwargs["arguments"] = [sub(v) for v in spec.arguments]
        if spec.respawn:
            kwargs["respawn"] = True
            kwargs["respawn_delay"] = 1.0
        if spec.when:
            arg, allowed = spec.when
            if len(allowed) == 1:
                kwargs["condition"] = LaunchConfigurationEquals(arg, allowed[0])
            else:
                kwargs["condition"] = IfCondition(PythonExpression(
                    ["'", LaunchConfiguration(arg), f"' in {list(allowed)!r}"]))
        actions.append(Node(**kwargs))
    return LaunchDescription(actions)


# --- documentation ---------------------------------------------------------------------------------------------------
README_BEGIN = "<!-- launch-graphs:begin (generated by polytask.launch.graphs.markdown) -->"
README_END = "<!-- launch-graphs:end -->"


def markdown() -> str:
    """The README's launch section, generated so it cannot drift from the graphs (`polytask launch --markdown`)."""
    lines = []
    for g in GRAPHS.values():
        lines += [f"### `{g.name}`", "", g.description, "",
                  f"`ros2 launch {PACKAGE} {g.name}.launch.py [arg:=value ...]` or "
                  f"`polytask launch {g.name} [arg:=value ...]`", "",
                  "| argument | default | choices | meaning |", "|---|---|---|---|"]
        for a in g.arguments:
            lines.append(f"| `{a.name}` | `{a.default}` | {', '.join(a.choices) or '-'} | {a.description} |")
        lines += ["", "| node | executable | started when | parameters |", "|---|---|---|---|"]
        for n in g.nodes:
            when = f"`{n.when[0]}` in {', '.join(n.when[1])}" if n.when else "always"
            exe = n.executable if not n.external else f"{n.package}/{n.executable}"
            params = ", ".join(f"`{k}`={_doc_value(v)}" for k, v in n.parameters) or "-"
            lines.append(f"| `{n.name}` | `{exe}` | {when} | {params} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def render_readme(text: str) -> str:
    """`text` (a README) with the part between README_BEGIN and README_END replaced by `markdown()`.

    A README without the markers is an error: add the two marker lines where the launch section belongs, then
    `polytask launch --write-readme README.md` keeps it current.
    """
    if README_BEGIN not in text or README_END not in text:
        raise ValueError(f"README has no launch section markers; add the lines\n{README_BEGIN}\n{README_END}")
    head, rest = text.split(README_BEGIN, 1)
    _old, tail = rest.split(README_END, 1)
    return f"{head}{README_BEGIN}\n{markdown()}{README_END}{tail}"


def _doc_value(v: Value) -> str:
    if isinstance(v, Arg):
        return f"`$({v.name})`"
    if isinstance(v, Share):
        return f"`share/{v.relpath}`"
    return f"`{v}`"


for _g in GRAPHS.values():
    check_graph(_g)
