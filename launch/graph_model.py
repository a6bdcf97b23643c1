"""The data model of the launch graphs: arguments, nodes, and the values their parameters may refer to.

polytask.launch.graphs holds the four graphs made of these; polytask.launch.frontend turns one into launch_ros
actions (`ros2 launch`), polytask.launch.graphs.resolve into command lines (`polytask launch`).
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class FileText:
    """The text of a file under `share/polytask/`, passed as a string parameter (robot_state_publisher's URDF)."""

    relpath: str


@dataclass(frozen=True)
class Installed:
    """Whether ROS package `package` is in the ament index where the graph starts (`negate`: whether it is not)."""

    package: str
    negate: bool = False


@dataclass(frozen=True)
class NodeDefault:
    """The declared default of parameter `param` of our node `executable` (its `PARAMS` in polytask.nodes)."""

    executable: str
    param: str


Value = str | int | float | bool | Arg | Share | FileText | Installed

# A node marked `respawn` is restarted at most this often (launch_ros `respawn_max_retries`, the launcher's
# `max_restarts`): a node that exits on a bad parameter must not restart forever, once a second.
RESPAWN_MAX_RETRIES = 5
RESPAWN_DELAY_S = 1.0


@dataclass(frozen=True)
class LaunchArg:
    name: str
    default: str | NodeDefault
    description: str
    choices: tuple[str, ...] = ()

    @property
    def default_text(self) -> str:
        """The default as launch passes it (text); a NodeDefault is read from the node's declared parameter."""
        if isinstance(self.default, NodeDefault):
            return node_param_text(self.default.executable, self.default.param)
        return self.default

    @property
    def allowed(self) -> tuple[str, ...]:
        """`choices`, or for a NodeDefault without its own choices the node parameter's (true/false for a bool)."""
        if self.choices or not isinstance(self.default, NodeDefault):
            return self.choices
        p = node_param(self.default.executable, self.default.param)
        if isinstance(p.default, bool):
            return ("true", "false")
        return tuple(str(c) for c in p.choices)


def node_param(executable: str, name: str):
    """The `Param` named `name` that polytask.nodes.<executable> declares."""
    import importlib

    module = importlib.import_module(f"{PACKAGE}.nodes.{executable}")
    for p in module.PARAMS:
        if p.name == name:
            return p
    raise KeyError(f"node {executable!r} declares no parameter {name!r}")


def node_param_text(executable: str, name: str) -> str:
    """A node parameter's declared default as launch-argument text: a string as it is (what `name:=text` gives),
    anything else as YAML (`6000`, `30.0`, `false`), which is how the node reads the argument back."""
    from polytask.ros.node_base import format_param_value

    default = node_param(executable, name).default
    return default if isinstance(default, str) else format_param_value(default)


@dataclass(frozen=True)
class NodeSpec:
    """One node of a graph.

    `executable` is the console script (`lib/<package>/<executable>`); for our own package the same code runs as
    `python -m polytask.nodes.<executable>`. `when=("robot", ("sim",))` starts the node only when the argument has
    one of the values. `external` nodes come from other ROS packages (rviz2, joy, robot_state_publisher, tf2_ros);
    both front ends start them only where the ament index has the package, and log one line where it does not.
    A `respawn` node is restarted at most `respawn_max_retries` times.
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
    respawn_max_retries: int = RESPAWN_MAX_RETRIES
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
