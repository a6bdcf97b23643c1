"""The launch_ros front end: a graph of polytask.launch.graphs as a `launch.LaunchDescription` (`ros2 launch`).

Built from the same data as `graphs.resolve()` (what `polytask launch` starts); tests/test_launch_graphs.py
compares the two, and tests/test_ros2_launch.py runs the `.launch.py` files through the real `ros2 launch`.

- Conditions use `IfCondition(EqualsSubstitution(...))` (Jazzy's replacement of the deprecated
  `LaunchConfigurationEquals`).
- A node of another ROS package is added only when the ament index has the package (`ros2 launch` would abort
  the whole launch with "package 'rviz2' not found" otherwise); where it is missing a `LogInfo` says so once,
  under the node's own condition.
- Respawning nodes are bounded by `respawn_max_retries`.

Imported only where `launch`/`launch_ros` exist (ROS 2 machines, the tests' launch bundle, or fakes).
"""

from __future__ import annotations

from typing import Any

from polytask.launch import graphs, packages
from polytask.launch.graph_model import PACKAGE, RESPAWN_DELAY_S, Arg, FileText, Installed, Share, Value


def launch_description(name: str):
    """The `launch.LaunchDescription` of graph `name`."""
    from launch_ros.actions import Node
    from launch_ros.parameter_descriptions import ParameterValue
    from launch_ros.substitutions import FindPackageShare

    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, LogInfo
    from launch.conditions import IfCondition
    from launch.substitutions import (
        EqualsSubstitution,
        FileContent,
        LaunchConfiguration,
        PathJoinSubstitution,
        PythonExpression,
    )

    g = graphs.graph(name)

    def share(relpath: str):
        return PathJoinSubstitution([FindPackageShare(PACKAGE), *relpath.split("/")])

    def sub(v: Value):
        if isinstance(v, Arg):
            if v.string:
                return ParameterValue(LaunchConfiguration(v.name), value_type=str)
            return LaunchConfiguration(v.name)
        if isinstance(v, Share):
            return share(v.relpath)
        if isinstance(v, FileText):
            return ParameterValue(FileContent(share(v.relpath)), value_type=str)
        if isinstance(v, Installed):
            return packages.package_installed(v.package) != v.negate
        return v  # literals keep their Python type (a bool parameter stays a bool)

    def condition(when):
        if not when:
            return None
        arg, allowed = when
        if len(allowed) == 1:
            return IfCondition(EqualsSubstitution(LaunchConfiguration(arg), allowed[0]))
        return IfCondition(PythonExpression(["'", LaunchConfiguration(arg), f"' in {list(allowed)!r}"]))

    actions: list = []
    for a in g.arguments:
        allowed = a.allowed
        actions.append(
            DeclareLaunchArgument(
                a.name,
                default_value=a.default_text,
                description=a.description,
                **({"choices": list(allowed)} if allowed else {}),
            )
        )
    for spec in g.nodes:
        if spec.external and not packages.package_installed(spec.package):
            actions.append(LogInfo(msg=packages.skipped_message(spec), condition=condition(spec.when)))
            continue
        kwargs: dict[str, Any] = {
            "package": spec.package,
            "executable": spec.executable,
            "name": spec.name,
            "output": "screen",
        }
        params: list = []
        if spec.params_file:
            params.append(share(spec.params_file))
        if spec.parameters:
            params.append({k: sub(v) for k, v in spec.parameters})
        if params:
            kwargs["parameters"] = params
        if spec.remappings:
            kwargs["remappings"] = list(spec.remappings)
        if spec.arguments:
            kwargs["arguments"] = [sub(v) for v in spec.arguments]
        if spec.respawn:
            kwargs.update(respawn=True, respawn_delay=RESPAWN_DELAY_S, respawn_max_retries=spec.respawn_max_retries)
        if spec.when:
            kwargs["condition"] = condition(spec.when)
        actions.append(Node(**kwargs))
    return LaunchDescription(actions)
