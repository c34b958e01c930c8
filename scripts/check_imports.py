#!/usr/bin/env python3
"""The import structure of ``autotune/``, read with ``ast`` (nothing is imported).

Three rules, checked here and asserted by ``tests/test_architecture.py`` (which loads this file):

* no import cycle between ``autotune`` modules — module-level and function-level imports both count;
  imports under ``if TYPE_CHECKING:`` do not (they never run); importing ``autotune.a.b`` is an edge to
  ``autotune.a.b`` only, not to the package ``autotune.a`` (its ``__init__``);
* no private name (leading underscore) imported from another package: ``from autotune.a.b import _x``
  only from a module inside ``autotune/a/``;
* no ``importlib.import_module`` or ``__import__`` in ``autotune/``: registration is explicit (a table).

Usage: ``python3 scripts/check_imports.py [REPO]``; exit status 1 when something is found.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "autotune"
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Module:
    name: str  # autotune.search.study
    path: Path
    is_package: bool  # an __init__.py

    @property
    def package(self) -> str:
        """The package the module belongs to (itself, for an ``__init__``)."""
        return self.name if self.is_package else self.name.rpartition(".")[0]


@dataclass(frozen=True)
class Finding:
    module: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line}: {self.text}"


@dataclass
class Report:
    modules: dict[str, Module]
    edges: dict[str, set[str]] = field(default_factory=dict)  # importer -> imported modules
    private: list[Finding] = field(default_factory=list)
    dynamic: list[Finding] = field(default_factory=list)

    @property
    def cycles(self) -> list[list[str]]:
        return find_cycles(self.edges)


def discover(repo: Path = ROOT) -> dict[str, Module]:
    mods = {}
    for path in sorted((repo / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(repo).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts.pop()
        name = ".".join(parts)
        mods[name] = Module(name, path, is_pkg)
    return mods


def _resolve(name: str, modules: dict[str, Module]) -> str | None:
    """The longest prefix of a dotted name that is an autotune module."""
    parts = name.split(".")
    while parts:
        cand = ".".join(parts)
        if cand in modules:
            return cand
        parts.pop()
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement anywhere in the tree, with whether it sits under ``if TYPE_CHECKING:``."""
    out: list[tuple[ast.Import | ast.ImportFrom, bool]] = []

    def visit(node: ast.AST, typing_only: bool) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            out.append((node, typing_only))
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, typing_only)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, typing_only)

    visit(tree, False)
    return out


def _absolute(node: ast.ImportFrom, mod: Module) -> str:
    if not node.level:
        return node.module or ""
    base = mod.package.split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _dynamic_calls(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Name) and f.id in ("__import__", "import_module"):
            found.append((node.lineno, f.id))
        elif isinstance(f, ast.Attribute) and f.attr in ("import_module", "__import__"):
            found.append((node.lineno, ast.unparse(f)))
    return found


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))  # __version__ is public


def _private_ok(importer: Module, owner: str) -> bool:
    """May ``importer`` use private names of the package ``owner``? Only from inside it."""
    return importer.name == owner or importer.name.startswith(owner + ".")


def analyse(repo: Path = ROOT) -> Report:
    modules = discover(repo)
    rep = Report(modules, {name: set() for name in modules})
    for mod in modules.values():
        tree = ast.parse(mod.path.read_text(encoding="utf-8"), filename=str(mod.path))
        for node, typing_only in _imports(tree):
            targets: list[tuple[str, str | None]] = []  # (module imported, private name or None)
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] != PACKAGE:
                        continue
                    target = _resolve(alias.name, modules)
                    last = alias.name.rpartition(".")[2]
                    targets.append((target or alias.name, alias.name if _is_private(last) else None))
            else:
                base = _absolute(node, mod)
                if base.split(".")[0] != PACKAGE:
                    continue
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    target = full if full in modules else _resolve(base, modules)
                    private = full if _is_private(alias.name) else None
                    targets.append((target or base, private))
            for target, private in targets:
                if target in modules and not typing_only and target != mod.name:
                    rep.edges[mod.name].add(target)
                if private is None:
                    continue
                owner_mod = modules.get(_resolve(private.rpartition(".")[0], modules) or "")
                owner = owner_mod.package if owner_mod else private.rpartition(".")[0]
                if not _private_ok(mod, owner):
                    rep.private.append(Finding(mod.name, node.lineno, f"imports private {private}"))
        for line, call in _dynamic_calls(tree):
            rep.dynamic.append(Finding(mod.name, line, f"dynamic import: {call}(...)"))
    return rep


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components that hold a cycle (Tarjan), each as a sorted module list;
    ``cycle_path`` gives one concrete cycle through a component."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    sccs: list[list[str]] = []
    counter = 0

    def strong(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                strong(w)
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
            if len(comp) > 1 or v in edges.get(v, ()):
                sccs.append(sorted(comp))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(edges) + 100))
    try:
        for v in sorted(edges):
            if v not in index:
                strong(v)
    finally:
        sys.setrecursionlimit(limit)
    return sorted(sccs)


def cycle_path(edges: dict[str, set[str]], component: list[str]) -> list[str]:
    """One concrete cycle inside a strongly connected component: a -> b -> ... -> a."""
    members = set(component)
    start = component[0]
    # breadth-first from start back to start, inside the component
    prev: dict[str, str] = {}
    frontier = [start]
    seen = {start}
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(edges.get(v, ())):
                if w not in members:
                    continue
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return [*reversed(path), start]
                if w not in seen:
                    seen.add(w)
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    return [*component, component[0]]


def format_report(rep: Report) -> str:
    lines = [f"{len(rep.modules)} modules, {sum(len(v) for v in rep.edges.values())} import edges"]
    cycles = rep.cycles
    lines.append(f"import cycles: {len(cycles) or 'none'}")
    for comp in cycles:
        lines.append(f"  {' -> '.join(cycle_path(rep.edges, comp))}  (modules: {', '.join(comp)})")
    lines.append(f"private names imported from another package: {len(rep.private) or 'none'}")
    lines += [f"  {f}" for f in rep.private]
    lines.append(f"importlib.import_module / __import__: {len(rep.dynamic) or 'none'}")
    lines += [f"  {f}" for f in rep.dynamic]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    repo = Path(argv[1]).resolve() if len(argv) > 1 else ROOT
    rep = analyse(repo)
    print(format_report(rep))
    return 1 if rep.cycles or rep.private or rep.dynamic else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
