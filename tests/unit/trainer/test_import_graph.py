"""pivot_trainer's modules import each other without a cycle.

A cycle means tangled layers (the engine importing process policy from the module that
imports the engine) and works only while one of its imports stays inside a function. Imports
inside functions therefore count as much as module-level ones: the same dependency, deferred.
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pivot_trainer

PACKAGE_DIR = Path(pivot_trainer.__file__).parent


def _resolve(target: str, names: list[str], modules: set[str]) -> set[str]:
    """The package modules that `from target import names` (or `import target`) loads: a name
    that is a submodule is that module, anything else lives in `target` itself."""
    found = {f"{target}.{n}" for n in names if f"{target}.{n}" in modules}
    if len(found) < len(names) or not names:
        # A name that is no module comes from `target`; an unknown dotted target (a class
        # path, say) counts as its nearest module.
        parts = target.split(".")
        while parts and ".".join(parts) not in modules:
            parts.pop()
        if parts:
            found.add(".".join(parts))
    return found


def import_graph(trees: dict[str, ast.Module], packages: set[str]) -> dict[str, set[str]]:
    """Module -> the package modules it imports, at any depth of its code."""
    modules = set(trees)
    graph: dict[str, set[str]] = {}
    for name, tree in trees.items():
        edges: set[str] = set()
        here = name if name in packages else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    edges |= _resolve(alias.name, [], modules)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                    target = ".".join([*base, node.module] if node.module else base)
                else:
                    target = node.module or ""
                edges |= _resolve(target, [a.name for a in node.names], modules)
        graph[name] = edges - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle as a closed path (first == last), or None if the graph is acyclic."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        if (cycle := visit(start)) is not None:
            return cycle
    return None


def _assert_closed_path(graph: dict[str, set[str]], cycle: list[str]) -> None:
    assert cycle[0] == cycle[-1]
    for a, b in itertools.pairwise(cycle):
        assert b in graph[a], (a, b)


def test_the_graph_sees_every_import_form() -> None:
    sources = {
        "pkg": "",
        "pkg.a": "from pkg import b\nimport pkg.c\n",
        "pkg.b": "from . import c as see\n",
        "pkg.c": "def f() -> None:\n    from .d import thing\n",
        "pkg.d": "import os\nfrom pkg.sub.e import x\n",
        "pkg.sub": "from . import e\n",
        "pkg.sub.e": "from .. import a\nfrom ..b import y\nfrom pkg import VALUE\n",
    }
    trees = {name: ast.parse(src) for name, src in sources.items()}
    graph = import_graph(trees, {"pkg", "pkg.sub"})
    assert graph == {
        "pkg": set(),
        "pkg.a": {"pkg.b", "pkg.c"},
        "pkg.b": {"pkg.c"},
        "pkg.c": {"pkg.d"},  # an import inside a function counts
        "pkg.d": {"pkg.sub.e"},
        "pkg.sub": {"pkg.sub.e"},
        "pkg.sub.e": {"pkg.a", "pkg.b", "pkg"},
    }
    cycle = find_cycle(graph)
    assert cycle is not None
    _assert_closed_path(graph, cycle)
    assert "pkg.sub.e" in cycle and "pkg.d" in cycle
    graph["pkg.c"] = set()
    assert find_cycle(graph) is None


def test_pivot_trainer_has_no_import_cycle() -> None:
    trees: dict[str, ast.Module] = {}
    packages = set()
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
            packages.add(".".join(parts))
        trees[".".join(parts)] = ast.parse(path.read_text(), filename=str(path))
    graph = import_graph(trees, packages)
    # The walk found the package's modules and their imports.
    assert "pivot_trainer.app" in graph["pivot_trainer.__main__"]
    assert "pivot_trainer.model" in graph["pivot_trainer.train"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])
