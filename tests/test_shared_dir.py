"""The one place that decides what a test needing ``../shared`` does when it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import shared_dir


def test_present_reference_data_is_returned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "dynamo").mkdir()
    monkeypatch.setenv("AUTOTUNE_SHARED_DIR", str(tmp_path))
    assert shared_dir() == tmp_path


def test_absent_reference_data_skips_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOTUNE_SHARED_DIR", str(tmp_path / "missing"))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception) as info:
        shared_dir()
    assert "missing" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("ci", ["true", "1"])
def test_absent_reference_data_fails_in_ci(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    monkeypatch.setenv("AUTOTUNE_SHARED_DIR", str(tmp_path / "missing"))
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match="CI must provide it"):
        shared_dir()
