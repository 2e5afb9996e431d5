"""The package's import structure: layers only import downwards and no module imports itself back.

Layers, bottom up: ``data`` < ``models`` < ``inference`` < ``training`` / ``explain`` / ``text`` <
``serve`` / ``cli``; packages of one layer may use each other as long as no cycle forms. Every import counts, including the ones inside functions (a lazy import is still a
dependency). The graph is read from the source with :mod:`ast`, so the test needs no import of the package.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "emotionlab"
LAYER = {"data": 1, "models": 2, "inference": 3, "training": 4, "explain": 4, "text": 4, "serve": 5, "cli": 5}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = PKG) -> dict[str, set[str]]:
    """module -> the package modules it imports (``from a import b`` counts as ``a.b`` when that is a module)."""
    files = {_module_name(p): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                for alias in node.names:
                    full = f"{mod}.{alias.name}"
                    deps.add(full if full in files else mod)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        graph[name] = {d for d in deps if d in files and d != name}
    return graph


def _layer(module: str) -> tuple[str, int] | None:
    parts = module.split(".")
    return (parts[1], LAYER[parts[1]]) if len(parts) > 1 and parts[1] in LAYER else None


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    out = []
    for mod, deps in graph.items():
        me = _layer(mod)
        if me is None:
            continue
        for d in deps:
            other = _layer(d)
            if other is None:
                continue
            if other[1] > me[1]:
                out.append(f"{mod} -> {d}")
    return sorted(out)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_layers_only_import_downwards():
    assert layer_violations(import_graph()) == []


def test_no_import_cycles():
    graph = import_graph()
    # A package __init__ re-exporting its modules is not a dependency of those modules on the package:
    # count an edge into a package __init__ only from outside that package.
    pruned = {m: {d for d in deps if not (m.startswith(d + "."))} for m, deps in graph.items()}
    assert cycles(pruned) == []


@pytest.mark.parametrize("bad", [
    ({"emotionlab.data.a": {"emotionlab.inference.b"}, "emotionlab.inference.b": set()}, "up"),
    ({"emotionlab.training.a": {"emotionlab.cli.b"}, "emotionlab.cli.b": set()}, "up"),
    ({"emotionlab.models.a": {"emotionlab.serve.b"}, "emotionlab.serve.b": set()}, "up"),
])
def test_checker_catches_a_climbing_import(bad):
    graph, _ = bad
    assert layer_violations(graph), "the checker must flag an import from a lower layer into a higher one"


def test_checker_catches_a_cycle():
    g = {"emotionlab.models.a": {"emotionlab.models.b"}, "emotionlab.models.b": {"emotionlab.models.c"},
         "emotionlab.models.c": {"emotionlab.models.a"}}
    assert cycles(g) == [["emotionlab.models.a", "emotionlab.models.b", "emotionlab.models.c"]]
