"""An installed autotune (a wheel, ``pip install .``) carries its own modules and the shipped profiles."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from autotune.profile import PROFILES_DIR

ROOT = Path(__file__).resolve().parent.parent


def _setuptools_config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_subpackage_is_listed_for_the_wheel() -> None:
    """pyproject lists the packages by hand (profiles/ is mapped into one); a new one must be added there."""
    cfg = _setuptools_config()
    found = {
        ".".join(d.relative_to(ROOT).parts)
        for d in (ROOT / "autotune").rglob("*")
        if d.is_dir() and any(d.glob("*.py"))
    } | {"autotune"}
    assert set(cfg["packages"]) == found | {"autotune.profiles"}
    assert cfg["package-dir"] == {"autotune.profiles": "profiles"}
    assert cfg["package-data"]["autotune.profiles"] == ["*.yaml"]


def test_checkout_finds_the_top_level_profiles() -> None:
    assert PROFILES_DIR == ROOT / "profiles"


def _tracked_copy(dest: Path) -> Path:
    """The committed tree plus working changes, without build outputs: what a fresh clone builds from."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split()
    for rel in files:
        if (ROOT / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    return dest


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="git is needed to list the checkout's files")
def test_wheel_ships_the_profiles_and_runs_from_anywhere(tmp_path: Path) -> None:
    src = _tracked_copy(tmp_path / "src")
    out = tmp_path / "wheel"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = out.glob("autotune-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.name for p in (ROOT / "profiles").glob("*.yaml")}
    assert shipped and {f"autotune/profiles/{n}" for n in shipped} <= names
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "autotune").rglob("*.py")}
    assert modules <= names, f"missing from the wheel: {sorted(modules - names)}"

    site = tmp_path / "site"  # the wheel unpacked is what pip installs; run it away from the checkout
    zipfile.ZipFile(wheel).extractall(site)
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("AUTOTUNE_PROFILES_DIR", None)
    where = subprocess.run(
        [sys.executable, "-c", "import autotune.profile as p; print(p.__file__); print(p.PROFILES_DIR)"],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert where == [str(site / "autotune" / "profile.py"), str(site / "autotune" / "profiles")]
    # paper-70b-1p2d `extends: paper-70b-1p5d`: the parent must be found inside the wheel too
    run = subprocess.run(
        [sys.executable, "-m", "autotune", "simulate", "-p", "paper-70b-1p2d", "-c", "8", "-n", "50", "-o", "json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["profile"] == "paper-70b-1p2d"
