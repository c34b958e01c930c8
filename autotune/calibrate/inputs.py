"""Where ``calibrate`` finds its points: point records (``points``) and aiperf exports (``aiperf``)."""

from __future__ import annotations

from pathlib import Path

from autotune.calibrate.aiperf import EXPORT_NAME, Deployment, read_export
from autotune.calibrate.points import LivePoint, _read_point
from autotune.errors import InputError
from autotune.profile import Profile


def load_points(root: Path, profile: Profile, aiperf: Deployment | None = None) -> list[LivePoint]:
    """Every point under ``root``, in a stable order; one-line errors for what cannot be used.

    Point records (``point.json``) are read as they are; an aiperf ``profile_export.jsonl`` in a
    directory without one needs ``aiperf`` (a ``calibrate.aiperf.Deployment``: topology and timing)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: not a directory of point records")
    paths = sorted(root.rglob("point.json"))
    exports = sorted(p for p in root.rglob(EXPORT_NAME) if not (p.parent / "point.json").exists())
    if not paths and not exports:
        raise InputError(
            f"{root}: no point records (point.json) or aiperf exports ({EXPORT_NAME}) found; "
            "write them with autotune validate --save-records"
        )
    points = [_read_point(p, profile) for p in paths]
    for p in exports:
        if aiperf is None:
            raise InputError(f"{p}: an aiperf export does not say its topology; pass --topology")
        points.append(read_export(p, profile, aiperf))
    for pt in points:
        ok = pt.run.requests[(pt.run.requests["status"] == "ok") & pt.run.requests["measured"]]
        if len(ok) == 0:
            raise InputError(f"{pt.name}: no measured request completed")
    return points
