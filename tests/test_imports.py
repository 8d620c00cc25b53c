"""No import circles inside ``apns_legacy``: every module's imports, read with ast.

Imports inside functions and under ``if TYPE_CHECKING:`` count: a circle the
interpreter never runs into is still one for a reader. A package's ``__init__``
importing its own children, and a child importing names from its parent package,
are the normal shape of a package and are not counted.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "apns_legacy"


def module_names(root: Path) -> dict[str, Path]:
    names = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of the package that ``name`` imports (a name inside a module
    counts as its module; ``from . import x`` counts as the submodule ``x``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            for alias in node.names:
                submodule = f"{module}.{alias.name}"
                targets.add(submodule if submodule in known else module)
    found = set()
    for target in targets:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    modules = module_names(root)
    known = set(modules)
    graph = {}
    for name, path in modules.items():
        edges = set()
        for target in imported_modules(name, path, known):
            if path.name == "__init__.py" and target.startswith(name + "."):
                continue  # a package re-exporting its children
            if modules[target].name == "__init__.py" and name.startswith(target + "."):
                continue  # a child importing from its parent package
            edges.add(target)
        graph[name] = edges
    return graph


def circles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components with more than one module (Kosaraju)."""
    order: list[str] = []
    seen: set[str] = set()

    def finish_order(start: str) -> None:
        stack: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        seen.add(start)
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                order.append(node)
            elif child not in seen:
                seen.add(child)
                stack.append((child, iter(sorted(graph[child]))))

    for node in sorted(graph):
        if node not in seen:
            finish_order(node)
    reverse: dict[str, set[str]] = {node: set() for node in graph}
    for node, targets in graph.items():
        for target in targets:
            reverse[target].add(node)
    assigned: set[str] = set()
    found = []
    for node in reversed(order):
        if node in assigned:
            continue
        component, todo = set(), [node]
        while todo:
            current = todo.pop()
            if current in assigned:
                continue
            assigned.add(current)
            component.add(current)
            todo.extend(reverse[current] - assigned)
        if len(component) > 1:
            found.append(frozenset(component))
    return found


def test_the_check_finds_a_circle_hidden_behind_type_checking(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("from ._a import A\n")
    (package / "_a.py").write_text("from ._b import B\nA = 1\n")
    (package / "_b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ._a import A\nB = 2\n"
    )
    (package / "_c.py").write_text("def f():\n    from . import _a\n")
    assert circles(import_graph(package)) == [frozenset({"pkg._a", "pkg._b"})]


def test_the_check_finds_a_circle_through_a_function_level_import(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from ._x import X\n")
    (package / "sub" / "_x.py").write_text("X = 1\ndef f():\n    from .. import _y\n")
    (package / "_y.py").write_text("from .sub._x import X\n")
    assert circles(import_graph(package)) == [frozenset({"pkg.sub._x", "pkg._y"})]


def test_a_package_and_its_children_are_not_a_circle(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("from ._a import A\nfrom ._b import B\n")
    (package / "_a.py").write_text("A = 1\n")
    (package / "_b.py").write_text("from . import _a\nfrom ._a import A as B\n")
    assert circles(import_graph(package)) == []


def test_no_import_circles_in_the_package():
    found = [sorted(c) for c in circles(import_graph(PACKAGE))]
    assert found == [], "import circles: " + "; ".join(" <-> ".join(c) for c in found)
