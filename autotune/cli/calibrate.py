"""``autotune calibrate``: fit the simulator's deployment constants from live points (``autotune.calibrate``).

Standalone like every command; ``autotune.cli.app`` registers it.
"""

from __future__ import annotations

from pathlib import Path

import click

from autotune.cli.options import SEED, SPEEDUP
from autotune.cli.output import FORMATS, emit


@click.command("calibrate")
@click.argument("records", type=click.Path(path_type=Path))
@click.option(
    "-p", "--profile", "profile_ref", required=True, help="Profile describing the deployment the points ran on."
)
@click.option(
    "--results",
    "out_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to write (default: RECORDS/calibration).",
)
@click.option(
    "--holdout", multiple=True, help="A point directory (relative to RECORDS) predicted but not fitted; repeatable."
)
@click.option(
    "--bootstrap",
    type=click.IntRange(0, 2000),
    default=50,
    show_default=True,
    help="Bootstrap resamples for the intervals.",
)
@click.option("--seed", type=SEED, default=None, help="Random seed (default: the profile's).")
@click.option("-t", "--topology", default=None, help="Topology of aiperf exports (point records carry their own).")
@click.option(
    "--speedup", type=SPEEDUP, default=1.0, show_default=True, help="Mocker speed-up the aiperf exports ran at."
)
@click.option("--mocker-tables", is_flag=True, help="aiperf exports came from dynamo-local mockers with NPZ tables.")
@click.option("--no-predict", is_flag=True, help="Skip the before/after predictions (no simulator runs).")
@click.option("-o", "--output", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
def calibrate_cmd(
    records: Path,
    profile_ref: str,
    out_dir: Path | None,
    holdout: tuple[str, ...],
    bootstrap: int,
    seed: int | None,
    topology: str | None,
    speedup: float,
    mocker_tables: bool,
    no_predict: bool,
    fmt: str,
) -> None:
    """Fit perf-model efficiencies, step overhead, host overhead and KV-transfer latency from RECORDS
    (point records written by ``autotune validate --save-records``); write calibrated.yaml and a report."""
    from autotune.calibrate.aiperf import Deployment
    from autotune.calibrate.report import write
    from autotune.calibrate.run import calibrate
    from autotune.profile import load_profile, profile_topology

    prof = load_profile(profile_ref)
    aiperf = Deployment(profile_topology(prof, topology), speedup, mocker_tables) if topology else None
    cal = calibrate(
        prof, records, holdout=list(holdout), boot=bootstrap, seed=seed, predict_points=not no_predict, aiperf=aiperf
    )
    files = write(cal, out_dir or Path(records) / "calibration")
    rows = [
        {
            "constant": r["name"],
            "prior": r["prior"],
            "value": r["value"],
            "interval": "-" if r["lo"] != r["lo"] else f"[{r['lo']:.4g}, {r['hi']:.4g}]",
            "status": r["status"],
            "why": r["why"],
        }
        for _, r in cal.params_frame().iterrows()
    ]
    cols = [(k, k) for k in ("constant", "prior", "value", "interval", "status", "why")]
    doc = {
        "params": cal.params_frame().to_dict(orient="records"),
        "overlay": cal.overlay,
        "scores": cal.scores.to_dict(orient="records"),
        "files": {k: str(v) for k, v in files.items()},
    }
    emit(
        doc,
        fmt,
        rows=rows,
        columns=cols,
        title=f"{prof.name}: calibrated from {len(cal.points)} points; {files['profile']}",
    )
