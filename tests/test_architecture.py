"""The import structure of ``autotune/``: no cycles, no private reach-ins, no dynamic imports.

The logic lives in ``scripts/check_imports.py`` (the same report for humans); it reads the sources
with ``ast`` and imports nothing from ``autotune``. The checker itself is tested on small synthetic
trees, so that a clean result on the real tree means something.
"""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import ROOT


def _load_checker() -> ModuleType:
    name = "autotune_check_imports"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / "check_imports.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up here
    spec.loader.exec_module(mod)
    return mod


ci = _load_checker()


@pytest.fixture(scope="module")
def report() -> ci.Report:
    return ci.analyse(ROOT)


def test_every_module_is_read(report: ci.Report) -> None:
    assert {"autotune", "autotune.pipeline", "autotune.search.select", "autotune.sim.engine"} <= set(report.modules)
    assert "autotune.search.study" in report.edges["autotune.pipeline"]


def test_no_import_cycle(report: ci.Report) -> None:
    cycles = [" -> ".join(ci.cycle_path(report.edges, comp)) for comp in report.cycles]
    assert not cycles, "import cycles in autotune/:\n" + "\n".join(cycles)


def test_no_private_name_from_another_package(report: ci.Report) -> None:
    assert not report.private, "private names imported across packages:\n" + "\n".join(map(str, report.private))


def test_no_dynamic_import(report: ci.Report) -> None:
    assert not report.dynamic, "registration must be explicit, not dynamic:\n" + "\n".join(map(str, report.dynamic))


# --- the checker on synthetic trees ---------------------------------------------------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = tmp_path / "autotune" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    return tmp_path


def test_checker_finds_a_cycle_through_a_function_level_import(tmp_path: Path) -> None:
    repo = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from autotune import b\n",
            "b.py": "def f():\n    from autotune.c import thing\n",
            "c.py": "import autotune.a\nthing = 1\n",
            "d.py": "from autotune import a\n",  # into the cycle, not part of it
        },
    )
    rep = ci.analyse(repo)
    assert rep.cycles == [["autotune.a", "autotune.b", "autotune.c"]]
    path = ci.cycle_path(rep.edges, rep.cycles[0])
    assert path[0] == path[-1] and set(path) == {"autotune.a", "autotune.b", "autotune.c"}
    assert "autotune.a -> autotune.b" in ci.format_report(rep)


def test_checker_resolves_submodules_not_parent_packages(tmp_path: Path) -> None:
    """``from autotune.pkg import mod`` is an edge to ``autotune.pkg.mod``; the package ``__init__``
    importing its own submodule is then no cycle. TYPE_CHECKING imports never run: no edge."""
    repo = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "pkg/__init__.py": "from autotune.pkg.mod import VALUE\n",
            "pkg/mod.py": "VALUE = 1\n",
            "user.py": "from autotune.pkg import mod\nfrom autotune.pkg import VALUE\n",
            "typed.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from autotune import user\n",
            "pkg/back.py": "from autotune import typed\n",
        },
    )
    rep = ci.analyse(repo)
    assert rep.cycles == []
    assert rep.edges["autotune.user"] == {"autotune.pkg.mod", "autotune.pkg"}
    assert rep.edges["autotune.typed"] == set()


def test_checker_finds_private_reach_ins_and_dynamic_imports(tmp_path: Path) -> None:
    repo = _tree(
        tmp_path,
        {
            "__init__.py": "__version__ = '0'\n",
            "a/__init__.py": "",
            "a/b.py": "_x = 1\n",
            "a/c.py": "from autotune.a.b import _x\n",  # inside autotune/a/: allowed
            "a/_impl.py": "",
            "d/__init__.py": "",
            "d/e.py": "from autotune.a.b import _x\nfrom autotune import __version__\n",
            "d/f.py": "import autotune.a._impl\nfrom autotune.a import _impl\n",
            "g.py": "import importlib\n\ndef load(n):\n    return importlib.import_module(n), __import__(n)\n",
        },
    )
    rep = ci.analyse(repo)
    assert [(f.module, f.line) for f in rep.private] == [("autotune.d.e", 1), ("autotune.d.f", 1), ("autotune.d.f", 2)]
    assert "autotune.a.b._x" in str(rep.private[0])
    assert [(f.module, f.line) for f in rep.dynamic] == [("autotune.g", 4), ("autotune.g", 4)]
    assert ci.main(["check_imports.py", str(repo)]) == 1
