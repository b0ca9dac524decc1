"""The layers of docs/layout.md hold: imports point down, counting imports inside functions, and only the
layer that owns an outside system imports its library. A small AST walk over pxt_assets/, no import of the
code under test (so it also sees imports inside functions that no test happens to run)."""

from __future__ import annotations

import ast
import functools
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "pxt_assets"


def _modules(root: pathlib.Path = PACKAGE) -> dict[str, tuple[pathlib.Path, bool]]:
    """Every module of the package by dotted name, and whether it is a package's __init__."""
    out = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def _imported(module: str, is_pkg: bool, node: ast.Import | ast.ImportFrom, modules: dict) -> list[str]:
    """The package's modules an import statement loads (`from a.b import c` loads a.b.c when c is a module,
    else a.b)."""
    names = []
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            parts = module.split(".")[: None if is_pkg else -1]
            parts = parts[: len(parts) - (node.level - 1)]
            base = ".".join(parts + ([node.module] if node.module else []))
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
    out = []
    for name in names:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name:
            out.append(name)
    return out


@functools.cache
def import_graph(root: pathlib.Path = PACKAGE) -> dict[str, dict[str, int]]:
    """module -> {imported module: line of the first such import}, imports inside functions included."""
    modules = _modules(root)
    graph: dict[str, dict[str, int]] = {m: {} for m in modules}
    for module, (path, is_pkg) in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _imported(module, is_pkg, node, modules):
                    if target != module:
                        graph[module].setdefault(target, node.lineno)
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(graph[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
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
                    found.append(sorted(component))
    return found


def _describe(component: list[str], graph: dict[str, dict[str, int]]) -> str:
    members = set(component)
    edges = [f"{m} -> {t} (line {line})" for m in component for t, line in sorted(graph[m].items()) if t in members]
    return "\n  ".join(edges)


def test_no_import_cycles_counting_imports_inside_functions():
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import cycles:\n  " + "\n\n  ".join(_describe(c, graph) for c in found)


def test_the_cycle_check_finds_a_cycle_hidden_in_a_function(tmp_path):
    # The check itself can fail: two modules importing each other, one of them inside a function.
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from .. import a\n    return a\n")
    (pkg / "c.py").write_text("import pkg.a\n")
    assert cycles(import_graph(pkg)) == [["pkg.a", "pkg.sub.b"]]


#: (importer prefix, imported prefix): lower floors never reach up
FORBIDDEN = [
    ("pxt_assets.assets", "pxt_assets.api"),
    ("pxt_assets.lifecycle", "pxt_assets.api"),
    ("pxt_assets.check", "pxt_assets.api"),
    ("pxt_assets.check", "pxt_assets.lifecycle"),
    ("pxt_assets.io_managers", "pxt_assets.api"),
    ("pxt_assets.io_managers", "pxt_assets.assets"),
    ("pxt_assets.rowstore", "pxt_assets.spec"),
    ("pxt_assets.rowstore", "pxt_assets.cache"),
    ("pxt_assets.procid", "pxt_assets"),
    ("pxt_assets.rowstore", "pxt_assets.api"),
    ("pxt_assets.rowstore", "pxt_assets.io_managers"),
    ("pxt_assets.spec", "pxt_assets.api"),
    ("pxt_assets.spec", "pxt_assets.assets"),
    ("pxt_assets.functions", "pxt_assets.spec"),
    ("pxt_assets.functions", "pxt_assets.api"),
    ("pxt_assets.media", "pxt_assets.spec"),
    ("pxt_assets.cache", "pxt_assets.media"),
    ("pxt_assets.stores", "pxt_assets.rowstore"),
    ("pxt_assets.stores", "pxt_assets.media"),
    ("pxt_assets.stores", "pxt_assets.cache"),
    ("pxt_assets.config", "pxt_assets.stores"),
    ("pxt_assets.functions.registry", "pxt_assets.functions.image"),
]


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _id(pair) -> str:
    a, b = pair.values if hasattr(pair, "values") else pair
    return f"{a}-not->{b}"


@pytest.mark.parametrize("importer,imported", FORBIDDEN, ids=[_id(p) for p in FORBIDDEN])
def test_a_lower_layer_never_imports_a_higher_one(importer, imported):
    graph = import_graph()
    bad = [f"{m} line {line} imports {t}" for m, targets in graph.items() if _under(m, importer)
           for t, line in targets.items() if _under(t, imported)]
    assert not bad, "\n".join(bad)


#: outside libraries and the only part of the package that may import them (and why an exception exists)
OWNERS = {
    "boto3": ("pxt_assets.stores",),
    "botocore": ("pxt_assets.stores",),
    "google": ("pxt_assets.stores",),
    "azure": ("pxt_assets.stores",),
    # Dagster's own instance storage is configured with SQLAlchemy engines (not our rows)
    "sqlalchemy": ("pxt_assets.rowstore", "pxt_assets.instance"),
}


def test_only_the_owning_layer_imports_a_cloud_sdk_or_sql():
    bad = []
    for module, (path, _) in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level
                     else [])
            for name in names:
                owners = OWNERS.get(name.split(".")[0])
                if owners is not None and not any(_under(module, o) for o in owners):
                    bad.append(f"{module} line {node.lineno} imports {name}")
    assert not bad, "\n".join(bad)
