"""The layers of the library, read from the source: imports point down (learning -> sim, never back), learning's
sub-packages form no cycle, no module imports another that imports it back, and neither library imports ROS."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOTS = {"sim": "polytask.sim", "learning": "polytask.learning"}
# Lowest first. A unit may import units of earlier rows and its own; units in one row never import each other.
LAYERS: list[list[str]] = [
    ["polytask.sim"],
    ["polytask.learning.config", "polytask.learning.data"],
    ["polytask.learning.reporting"],
    ["polytask.learning.goals"],
    ["polytask.learning.nets"],
    ["polytask.learning.accel"],
    ["polytask.learning.policies"],
    ["polytask.learning.pcgrad"],
    ["polytask.learning.rl", "polytask.learning.distill"],
    ["polytask.learning.baselines"],
    ["polytask.learning.scale"],
]
ROS = ("rclpy", "rcl_interfaces", "std_msgs", "sensor_msgs", "geometry_msgs", "visualization_msgs", "std_srvs",
       "polytask.ros", "polytask.nodes", "polytask.robot", "polytask.commands", "polytask.launch", "polytask.cli")


def modules() -> dict[str, Path]:
    out = {}
    for folder, name in ROOTS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([name, *parts])] = path
    return out


def imports(path: Path, top_level_only: bool) -> set[str]:
    """Imported module names; with `top_level_only`, those executed at import time (not in functions or under
    `if TYPE_CHECKING`)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if top_level_only and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if top_level_only and isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.add(child.module)
                found.update(f"{child.module}.{a.name}" for a in child.names)
            visit(child)

    visit(tree)
    return found


def unit(module: str) -> str | None:
    for row in LAYERS:
        for u in row:
            if module == u or module.startswith(u + "."):
                return u
    return None


def row_of(u: str) -> int:
    return next(i for i, row in enumerate(LAYERS) if u in row)


def test_every_library_module_has_a_layer():
    assert all(unit(m) for m in modules() if m != "polytask.learning"), [m for m in modules() if not unit(m)]


def test_imports_point_down_and_sibling_packages_stay_apart():
    wrong = []
    for name, path in modules().items():
        mine = unit(name)
        if mine is None:
            continue
        for imp in imports(path, top_level_only=False):
            theirs = unit(imp)
            if theirs is None or theirs == mine:
                continue
            if row_of(theirs) >= row_of(mine):
                wrong.append(f"{name} imports {imp} ({theirs} is not below {mine})")
    assert not wrong, "\n".join(wrong)


def test_no_module_imports_one_that_imports_it_back():
    mods = modules()
    graph = {name: {i for i in imports(path, top_level_only=True) if i in mods} - {name}
             for name, path in mods.items()}
    for name in graph:  # a package's own __init__ is imported by its modules, which is not a cycle of code
        graph[name] = {i for i in graph[name] if not name.startswith(i + ".")}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def walk(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt):], nxt])
            elif nxt not in state:
                walk(nxt, [*stack, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name, [name])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_libraries_never_import_ros():
    found = [f"{name}: {imp}" for name, path in modules().items() for imp in imports(path, top_level_only=False)
             if imp.startswith(ROS)]
    assert not found, found
