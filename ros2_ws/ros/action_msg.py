"""The action command on the wire: `sensor_msgs/JointState`, stamped with the observation it answers.

Why this message: the command needs a stamp (a receiver must know how old the camera frame behind it is, not only
when it arrived) and a variable length (4-D xArm and Meta-World, 6-D DMC, 9-D Kitchen). `std_msgs` has no stamped
float vector; `JointState` is a standard message with a header and one named value per entry, and it is what
ros2_control's topic-based hardware interfaces and simulators such as Isaac Sim take as joint commands, so
`ros2 topic echo`, rosbag tools and Foxglove show it with names.

Layout: `position[i]` = action value i in [-1, 1]; `name[i]` = `a<i>` (empty names are accepted);
`velocity` and `effort` stay empty (a message carrying them is refused: it means another kind of command).
`header.stamp` = the stamp of the observation (camera frame) the action was computed from, on the publisher's node
clock (sim time under use_sim_time), never the publish time; receivers judge its age with
`polytask.robot.safety.observation_verdict` on their own node clock.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class ActionMessageError(ValueError):
    """An action message that cannot be read as one command; the text says what was expected."""


def action_names(dim: int) -> list[str]:
    return [f"a{i}" for i in range(dim)]


def stamp_seconds(stamp: Any) -> float:
    """builtin_interfaces/Time -> seconds on the clock that made it."""
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def now_seconds(node: Any) -> float:
    """The node clock now (ROS time, or sim time under use_sim_time), in seconds: what stamps are judged against."""
    return node.get_clock().now().nanoseconds * 1e-9


def action_message(values: Any, stamp: Any) -> Any:
    """A JointState command holding `values`, stamped `stamp` (the answered observation's header.stamp; None leaves
    it zero, which every receiver refuses)."""
    from sensor_msgs.msg import JointState

    data = [float(v) for v in np.asarray(values, dtype=np.float64).reshape(-1)]
    msg = JointState(name=action_names(len(data)), position=data)
    if stamp is not None:
        msg.header.stamp = stamp
    return msg


def read_action(msg: Any) -> tuple[np.ndarray, float]:
    """(values, stamp in seconds) of an action message; ActionMessageError when it is not one command."""
    values = np.asarray(msg.position, dtype=np.float64).reshape(-1)
    if len(msg.name) not in (0, values.shape[0]):
        raise ActionMessageError(
            f"{len(msg.name)} names for {values.shape[0]} positions; expected one name per action value (or none)"
        )
    if len(msg.velocity) or len(msg.effort):
        raise ActionMessageError(
            f"velocity ({len(msg.velocity)}) / effort ({len(msg.effort)}) values given; an "
            "action carries its values in `position` only"
        )
    return values, stamp_seconds(msg.header.stamp)
