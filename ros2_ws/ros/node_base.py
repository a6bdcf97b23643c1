"""Helpers every PolyTask node uses: typed documented parameters, clean spin/shutdown, child-process environment.

Why these exist:
- Parameters: rclpy infers a parameter's type from its default and then refuses `-p rate_hz:=10` for a float
  default. Nodes here declare each parameter once with a type, description and range (`Param`); values from YAML
  or `-p` are coerced (int -> float) and checked, and a bad value stops the node with one line naming the node,
  the parameter, the value and what was expected.
- Shutdown: rclpy's own signal handler shuts the context down before the node can stop the arm or publish a
  final status. `run_node` installs SIGINT/SIGTERM handlers that end the spin loop, calls the node's `close()`
  while ROS still works, then shuts down.
- Child processes: the PyPI ROS wheels re-exec Python to set LD_LIBRARY_PATH; a child of another venv must not
  inherit that (`child_env`). `ros_args` builds the `--ros-args` that `launch_ros` would pass.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import yaml

PARAM_TYPES = ("bool", "int", "double", "string", "int_array", "double_array", "string_array")


class ParamError(ValueError):
    """A parameter value that the node cannot run with; the message names node, parameter, value, expectation."""


@dataclass(frozen=True)
class Param:
    """One declared node parameter: name, default, what it does, and what values are allowed."""

    name: str
    default: Any
    description: str
    type: str = ""  # one of PARAM_TYPES; inferred from the default when empty
    choices: tuple = ()
    min: float | None = None
    max: float | None = None
    length: int | None = None  # exact length for arrays

    def resolved_type(self) -> str:
        if self.type:
            if self.type not in PARAM_TYPES:
                raise ParamError(f"parameter {self.name!r}: type {self.type!r} unknown; expected one of {PARAM_TYPES}")
            return self.type
        d = self.default
        if isinstance(d, bool):
            return "bool"
        if isinstance(d, int):
            return "int"
        if isinstance(d, float):
            return "double"
        if isinstance(d, str):
            return "string"
        if isinstance(d, (list, tuple)) and d:
            inner = Param(self.name, d[0], "").resolved_type()
            return f"{inner}_array"
        raise ParamError(f"parameter {self.name!r}: cannot infer a type from default {d!r}; set Param.type")


def _coerce(node_name: str, p: Param, value: Any) -> Any:
    kind = p.resolved_type()
    where = f"node {node_name!r}: parameter {p.name!r} = {value!r}"

    def scalar(v: Any, k: str) -> Any:
        if k == "bool":
            if isinstance(v, bool):
                return v
            raise ParamError(f"{where}: expected true or false")
        if k == "int":
            if isinstance(v, bool) or not isinstance(v, int):
                raise ParamError(f"{where}: expected an integer")
            return int(v)
        if k == "double":
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ParamError(f"{where}: expected a number")
            return float(v)
        if not isinstance(v, str):
            raise ParamError(f"{where}: expected a string")
        return v

    if kind.endswith("_array"):
        if value is None:  # `-p k:=[]` arrives as NOT_SET
            value = []
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ParamError(f"{where}: expected a list")
        out: Any = [scalar(v, kind[:-6]) for v in value]
        if p.length is not None and len(out) != p.length:
            raise ParamError(f"{where}: expected a list of {p.length} values")
        values = out
    else:
        out = scalar(value, kind)
        values = [out]
    for v in values:
        if p.choices and v not in p.choices:
            raise ParamError(f"{where}: expected one of {list(p.choices)}")
        if p.min is not None and v < p.min:
            raise ParamError(f"{where}: below the minimum {p.min}")
        if p.max is not None and v > p.max:
            raise ParamError(f"{where}: above the maximum {p.max}")
    return out


def declare_params(node: Any, params: Iterable[Param]) -> SimpleNamespace:
    """Declare every parameter with its description and constraints; return the checked values by name.

    Raises ParamError (a ValueError) naming the node and parameter when a value is wrong.
    """
    from rcl_interfaces.msg import ParameterDescriptor

    values = {}
    for p in params:
        p.resolved_type()
        constraints = []
        if p.choices:
            constraints.append(f"one of {list(p.choices)}")
        if p.min is not None or p.max is not None:
            constraints.append(f"in [{p.min}, {p.max}]")
        if p.length is not None:
            constraints.append(f"{p.length} values")
        desc = ParameterDescriptor(description=p.description, dynamic_typing=True,
                                   additional_constraints="; ".join(constraints))
        default = list(p.default) if isinstance(p.default, tuple) else p.default
        raw = node.declare_parameter(p.name, default, desc).value
        values[p.name] = _coerce(node.get_name(), p, raw)
    return SimpleNamespace(**values)


def describe_params(params: Iterable[Param]) -> str:
    """A YAML-comment-style listing of parameters (used to write/check config/<node>.yaml)."""
    return "\n".join(f"# {p.name} ({p.resolved_type()}): {p.description}" for p in params)


def json_string(data: dict[str, Any]):
    """A std_msgs/String carrying JSON (status topics)."""
    from std_msgs.msg import String

    msg = String()
    msg.data = json.dumps(data, sort_keys=True, default=str)
    return msg


# --- running a node ----------------------------------------------------------------------------------------------
def run_node(factory: Callable[[], Any], args: list[str] | None = None, threads: int = 1) -> int:
    """Init rclpy, build the node, spin until SIGINT/SIGTERM, call node.close() while ROS still works, shut down.

    `threads` > 1 spins a MultiThreadedExecutor: callbacks in different callback groups then run concurrently
    (the xArm driver's reset service must not stop its control timer). A node may set `executor_threads` to
    choose at run time (an EGL context is bound to one thread: a node that renders must stay single-threaded).
    Returns a process exit code: 0 after a clean stop, 2 when the node refused its parameters (one-line error).
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    from polytask.ros.transport import apply_default_profile

    stop = {"flag": False}

    def _handler(signum, _frame):
        stop["flag"] = True

    apply_default_profile()  # large camera frames through shared memory (before the participant exists)
    rclpy.init(args=sys.argv if args is None else args, signal_handler_options=SignalHandlerOptions.NO)
    old = {s: signal.signal(s, _handler) for s in (signal.SIGINT, signal.SIGTERM)}
    node = None
    code = 0
    try:
        node = factory()
        threads = int(getattr(node, "executor_threads", threads))
        executor = MultiThreadedExecutor(num_threads=threads) if threads > 1 else SingleThreadedExecutor()
        executor.add_node(node)
        while not stop["flag"] and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    except ParamError as err:
        print(f"error: {err}", file=sys.stderr)
        code = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception as err:
        from polytask.sim.mujoco_render import gl_failure

        line = gl_failure(err)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)  # one line, not a traceback ending in '_mjr_context'
        code = 2
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if callable(close):
                try:
                    close()
                except Exception as err:  # a failing close must not hide the shutdown
                    print(f"error while closing {node.get_name()}: {err}", file=sys.stderr)
            node.destroy_node()
        for s, h in old.items():
            signal.signal(s, h)
        rclpy.try_shutdown()
    return code


