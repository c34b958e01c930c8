"""Write a calibration: the overlay (``calibrated.yaml``), the figures as CSV and a markdown report."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from autotune.calibrate.run import Calibration
from autotune.profile import _deep_merge, find_profile
from autotune.results.files import write_csv, write_text, write_yaml


def _num(v: float, digits: int = 4) -> str:
    return "-" if v != v else f"{v:.{digits}g}"


def _pct(v: float) -> str:
    return "-" if v != v else f"{v:+.1%}"


def _table(df: pd.DataFrame) -> list[str]:
    """A frame as a markdown table (no tabulate dependency)."""
    cols = list(df.columns)
    rows = [" | ".join(str(v) for v in r) for r in df.itertuples(index=False)]
    return [f"| {' | '.join(cols)} |", "|" + "---|" * len(cols), *(f"| {r} |" for r in rows)]


def overlay_document(cal: Calibration) -> dict[str, object]:
    """The overlay as a loadable profile: it extends the calibrated profile's file and adds the fitted
    fields; a profile built in memory has no file to extend, so it is written whole, overlay merged."""
    name = f"{cal.profile.name}-calibrated"[:63]
    parent = find_profile(cal.profile.source)
    if parent.is_file():
        return {"extends": str(parent.resolve()), "name": name, **cal.overlay}
    return {**_deep_merge(cal.profile.resolved_dict(), cal.overlay), "name": name}


def markdown(cal: Calibration) -> str:
    level = cal.profile.measurement.ci_level
    lines = [
        f"# Calibration of {cal.profile.name}",
        "",
        f"{len(cal.points)} live points; fitted on {len(cal.points) - len(cal.held_out)}, "
        f"held out {len(cal.held_out)}: {', '.join(Path(h).name for h in cal.held_out) or 'none (errors are in-sample)'}.",
        "",
        "## Samples the fit used",
        "",
        *_table(cal.samples),
        "",
        f"## Constants ({level:.0%} bootstrap intervals over requests)",
        "",
        "| constant | prior | value | interval | status | why |",
        "|---|---|---|---|---|---|",
    ]
    for _, r in cal.params_frame().iterrows():
        ci = "-" if math.isnan(r["lo"]) else f"[{_num(r['lo'])}, {_num(r['hi'])}]"
        lines.append(f"| {r['name']} | {_num(r['prior'])} | {_num(r['value'])} | {ci} | {r['status']} | {r['why']} |")
    lines += ["", "## Predictions before and after", ""]
    if cal.predictions.empty:
        lines.append("Not computed (--no-predict).")
    else:
        lines += [
            "| points | figure | n | MAPE before | MAPE after | r before | r after | target |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for _, s in cal.scores.iterrows():
            lines.append(
                f"| {s['points']} | {s['figure']} | {s['n']} | {s['mape_before']:.1%} | {s['mape_after']:.1%} | "
                f"{_num(s['r_before'], 3)} | {_num(s['r_after'], 3)} | {s['target']:.0%} |"
            )
        lines += [
            "",
            "Pearson r needs 3 or more points with spread (`-` otherwise).",
            "",
            "| point | held out | figure | live [interval] | before | after | error before | error after |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for _, p in cal.predictions.iterrows():
            live = f"{_num(p['live'])} [{_num(p['live_lo'])}, {_num(p['live_hi'])}]"
            lines.append(
                f"| {Path(p['point']).name} {p['topology']} C={p['concurrency']} | {'yes' if p['held_out'] else 'no'} | "
                f"{p['figure']} | {live} | {_num(p['before'])} | {_num(p['after'])} | "
                f"{_pct(p['error_before'])} | {_pct(p['error_after'])} |"
            )
    return "\n".join(lines) + "\n"


def write(cal: Calibration, out: Path) -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "overlay": write_yaml(out / "overlay.yaml", cal.overlay, header="# autotune calibrate: fitted fields only\n"),
        "profile": write_yaml(out / "calibrated.yaml", overlay_document(cal), header="# autotune calibrate\n"),
        "params": write_csv(out / "params.csv", cal.params_frame()),
        "samples": write_csv(out / "samples.csv", cal.samples),
        "report": write_text(out / "calibration.md", markdown(cal)),
    }
    if not cal.predictions.empty:
        files["predictions"] = write_csv(out / "predictions.csv", cal.predictions)
        files["scores"] = write_csv(out / "scores.csv", cal.scores)
        files["plot"] = _plot(cal.predictions, out / "predicted_vs_live.png")
    return files


def _plot(pred: pd.DataFrame, path: Path) -> Path:
    """Predicted against live, per figure, before (grey) and after (blue); live intervals as bars."""
    from autotune.results import plots

    plt = plots.plt
    figs = list(dict.fromkeys(pred["figure"]))
    fig, axes = plt.subplots(1, len(figs), figsize=(4 * len(figs), 3.6))
    for ax, name in zip(axes if len(figs) > 1 else [axes], figs, strict=True):
        f = pred[pred["figure"] == name]
        xerr = plots._err(f, "live")
        for col, color in (("before", "0.6"), ("after", "tab:blue")):
            ax.errorbar(f["live"], f[col], xerr=xerr, fmt="o", color=color, label=col, capsize=2)
        lim = [
            min(f["live"].min(), f[["before", "after"]].min().min()),
            max(f["live"].max(), f[["before", "after"]].max().max()),
        ]
        ax.plot(lim, lim, "k:", lw=1)
        ax.set_title(name)
        ax.set_xlabel("live")
        ax.set_ylabel("simulated")
    axes_list = axes if len(figs) > 1 else [axes]
    axes_list[0].legend()
    return plots._save(fig, path)
