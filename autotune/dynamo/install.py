"""Where the Dynamo install and the tiny model live.

Dynamo runs from its own venv (``scripts/setup_dynamo.sh``), never autotune's: its pinned
dependencies must not leak into ours, and the plain ``pip install ai-dynamo`` fails offline.
``AUTOTUNE_DYNAMO_PYTHON`` points at that venv's interpreter; by default it is
``.cache/dynamo-venv/bin/python`` in the source checkout. The tiny model directory is built on
first use with that interpreter (it has ``tokenizers``) and cached under ``.cache/``.
"""

from __future__ import annotations

import os
import subprocess
from functools import lru_cache
from pathlib import Path

from autotune.errors import BackendError

DYNAMO_VERSION = "1.6.1"
REPO_ROOT = Path(__file__).resolve().parents[2]


def cache_dir() -> Path:
    """``$AUTOTUNE_CACHE_DIR``, else ``.cache/`` of the checkout, else ``~/.cache/autotune``."""
    env = os.environ.get("AUTOTUNE_CACHE_DIR")
    if env:
        return Path(env)
    if (REPO_ROOT / "pyproject.toml").is_file():
        return REPO_ROOT / ".cache"
    return Path.home() / ".cache" / "autotune"


def default_python() -> Path:
    env = os.environ.get("AUTOTUNE_DYNAMO_PYTHON")
    if env:
        return Path(env)
    return cache_dir() / "dynamo-venv" / "bin" / "python"


def python_available(python: Path | None = None) -> bool:
    p = python or default_python()
    return p.is_file() and os.access(p, os.X_OK)


def find_python(python: Path | str | None = None) -> Path:
    """The Dynamo venv interpreter, or a ``BackendError`` that says how to install it."""
    p = Path(python) if python else default_python()
    if not python_available(p):
        raise BackendError(
            f"dynamo-local: no Dynamo {DYNAMO_VERSION} interpreter at {p}; run scripts/setup_dynamo.sh "
            "or set AUTOTUNE_DYNAMO_PYTHON to a python with ai-dynamo-runtime==1.6.1 and ai-dynamo==1.6.1"
        )
    return p


@lru_cache(maxsize=4)
def dynamo_version(python: str) -> str:
    """Installed ``ai-dynamo`` version (provenance; a mismatch is reported, not fatal)."""
    try:
        out = subprocess.run(
            [python, "-c", "import importlib.metadata as m; print(m.version('ai-dynamo'))"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() or "unknown"


def model_dir(python: Path) -> Path:
    """The tiny model directory, built on first use."""
    from autotune.dynamo.model_dir import ensure_model_dir

    try:
        return ensure_model_dir(cache_dir() / "tiny-llama", str(python))
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        raise BackendError(f"dynamo-local: cannot build the tiny model directory: {exc}") from None
