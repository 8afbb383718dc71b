"""The package's modules import each other without a cycle: every import counts, at the top of a module,
inside a function or under `if TYPE_CHECKING:`, so a cycle cannot hide behind a late import."""

from __future__ import annotations

import ast

from conftest import ROOT

PACKAGE = ROOT / "facemask"


def module_name(path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path, modules: set[str]) -> set[str]:
    """The package's modules that the file at `path` imports, wherever the import statement stands.

    `from facemask import detect` imports the module facemask.detect, `from facemask import CLASS_NAMES`
    the package itself; importing facemask.x runs the package's __init__ first, so it counts too.
    """
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from .x import y
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            parts = target.split(".")
            # The module itself and every package above it within facemask.
            found |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & modules
    return found - {name}


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(path) for path in paths}
    return {module_name(path): imported_modules(path, modules) for path in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None when the graph is acyclic (depth-first search)."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" once all below it is explored
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_the_graph_sees_top_level_and_late_imports():
    graph = import_graph()
    assert {"facemask", "facemask.detect", "facemask.video", "facemask.plots"} <= set(graph)
    assert "facemask.video" in graph["facemask.detect"]  # at the top of detect.py
    assert "facemask.evaluation" in graph["facemask.evaluate"]  # at the top of evaluate.py
    assert "facemask" in graph["facemask.video"]  # from facemask import save_atomically


def test_no_module_of_the_package_imports_itself_back():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
