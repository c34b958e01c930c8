"""``autotune calibrate``: fit the simulator's deployment constants from live points (``autotune.calibrate``).

Standalone like every command; ``autotune.cli.app`` registers it.
"""

from __future__ import annotations

from pathlib import Path

import click

from autotune.cli.options import SEED
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
@click.option("--no-predict", is_flag=True, help="Skip the before/after predictions (no simulator runs).")
@click.option("-o", "--output", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
def calibrate_cmd(
    records: Path,
    profile_ref: str,
    out_dir: Path | None,
    holdout: tuple[str, ...],
    bootstrap: int,
    seed: int | None,
    no_predict: bool,
    fmt: str,
) -> None:
    """Fit perf-model efficiencies, step overhead, host overhead and KV-transfer latency from RECORDS
    (point records written by ``autotune validate --save-records``); write calibrated.yaml and a report."""
    from autotune.calibrate.report import write
    from autotune.calibrate.run import calibrate
    from autotune.profile import load_profile

    prof = load_profile(profile_ref)
    cal = calibrate(prof, records, holdout=list(holdout), boot=bootstrap, seed=seed, predict_points=not no_predict)
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
