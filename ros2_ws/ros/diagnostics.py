"""Every JSON status topic, also as `diagnostic_msgs/DiagnosticArray` on `/diagnostics`.

Why: rqt_robot_monitor, the diagnostic aggregator and most fleet tools read `/diagnostics`, not our JSON strings.
`topics.publisher()` wraps the publisher of each status topic of `topics.DIAGNOSTIC_TOPICS` in a
`StatusPublisher`, so a node that publishes its status publishes its diagnostics too, with no code of its own.

One `DiagnosticStatus` per status message: `name` "<node>: <topic>", `hardware_id` the node name, `level` from the
status (`diagnostic_level`), `message` the state (or the last error), and every top-level JSON field as a
key/value (nested values as compact JSON).
"""

from __future__ import annotations

import json
from typing import Any

OK, WARN, ERROR = 0, 1, 2  # diagnostic_msgs/DiagnosticStatus levels (bytes on the wire)
ERROR_STATES = frozenset({"error", "estop", "disconnected", "failed"})
WARN_STATES = frozenset({"connecting", "resetting", "shutdown"})


def diagnostic_level(data: dict[str, Any]) -> tuple[int, str]:
    """(level, message) of one status: ERROR for a fault state or a lost device, WARN for a transition or a
    reported error, OK otherwise."""
    state = str(data.get("state", "")) if data.get("state") is not None else ""
    last_error = str(data.get("last_error") or data.get("error") or "")
    if state in ERROR_STATES:
        return ERROR, f"{state}: {last_error}" if last_error else state
    if data.get("connected") is False:
        return ERROR, f"not connected: {last_error}" if last_error else "not connected"
    if state in WARN_STATES:
        return WARN, state
    if last_error:
        return WARN, f"{state}: {last_error}" if state else last_error
    return OK, state or "ok"


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))


def to_diagnostic_array(data: dict[str, Any], name: str, hardware_id: str, stamp: Any = None):
    """A DiagnosticArray holding the one DiagnosticStatus of a status dict."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    level, message = diagnostic_level(data)
    status = DiagnosticStatus(
        level=bytes([level]),
        name=name,
        message=message[:500],
        hardware_id=hardware_id,
        values=[KeyValue(key=str(k), value=_text(v)[:2000]) for k, v in sorted(data.items())],
    )
    array = DiagnosticArray(status=[status])
    if stamp is not None:
        array.header.stamp = stamp
    return array


class StatusPublisher:
    """A status topic's publisher that also publishes each message as diagnostics.

    Everything else (`wait_for_all_acked`, `get_subscription_count`, ...) goes to the wrapped publisher.
    """

    def __init__(self, node: Any, topic: Any, publisher: Any) -> None:
        from polytask.ros import topics

        self._node = node
        self._publisher = publisher
        self._name = f"{node.get_name()}: {topic.name}"
        self._diagnostics = topics.publisher(node, "diagnostics")

    def publish(self, msg) -> None:
        self._publisher.publish(msg)
        try:
            data = json.loads(msg.data)
        except (TypeError, ValueError):
            data = {"state": "error", "last_error": "status is not JSON"}
        if not isinstance(data, dict):
            data = {"value": data}
        self._diagnostics.publish(
            to_diagnostic_array(data, self._name, self._node.get_name(), self._node.get_clock().now().to_msg())
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._publisher, name)
