"""Configuration: YAML validated into dataclasses, with the paper's Tables IV and V as defaults.

Every hyper-parameter is a documented field; an unknown key or a value of the wrong type is an error that names
the file and the key (`config/expert.yaml: key 'agent.lrr' is unknown; known keys: ...`).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override does not match its dataclass; the message names the file and key."""


def from_dict(cls: type[T], data: Any, where: str = "<config>", prefix: str = "") -> T:
    """Build dataclass `cls` from a mapping, recursing into nested dataclasses and checking every type."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        key = prefix.rstrip(".") or "<root>"
        raise ConfigError(f"{where}: key {key!r} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in fields:
            raise ConfigError(f"{where}: key {full!r} is unknown; known keys: {', '.join(sorted(fields))}")
        kwargs[key] = _coerce(hints[key], value, where, full)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {err}") from err


def _coerce(hint: Any, value: Any, where: str, key: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where, prefix=f"{key}.")
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where, key)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: key {key!r} has value {value!r}, expected {hint}")
    if origin is typing.Literal:
        if value not in typing.get_args(hint):
            raise ConfigError(f"{where}: key {key!r} is {value!r}, expected one of {typing.get_args(hint)}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: key {key!r} must be a list, got {type(value).__name__}")
        (inner, *_rest) = typing.get_args(hint) or (Any,)
        items = [_coerce(inner, v, where, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: key {key!r} must be a mapping, got {type(value).__name__}")
        return dict(value)
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: key {key!r} must be true/false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: key {key!r} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: key {key!r} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: key {key!r} must be a string, got {value!r}")
        return value
    return value


def check_choices(obj: Any, section: str = "") -> None:
    """Refuse a value outside a `Literal` field's choices (call from `__post_init__`): the choices are declared
    once, in the type, and hold for configs built in code as for ones loaded from YAML."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        hint = hints[f.name]
        if typing.get_origin(hint) is typing.Literal:
            value = getattr(obj, f.name)
            if value not in typing.get_args(hint):
                key = f"{section}.{f.name}" if section else f.name
                raise ValueError(f"key {key!r} is {value!r}, expected one of {typing.get_args(hint)}")


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config ({err.strerror})") from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: malformed YAML ({err})") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def parse_overrides(items: typing.Iterable[str], source: str = "--set") -> dict[str, Any]:
    """`["agent.lr=1e-3", "network.hidden=512"]` -> {"agent.lr": 0.001, "network.hidden": 512}.

    Values are read as YAML; a value YAML 1.1 leaves as text but that is a number ('1e-3') becomes a float.
    Blank items are skipped (ROS string-array parameters often carry one). `source` names the flag or parameter
    in the error for an item without '='.
    """
    out: dict[str, Any] = {}
    for item in items:
        if not item.strip():
            continue
        if "=" not in item:
            raise ValueError(f"{source} {item!r}: expected KEY=VALUE")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw)
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        out[key.strip()] = value
    return out


def load_config(cls: type[T], path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> T:
    """Defaults from `cls`, then the YAML file, then `overrides` (dotted keys, e.g. {"agent.lr": 3e-4})."""
    data: dict[str, Any] = load_yaml(path) if path is not None else {}
    where = str(path) if path is not None else "<defaults>"
    for dotted, value in (overrides or {}).items():
        node = data
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {dotted!r}: {part!r} is not a section")
        node[parts[-1]] = value
        where = f"{where} (+overrides)" if "+overrides" not in where else where
    return from_dict(cls, data, where)


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def dump_yaml(obj: Any) -> str:
    return yaml.safe_dump(to_dict(obj), sort_keys=False)


# --- the documented YAML of a config, generated from its dataclass --------------------------------------------------
_FIELD_LINE = re.compile(r"^    (\w+)\s*:[^=]+=.*?(?:\s+#\s?(.*))?$")


def field_notes(cls: type) -> dict[str, tuple[list[str], str]]:
    """Per field of dataclass `cls` (its own and inherited): the comment lines above it and its trailing comment,
    read from the source, so the documentation of a default lives beside the default only."""
    notes: dict[str, tuple[list[str], str]] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        above: list[str] = []
        for line in inspect.getsource(klass).splitlines()[1:]:
            if line.strip().startswith("#"):
                above.append(line.strip()[1:].strip())
                continue
            match = _FIELD_LINE.match(line)
            if match and match.group(1) in {f.name for f in dataclasses.fields(klass)}:
                notes[match.group(1)] = (above, match.group(2) or "")
            above = []
    return notes


def _yaml_value(value: Any) -> str:
    return yaml.safe_dump([value], default_flow_style=True, width=10**6).strip()[1:-1]


def _emit(obj: Any, indent: int, out: list[str]) -> None:
    cls = type(obj)
    hints, notes = typing.get_type_hints(cls), field_notes(cls)
    own = list(inspect.get_annotations(cls))  # a subclass's own fields first, as it declares them
    ordered = sorted(dataclasses.fields(obj), key=lambda f: own.index(f.name) if f.name in own else len(own))
    for f in ordered:
        value = getattr(obj, f.name)
        above, trailing = notes.get(f.name, ([], ""))
        if typing.get_origin(hints[f.name]) is typing.Literal:
            choices = " | ".join(str(c) for c in typing.get_args(hints[f.name]))
            trailing = f"{choices}; {trailing}" if trailing else choices
        out.extend(f"{' ' * indent}# {line}" for line in above)
        if dataclasses.is_dataclass(value):
            out.append(f"{' ' * indent}{f.name}:" + (f"  # {trailing}" if trailing else ""))
            _emit(value, indent + 2, out)
            continue
        text = f"{' ' * indent}{f.name}: {_yaml_value(value)}"
        out.append(f"{text:<30}  # {trailing}".rstrip() if trailing else text)


def document(obj: Any, header: Sequence[str] = ()) -> str:
    """`obj` (a config dataclass, usually its defaults) as commented YAML that `load_config` reads back equal."""
    out = [f"# {line}".rstrip() for line in header]
    _emit(obj, 0, out)
    return "\n".join(out) + "\n"
