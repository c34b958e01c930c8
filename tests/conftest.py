"""Shared fixtures: shipped profiles, the shared reference directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from autotune.profile import Profile, load_profile

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def paper_profile() -> Profile:
    return load_profile("paper-70b-1p5d")
