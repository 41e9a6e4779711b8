"""The module graphs have no cycle: every ``sinkfix`` module imports only modules below it, and the
dashboard's modules (pages, sections, helpers) import each other without a circle either.

The graph is read from the source (``import`` statements, module level and inside functions), so
a cycle is caught even when a lazy import would hide it at run time.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "sinkfix"
DASHBOARD = ROOT.parent / "dashboard"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(root: Path = ROOT) -> dict[str, Path]:
    return {_module_name(p): p for p in root.rglob("*.py")}


def _imports(path: Path, known: set[str]) -> set[str]:
    """The sinkfix modules that ``path`` imports (a ``from pkg import sub`` counts as pkg.sub)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
    return {name for name in found if name in known}


def _graph(root: Path = ROOT) -> dict[str, set[str]]:
    modules = _modules(root)
    known = set(modules)
    # A package's __init__ re-exporting its submodules is not an upward edge of those submodules.
    return {name: {d for d in _imports(path, known) if d != name} for name, path in modules.items()}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def _package_edges(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    def package(name: str) -> str:
        return ".".join(name.split(".")[:2])

    return {(package(a), package(b)) for a, deps in graph.items() for b in deps if package(a) != package(b)}


def test_the_module_graph_has_no_cycle() -> None:
    graph = _graph()
    assert len(graph) > 30, "the scan found too few modules"
    assert _find_cycle(graph) is None, f"import cycle: {' -> '.join(_find_cycle(graph) or [])}"


def test_the_dashboard_graph_has_no_cycle() -> None:
    graph = _graph(DASHBOARD)
    assert len(graph) > 20, "the scan found too few dashboard modules"
    assert any(graph.values()), "the scan found no edge between dashboard modules"
    assert _find_cycle(graph) is None, f"import cycle: {' -> '.join(_find_cycle(graph) or [])}"


def test_the_cycle_finder_finds_a_planted_cycle() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("low, high", [
    ("sinkfix.store", "sinkfix.cache"),
    ("sinkfix.analysis", "sinkfix.store"),
    ("sinkfix.capture", "sinkfix.models"),
    ("sinkfix.models", "sinkfix.store"),
])
def test_lower_layers_do_not_import_higher_ones(low: str, high: str) -> None:
    assert (low, high) not in _package_edges(_graph())


def test_the_core_never_imports_streamlit() -> None:
    offenders = [name for name, path in _modules().items() if "streamlit" in path.read_text()
                 and any(isinstance(n, (ast.Import, ast.ImportFrom)) and "streamlit" in ast.dump(n)
                         for n in ast.walk(ast.parse(path.read_text())))]
    assert offenders == []
