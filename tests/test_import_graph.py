"""The project's modules import one another without a circle, and the three ground rooms (models, clustering,
streaming) import none of each other nor workers (issue 27, docs/architecture.md): every import counts, at the
top, inside a function or under TYPE_CHECKING, since each hides the same knot."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "clustering", "streaming", "workers")
GROUND_ROOMS = ("models", "clustering", "streaming")


def _imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            found: set[str] = set()
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
                    found.add(node.module)
                elif isinstance(node, ast.Import):
                    found |= {alias.name for alias in node.names if alias.name.split(".")[0] in PACKAGES}
            graph[module] = {name for name in found if name != module}
    return graph


def _circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle, if there is one (a depth-first search for an edge back to the path)."""
    done: set[str] = set()
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done or module not in graph:
            return None
        path.append(module)
        for imported in sorted(graph[module]):
            if (found := visit(imported)) is not None:
                return found
        path.pop()
        done.add(module)
        return None

    return next((found for start in sorted(graph) if (found := visit(start)) is not None), None)


def test_no_module_imports_itself_back() -> None:
    graph = _imports()
    assert len(graph) > 100
    assert _circle(graph) is None, " -> ".join(_circle(graph) or [])


def test_no_ground_room_imports_another_room() -> None:
    crossing = sorted(
        f"{module} imports {imported}"
        for module, imports in _imports().items()
        if module.split(".")[0] in GROUND_ROOMS
        for imported in imports
        if imported.split(".")[0] != module.split(".")[0]
    )
    assert crossing == []


def test_the_search_finds_a_circle() -> None:
    assert _circle({"a.x": {"a.y"}, "a.y": {"a.z"}, "a.z": {"a.x"}}) == ["a.x", "a.y", "a.z", "a.x"]
