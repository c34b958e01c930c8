"""The controller's settings, read back from the ``recommended.yaml`` that ``autotune run`` wrote.

The file's ``controller`` block is ``ControllerSettings.as_dict`` (thresholds in ms and as multiples
of the baseline, EWMA α, interval, dwell, hysteresis, a preset per regime). Anything else — another
kind of file, a recommendation for a Dynamo whose router flags autotune does not know, a block with a
field missing or out of range — is an ``InputError`` naming the file and the field (exit 2).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from autotune.controller import ControllerSettings
from autotune.errors import InputError
from autotune.regimes import BELOW, SATURATED, TRANSITION
from autotune.topology import RouterSettings

KIND = "autotune/Recommendation"
# router flags autotune can write (autotune.dynamo.flags): a recommendation for 1.7+ cannot be applied
MAX_DYNAMO = (1, 6)


def _number(src: str, block: dict[str, Any], key: str, *, low: float, high: float = math.inf) -> float:
    if key not in block:
        raise InputError(f"{src}: controller.{key}: missing")
    v = block[key]
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or not low <= v <= high:
        raise InputError(f"{src}: controller.{key}: {v!r} is not a number in [{low:g}, {high:g}]")
    return float(v)


def _preset(src: str, name: str, raw: object) -> RouterSettings:
    if not isinstance(raw, dict):
        raise InputError(f"{src}: controller.presets.{name}: not a mapping")
    try:
        return RouterSettings(
            temperature=float(raw["temperature"]),
            overlap_weight=float(raw["overlap_weight"]),
            overlap_credit=float(raw.get("overlap_credit", 1.0)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{src}: controller.presets.{name}: needs numbers temperature and overlap_weight") from exc


def _dynamo_version(src: str, doc: dict[str, Any]) -> tuple[int, int]:
    raw = str((doc.get("provenance") or {}).get("dynamo_version", ""))
    try:
        major, minor = (int(x) for x in raw.split(".")[:2])
    except ValueError as exc:
        raise InputError(f"{src}: provenance.dynamo_version: {raw!r} is not a Dynamo version") from exc
    if (major, minor) > MAX_DYNAMO:
        raise InputError(
            f"{src}: provenance.dynamo_version: {raw}: router presets apply to Dynamo up to "
            f"{MAX_DYNAMO[0]}.{MAX_DYNAMO[1]}.x (1.7 moved the router flags)"
        )
    return major, minor


def parse_settings(doc: object, src: str) -> ControllerSettings:
    """``ControllerSettings`` from a parsed ``recommended.yaml``; ``InputError`` naming the field otherwise."""
    if not isinstance(doc, dict):
        raise InputError(f"{src}: not a recommendation (expected a mapping with kind: {KIND})")
    if doc.get("kind") != KIND:
        raise InputError(f"{src}: kind: {doc.get('kind')!r}, expected {KIND!r} (the recommended.yaml of autotune run)")
    _dynamo_version(src, doc)
    block = doc.get("controller")
    if not isinstance(block, dict):
        raise InputError(f"{src}: controller: missing (written by autotune run since the adaptive controller)")
    baseline = _number(src, block, "baseline_ttft_p99_ms", low=1e-6)
    theta1 = _number(src, block, "theta1_ms", low=1e-6)
    theta2 = _number(src, block, "theta2_ms", low=1e-6)
    if theta2 < theta1:
        raise InputError(f"{src}: controller.theta2_ms: {theta2:g} is below theta1_ms {theta1:g}")
    presets_raw = block.get("presets")
    if not isinstance(presets_raw, dict) or set(presets_raw) != {BELOW, TRANSITION, SATURATED}:
        raise InputError(f"{src}: controller.presets: needs exactly {BELOW}, {TRANSITION} and {SATURATED}")
    return ControllerSettings(
        baseline_ttft_p99_ms=baseline,
        theta1_x=theta1 / baseline,
        theta2_x=theta2 / baseline,
        ewma_alpha=_number(src, block, "ewma_alpha", low=1e-6, high=1.0),
        interval_s=_number(src, block, "interval_s", low=0.05),
        dwell_s=_number(src, block, "dwell_s", low=0.0),
        hysteresis=_number(src, block, "hysteresis", low=0.0, high=0.99),
        presets={k: _preset(src, k, v) for k, v in presets_raw.items()},
    )


def load_settings(path: Path) -> ControllerSettings:
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise InputError(f"--settings {path}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not YAML: {' '.join(str(exc).split())[:160]}") from exc
    return parse_settings(doc, str(path))


def settings_document(settings: ControllerSettings, dynamo_version: str = "1.6.1") -> dict[str, Any]:
    """The smallest recommendation ``parse_settings`` accepts (tests and benchmarks write one)."""
    return {"kind": KIND, "controller": settings.as_dict(), "provenance": {"dynamo_version": dynamo_version}}
