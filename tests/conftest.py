"""Shared fixtures: shipped profiles, the third-party reference data in ``../shared``."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from autotune.profile import Profile, load_profile

ROOT = Path(__file__).resolve().parent.parent


def fresh_signals() -> None:
    """``preexec_fn`` for a child a test will signal: it starts as a process from a shell would, with no
    signal blocked or ignored. A child inherits its parent's signal mask and ignored signals across exec,
    and Python installs its Ctrl-C handler only where SIGINT is not ignored; the test runner's own state
    after hundreds of in-process tests is not what a user's shell hands autotune."""
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


def shared_path() -> Path:
    """Where the third-party reference data is looked for: ``$AUTOTUNE_SHARED_DIR``, else ``../shared``
    beside the repository. Point the variable at a missing directory to test as a clone without it."""
    return Path(os.environ.get("AUTOTUNE_SHARED_DIR") or ROOT.parent / "shared")


def shared_dir() -> Path:
    """The third-party reference data (the Dynamo CRDs and example manifests under ``dynamo/``), for the
    tests that read it. Missing, the test skips with one line, except under ``CI=true``: there it
    fails, so that CI never skips these tests silently. Everything else in the suite runs without it."""
    d = shared_path()
    if (d / "dynamo").is_dir():
        return d
    reason = f"third-party reference data not found: {d / 'dynamo'} (../shared beside the repo or $AUTOTUNE_SHARED_DIR)"
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        pytest.fail(f"{reason}; CI must provide it", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared() -> Path:
    return shared_dir()


@pytest.fixture(scope="session")
def paper_profile() -> Profile:
    return load_profile("paper-70b-1p5d")
