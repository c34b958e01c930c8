"""Per-request records of live points, as ``autotune calibrate`` reads them.

A point is a directory holding ``point.json`` (topology, concurrency, worker timing and provenance),
``requests.csv`` (``autotune.records.REQUEST_COLUMNS``) and ``itl.npz`` (the inter-token samples).
Live backends write it when asked (``autotune validate --save-records DIR``); a study's results
directory keeps only per-point summaries, which cannot be calibrated from.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from autotune.errors import InputError
from autotune.profile import Profile, profile_topology
from autotune.records import REQUEST_COLUMNS, PointRun
from autotune.topology import Topology

FORMAT = "autotune-point-records/1"
# what a request needs for any fit: when it was sent, first seen, finished, and its lengths
NEEDED_COLUMNS = ("arrival_s", "first_token_s", "completion_s", "input_tokens", "output_tokens", "status")


@dataclass
class LivePoint:
    """One live point: its records and how its workers were timed."""

    name: str
    topology: Topology
    run: PointRun
    speedup: float  # the mockers' speed-up ratio (1 on real GPUs): engine times are divided by it
    mocker_tables: bool  # workers priced a mixed step as prefill + decode (dynamo-local's NPZ tables)
    model: str
    gpu: str

    @property
    def concurrency(self) -> int:
        return self.run.concurrency


def save_point(run: PointRun, topology: Topology, profile: Profile, out_dir: Path) -> Path:
    """Write one point's records where ``load_points`` finds them."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run.requests.loc[:, list(REQUEST_COLUMNS)].to_csv(out / "requests.csv", index=False)
    np.savez(out / "itl.npz", itl_ms=np.asarray(run.itl_ms, float), itl_weight=np.asarray(run.itl_weight, float))
    meta = {k: v for k, v in run.meta.items() if isinstance(v, str | int | float | bool)}
    doc = {
        "format": FORMAT,
        "topology": topology.to_string(),
        "concurrency": run.concurrency,
        "backend": run.backend,
        "gpus": run.gpus,
        "window_s": list(run.window_s),
        "model": profile.model.name,
        "gpu": profile.cluster.gpu.name,
        "meta": meta,
    }
    (out / "point.json").write_text(json.dumps(doc, indent=1, sort_keys=True))
    return out


def _fail(path: Path, what: str) -> InputError:
    return InputError(f"{path}: {what}")


def _read_point(path: Path, profile: Profile) -> LivePoint:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise _fail(path, f"not readable as JSON ({exc.__class__.__name__})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise _fail(path, f"format is not {FORMAT!r}")
    for key in ("topology", "concurrency", "window_s", "model", "gpu"):
        if key not in doc:
            raise _fail(path, f"field {key!r} is missing")
    if doc["model"] != profile.model.name or doc["gpu"] != profile.cluster.gpu.name:
        raise _fail(
            path,
            f"recorded for {doc['model']} on {doc['gpu']}, but the profile describes "
            f"{profile.model.name} on {profile.cluster.gpu.name}",
        )
    topology = profile_topology(profile, str(doc["topology"]), flag=f"{path}: topology")
    try:
        df = pd.read_csv(path.parent / "requests.csv")
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise _fail(path.parent / "requests.csv", f"not readable ({exc.__class__.__name__})") from None
    missing = [c for c in NEEDED_COLUMNS if c not in df.columns]
    if missing:
        raise _fail(path.parent / "requests.csv", f"columns missing: {', '.join(missing)}")
    for c in REQUEST_COLUMNS:
        if c not in df.columns:
            df[c] = math.nan
    df["error"] = df["error"].astype(object).where(df["error"].notna(), "").astype(str)
    df["measured"] = df["measured"].fillna(True).astype(bool)
    try:
        with np.load(path.parent / "itl.npz") as z:
            itl_ms, itl_w = np.asarray(z["itl_ms"], float), np.asarray(z["itl_weight"], float)
    except (OSError, KeyError, ValueError):
        itl_ms, itl_w = _itl_from_means(df)
    meta = doc.get("meta", {}) if isinstance(doc.get("meta"), dict) else {}
    run = PointRun(
        concurrency=int(doc["concurrency"]),
        requests=df,
        decisions={},
        itl_ms=itl_ms,
        itl_weight=itl_w,
        window_s=(float(doc["window_s"][0]), float(doc["window_s"][1])),
        gpus=int(doc.get("gpus", topology.gpus)),
        backend=str(doc.get("backend", "?")),
        meta=meta,
    )
    timing = str(meta.get("timing", ""))
    return LivePoint(
        name=str(path.parent),
        topology=topology,
        run=run,
        speedup=float(meta.get("speedup_ratio", 1.0) or 1.0),
        mocker_tables=timing.startswith("npz:") or timing == "mocker-default",
        model=str(doc["model"]),
        gpu=str(doc["gpu"]),
    )


def _itl_from_means(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Each request's mean gap, weighted by its gaps, when no per-token samples were kept."""
    ok = df[(df["status"] == "ok") & df["itl_mean_ms"].notna() & (df["output_tokens"] > 1)]
    return ok["itl_mean_ms"].to_numpy(float), (ok["output_tokens"] - 1).to_numpy(float)
