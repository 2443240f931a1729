"""No import cycle between the modules of ``normbench.norms`` nor between those of
``normbench.bench``: every import is read with ``ast``, at module level and inside functions
alike (a function-level import hides a cycle only until the function runs)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import normbench.bench
import normbench.norms


def import_graph(directory: Path, package: str) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports (``package`` itself is its
    ``__init__``), from every ``import`` and ``from ... import`` anywhere in its source.

    ``from normbench.norms import VARIANTS`` inside the package is an edge to its ``__init__``
    (it needs the package initialized past that name: a real cycle when ``__init__`` imports
    the module back); ``from normbench.bench import norms`` is an edge to the submodule.
    """
    names = {
        package if p.stem == "__init__" else f"{package}.{p.stem}": p
        for p in sorted(directory.glob("*.py"))
    }
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: from . import x / from .x import y
                    anchor = name if path.stem == "__init__" else package
                    base = ".".join(anchor.split(".")[: len(anchor.split(".")) - node.level + 1])
                    base = f"{base}.{node.module}" if node.module else base
                else:
                    base = node.module or ""
                # a submodule (from pkg import sub) is imported itself; a name (from pkg import
                # NAME) needs its module run to the line that defines it
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in names else base
                    for alias in node.names
                ]
            else:
                continue
            edges |= {t for t in targets if t in names and t != name}
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path whose first and last module are the same, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


@pytest.mark.parametrize("package", [normbench.norms, normbench.bench], ids=lambda p: p.__name__)
def test_no_import_cycle_within_the_package(package):
    graph = import_graph(Path(package.__file__).parent, package.__name__)
    assert sum(map(len, graph.values())) > 5  # the imports were read
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_shared_pieces_have_owners_both_sides_import():
    """The two cycles that were cut stay cut the way they were: batch and ghost_batch share
    batch_base; bench train and reference_ops share train_setup and train_timing."""
    norms = import_graph(Path(normbench.norms.__file__).parent, "normbench.norms")
    assert "normbench.norms.batch_base" in norms["normbench.norms.ghost_batch"]
    assert "normbench.norms.batch" not in norms["normbench.norms.ghost_batch"]
    bench = import_graph(Path(normbench.bench.__file__).parent, "normbench.bench")
    assert "normbench.bench.train" not in bench["normbench.bench.reference_ops"]
    assert "normbench.bench.train_timing" in bench["normbench.bench.reference_ops"]


def test_a_cycle_through_a_function_level_or_relative_import_is_found(tmp_path):
    (tmp_path / "__init__.py").write_text("from pkg.c import C\n")
    (tmp_path / "a.py").write_text("import os\nfrom pkg.b import B\n\nA = 1\n")
    (tmp_path / "b.py").write_text("def f():\n    from . import a\n    return a.A\n\nB = 2\n")
    (tmp_path / "c.py").write_text("import pkg.a\nC = 3\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph == {
        "pkg": {"pkg.c"},
        "pkg.a": {"pkg.b"},
        "pkg.b": {"pkg.a"},
        "pkg.c": {"pkg.a"},
    }
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.a"]
    (tmp_path / "b.py").write_text("B = 2\n")
    assert find_cycle(import_graph(tmp_path, "pkg")) is None
    (tmp_path / "c.py").write_text("from pkg import VERSION\n")  # a name of the package
    assert find_cycle(import_graph(tmp_path, "pkg")) == ["pkg", "pkg.c", "pkg"]
