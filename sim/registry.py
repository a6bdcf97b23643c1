"""One registry from task names to factories: the only place that knows which suites exist.

Suite modules register their task names at import time without importing their simulator (that happens in
the factory), so listing tasks is cheap; a suite that knows its tasks' `TaskSpec`s without a simulator registers
them too, so `spec(name)` reads a task's metadata without building anything. Names look like
`metaworld/door-open`, `dmc/cheetah-run-torso-3`, `kitchen/microwave`, `xarm/reach`; `names("metaworld/*")` globs.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from polytask.sim.task import Task, TaskSpec

log = logging.getLogger(__name__)

# Suite modules, imported on first use. A new suite is one module here and its register() calls.
SUITE_MODULES: tuple[str, ...] = (
    "polytask.sim.metaworld_suite",
    "polytask.sim.dmc_suite",
    "polytask.sim.kitchen_suite",
    "polytask.sim.xarm_suite",
    "polytask.sim.xarm_tasks",
)

RENDER_QUALITIES = ("fast", "default")


@dataclass(frozen=True)
class TaskEntry:
    name: str
    suite: str
    factory: Callable[..., Task]
    description: str = ""
    spec: TaskSpec | None = None  # the default task's spec, when the suite knows it without a simulator


_REGISTRY: dict[str, TaskEntry] = {}
_FAILED: dict[str, str] = {}
_loaded = False


def register(name: str, factory: Callable[..., Task], description: str = "", spec: TaskSpec | None = None) -> None:
    """Add a task. Called by suite modules at import; a duplicate name is a programming error."""
    if name in _REGISTRY:
        raise ValueError(f"task {name!r} registered twice")
    if spec is not None and spec.name != name:
        raise ValueError(f"task {name!r} registered with the spec of {spec.name!r}")
    suite = name.split("/", 1)[0]
    _REGISTRY[name] = TaskEntry(name=name, suite=suite, factory=factory, description=description, spec=spec)


def _load_suites() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in SUITE_MODULES:
        try:
            importlib.import_module(module)
        except Exception as err:  # one broken suite (e.g. its simulator missing) must not hide the others
            _FAILED[module] = f"{type(err).__name__}: {err}"
            log.warning("task suite %s unavailable: %s", module, _FAILED[module])


def failed_suites() -> dict[str, str]:
    """Suite modules that could not be imported, with the reason (shown by `polytask tasks`)."""
    _load_suites()
    return dict(_FAILED)


def names(pattern: str = "*") -> list[str]:
    """Registered task names matching a glob (`metaworld/*`), in registration order."""
    _load_suites()
    return [n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern)]


def expand(patterns: list[str]) -> list[str]:
    """Task names for command-line `--tasks` items: a glob (`metaworld/*`) expands to its matches, a plain name must
    be registered (KeyError with suggestions); no duplicates, first mention first. A glob matching nothing is a
    ValueError."""
    out: list[str] = []
    for pattern in patterns:
        found = names(pattern) if any(c in pattern for c in "*?[") else [entry(pattern).name]
        if not found:
            raise ValueError(f"--tasks {pattern!r} matches no registered task (see `polytask tasks`)")
        out += [t for t in found if t not in out]
    return out


def entry(name: str) -> TaskEntry:
    _load_suites()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.6)
        close = close or fnmatch.filter(_REGISTRY, f"*{name.split('/')[-1]}*")[:5]
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known suites: {sorted(suites())}"
        raise KeyError(f"unknown task {name!r}{hint}")
    return _REGISTRY[name]


def suites() -> set[str]:
    _load_suites()
    return {e.suite for e in _REGISTRY.values()}


def spec(name: str) -> TaskSpec:
    """A task's static facts (ids, sizes, horizon, sentence) without starting its simulator.

    Suites that register their specs answer from the registry; for any other the task is built without rendering,
    read and closed again.
    """
    found = entry(name)
    if found.spec is not None:
        return found.spec
    task = found.factory(render=False, quality="fast")
    try:
        return task.spec
    finally:
        task.close()


def make(name: str, *, render: bool = True, quality: str = "fast", **options) -> Task:
    """Create a task by name. `render=False` skips pixels (state-only, much faster on CPU).

    `quality` picks render settings: "fast" (shadows/reflections off; the default for training on CPU) or
    "default" (the simulator's own look).
    """
    if quality not in RENDER_QUALITIES:
        raise ValueError(f"render quality {quality!r} unknown; expected one of {RENDER_QUALITIES}")
    return entry(name).factory(render=render, quality=quality, **options)
