"""No import cycles among nbjobs modules: every import (module level and inside functions) is an edge."""
from __future__ import annotations

import pytest

import ast
from pathlib import Path

import nbjobs

pytestmark = pytest.mark.pure

ROOT = Path(nbjobs.__file__).parent

def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _runtime_nodes(tree: ast.AST):
    """Every node, leaving out `if TYPE_CHECKING:` blocks (never executed)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.dump(child.test):
                todo.extend(child.orelse)
                continue
            todo.append(child)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The nbjobs modules `path` imports (a package's own __init__ counts for `from pkg import x`)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # nbjobs.x.y.Name -> nbjobs.x.y
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in ROOT.rglob("*.py")}
    modules = set(files)
    return {name: imports_of(path, modules) for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def test_no_import_cycles_among_nbjobs_modules():
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_check_sees_cycles_and_function_level_imports(monkeypatch, tmp_path):
    graph = {"nbjobs.a": {"nbjobs.b"}, "nbjobs.b": {"nbjobs.c"}, "nbjobs.c": {"nbjobs.a"}, "nbjobs.d": set()}
    assert cycles(graph) == [["nbjobs.a", "nbjobs.b", "nbjobs.c"]]
    package = tmp_path / "nbjobs"
    package.mkdir()
    module = package / "m.py"
    module.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import typed\n"
                      "def f():\n    from .inner import thing\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", package)
    assert imports_of(module, {"nbjobs.m", "nbjobs.inner", "nbjobs.typed"}) == {"nbjobs.inner"}


if __name__ == "__main__":  # print every cycle
    for component in cycles(import_graph()):
        print(" <-> ".join(component))