# --- child processes ---------------------------------------------------------------------------------------------
def child_env(domain_id: int | None = None, *, foreign_python: bool = False, localhost_only: bool = True,
              extra: dict[str, str] | None = None, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a node process: domain, loopback discovery, ament index, unbuffered logs.

    `foreign_python=True` for a Python from another venv: the wheels' re-exec marker and LD_LIBRARY_PATH of this
    process would point it at our libraries, so they are removed.
    """
    env = dict(os.environ if base is None else base)
    env.setdefault("AMENT_PREFIX_PATH", sys.prefix)
    env["PYTHONUNBUFFERED"] = "1"
    if domain_id is not None:
        if not 0 <= int(domain_id) <= 232:
            raise ValueError(f"ROS_DOMAIN_ID {domain_id} out of range; expected 0..232")
        env["ROS_DOMAIN_ID"] = str(int(domain_id))
    if localhost_only:
        env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    if foreign_python:
        env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)
        env.pop("LD_LIBRARY_PATH", None)
    if extra:
        env.update(extra)
    return env


def format_param_value(value: Any) -> str:
    """A value as the YAML text `-p name:=<text>` expects (strings that look like numbers stay strings)."""
    if isinstance(value, tuple):
        value = list(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    if text.endswith("\n..."):
        text = text[: -len("\n...")]
    elif text.endswith("..."):
        text = text[:-3].strip()
    return text


def ros_args(*, params: dict[str, Any] | None = None, params_files: Iterable[str] = (), name: str | None = None,
             namespace: str | None = None, remaps: dict[str, str] | None = None,
             log_level: str | None = None) -> list[str]:
    """The `--ros-args ...` list that launch_ros would pass: params files, -p overrides, node name, ns, remaps."""
    out = ["--ros-args"]
    for f in params_files:
        out += ["--params-file", str(f)]
    for k, v in (params or {}).items():
        out += ["-p", f"{k}:={format_param_value(v)}"]
    if name:
        out += ["-r", f"__node:={name}"]
    if namespace:
        out += ["-r", f"__ns:={namespace}"]
    for src, dst in (remaps or {}).items():
        out += ["-r", f"{src}:={dst}"]
    if log_level:
        out += ["--log-level", log_level]
    return out


def node_command(node_module: str, args: list[str] | None = None, python: str | None = None) -> list[str]:
    """argv that starts `polytask.nodes.<node_module>` as its own process (no console script needed)."""
    module = node_module if "." in node_module else f"polytask.nodes.{node_module}"
    return [python or sys.executable, "-m", module, *(args or [])]
