"""No import cycles among churnlens modules.

The layer contract in ``pyproject.toml`` (``[tool.importlinter]``, run by ``lint-imports``)
says which floor may import which; it does not forbid two modules on the same floor from
importing each other. This test does: it reads every module under ``src/churnlens`` with
:mod:`ast`, takes every import of a churnlens module (at the top of the file and inside
functions alike, as import-linter does) and fails with the cycle printed.
Architecture: docs/architecture.md.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping, Set
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "churnlens"


def _module_name(path: Path, src: Path) -> str:
    parts = path.relative_to(src).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(
    tree: ast.AST, module: str, is_package: bool, modules: Set[str]
) -> Iterator[str]:
    """The modules of ``modules`` one parsed module imports, anywhere in its code."""
    here = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = here.split(".")[: len(here.split(".")) - node.level + 1]
                base = ".".join([*parts, node.module] if node.module else parts)
            else:
                base = node.module or ""
            for alias in node.names:
                # ``from a import b``: the module a.b if there is one, else a name in a.
                if f"{base}.{alias.name}" in modules:
                    yield f"{base}.{alias.name}"
                elif base in modules:
                    yield base


def import_graph(src: Path = SRC, package: str = PACKAGE) -> dict[str, set[str]]:
    """The churnlens modules each churnlens module imports, by dotted name.

    ``from churnlens import _report`` is an import of ``churnlens._report``; a name that is
    not a module (``from churnlens._io import write_json``) counts as its module. Importing
    ``a.b`` is not counted as importing the package ``a`` (as in import-linter's graph).
    """
    files = {_module_name(p, src): p for p in sorted((src / package).rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        imported = set(_imported_modules(tree, module, path.name == "__init__.py", set(files)))
        graph[module] = imported - {module}
    return graph


def find_cycles(graph: Mapping[str, Set[str]]) -> list[list[str]]:
    """One shortest cycle per strongly connected group of modules (Tarjan), sorted.

    Each cycle is a list of modules whose first and last entries are the same.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:  # recursion depth is bounded by the module count
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(_shortest_cycle(graph, group) for group in groups)


def _shortest_cycle(graph: Mapping[str, Set[str]], group: set[str]) -> list[str]:
    """The shortest cycle through the first module (by name) of a strongly connected group."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph.get(node, set()) & group):
                if nxt == start:
                    return [*paths[node], start]
                if nxt not in paths:
                    paths[nxt] = [*paths[node], nxt]
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"{sorted(group)} is not strongly connected")  # pragma: no cover


def test_find_cycles_names_each_cycle_once() -> None:
    graph = {
        "a": {"b"},
        "b": {"c"},
        "c": {"a", "d"},
        "d": set(),
        "x": {"y"},
        "y": {"x"},
    }
    assert find_cycles(graph) == [["a", "b", "c", "a"], ["x", "y", "x"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_import_graph_sees_function_local_and_relative_imports(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "_low.py").write_text("VALUE = 1\n")
    (package / "_high.py").write_text("def f():\n    from pkg._low import VALUE\n")
    (package / "sub" / "__init__.py").write_text("from . import _leaf\n")
    (package / "sub" / "_leaf.py").write_text("from .. import _high\nfrom pkg import sub\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg._high"] == {"pkg._low"}
    assert graph["pkg.sub"] == {"pkg.sub._leaf"}
    assert graph["pkg.sub._leaf"] == {"pkg._high", "pkg.sub"}
    assert find_cycles(graph) == [["pkg.sub", "pkg.sub._leaf", "pkg.sub"]]


def test_churnlens_has_no_import_cycles() -> None:
    graph = import_graph()
    assert f"{PACKAGE}.cli" in graph, "the source tree was not found"
    cycles = find_cycles(graph)
    if cycles:
        shown = "\n".join("  " + " -> ".join(cycle) for cycle in cycles)
        pytest.fail(
            f"import cycles among churnlens modules:\n{shown}\nSuggestion: move the shared "
            "code down a layer (see docs/architecture.md) instead of importing upwards."
        )
