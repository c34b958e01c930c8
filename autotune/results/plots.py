"""PNG plots of a study: PoA-hat, routing regret and TTFT vs concurrency, the Pareto front, (τ, ω) heatmaps, the spike.

Every measured figure is drawn with its confidence interval (error bars from ``<name>_lo``/``_hi``);
heatmap cells indistinguishable from Dynamo's default router are hatched grey instead of coloured.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402

from autotune.intervals import Interval, differ  # noqa: E402
from autotune.results.files import atomic_write  # noqa: E402
from autotune.topology import DEFAULT_ROUTER  # noqa: E402


def _err(df: pd.DataFrame, col: str) -> np.ndarray | None:
    """``[below, above]`` error-bar lengths from ``<col>_lo``/``<col>_hi`` (0 where unknown), or None."""
    if f"{col}_lo" not in df or f"{col}_hi" not in df:
        return None
    v = df[col].to_numpy(dtype=float)
    below = np.nan_to_num(v - df[f"{col}_lo"].to_numpy(dtype=float), nan=0.0)
    above = np.nan_to_num(df[f"{col}_hi"].to_numpy(dtype=float) - v, nan=0.0)
    return np.clip(np.vstack([below, above]), 0.0, None)


def _save(fig: plt.Figure, path: Path) -> Path:
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)
    return path


def sweep_plot(curves: dict[str, pd.DataFrame], path: Path, level: float = 0.95) -> Path:
    """PoA-hat, routing regret and TTFT P99 against concurrency for the recommended and baseline topologies,
    with intervals (docs/poa-hat.md: the two PoA estimators)."""
    fig, (a1, a3, a2) = plt.subplots(1, 3, figsize=(16, 4))
    for k, (label, df) in enumerate(curves.items()):
        color = f"C{k}"
        x = df["concurrency"]
        a1.errorbar(x, df["poa_hat"], yerr=_err(df, "poa_hat"), marker="o", capsize=3, color=color, label=label)
        if "routing_regret" in df:
            a3.errorbar(x, df["routing_regret"], yerr=_err(df, "routing_regret"), marker="o", capsize=3, color=color)
        a2.errorbar(x, df["ttft_p99_ms"], yerr=_err(df, "ttft_p99_ms"), marker="o", capsize=3, color=color)
        sat = df[df["regime"] == "saturated"]
        if len(sat):
            a2.axvline(sat["concurrency"].iloc[0], ls=":", lw=1, color=color)
    for ax, name in ((a1, "PoA-hat"), (a3, "routing regret"), (a2, "TTFT P99 (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrency")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    a2.set_yscale("log")
    a1.set_yscale("log")
    a3.ticklabel_format(axis="y", useOffset=False, style="plain")
    a1.legend(fontsize=8)
    a1.set_title("PoA-hat (measured / no-queue optimum)")
    a3.set_title("routing regret (same frozen matrix)")
    a2.set_title("TTFT P99 vs concurrency (dotted: knee)")
    fig.text(0.01, -0.07, f"error bars: {level * 100:g} % confidence intervals (steady state, batch means)", fontsize=8)
    return _save(fig, path)


def pareto_plot(
    trials: pd.DataFrame, front: pd.DataFrame, chosen: pd.Series | None, path: Path, level: float = 0.95
) -> Path:
    """The two objectives of every completed trial, each with its interval on both axes."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ok = trials[trials["slo_ok"].astype(bool)] if "slo_ok" in trials else trials
    bad = trials[~trials["slo_ok"].astype(bool)] if "slo_ok" in trials else trials.iloc[0:0]
    for df, marker, ms, alpha, color, label in (
        (ok, "o", 3.5, 0.5, "C0", "trials (SLO met)"),
        (bad, "x", 4.0, 0.4, "C1", "trials (SLO violated)"),
    ):
        ax.errorbar(
            df["tok_s_per_gpu"],
            df["poa_hat"],
            xerr=_err(df, "tok_s_per_gpu"),
            yerr=_err(df, "poa_hat"),
            marker=marker,
            ms=ms,
            alpha=alpha,
            color=color,
            label=label,
            ls="none",
            elinewidth=0.6,
        )
    if len(front):
        f = front.sort_values("tok_s_per_gpu")
        ax.plot(f["tok_s_per_gpu"], f["poa_hat"], "-o", color="C3", ms=5, label="Pareto front")
    if chosen is not None:
        c = chosen.to_frame().T
        ax.errorbar(
            c["tok_s_per_gpu"].astype(float),
            c["poa_hat"].astype(float),
            xerr=_err(c, "tok_s_per_gpu"),
            yerr=_err(c, "poa_hat"),
            ls="none",
            color="k",
            elinewidth=1,
            capsize=3,
            zorder=4,
        )
        ax.scatter(
            [chosen["tok_s_per_gpu"]],
            [chosen["poa_hat"]],
            s=160,
            marker="*",
            color="gold",
            edgecolor="k",
            zorder=5,
            label="recommended",
        )
    ax.set_xlabel("output tok/s per GPU (operating point)")
    ax.set_ylabel("PoA-hat (operating point)")
    ax.set_title(f"bars: {level * 100:g} % confidence intervals", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _default_cell(grid: pd.DataFrame) -> Interval | None:
    d = grid[
        (grid["temperature"] == DEFAULT_ROUTER.temperature) & (grid["overlap_weight"] == DEFAULT_ROUTER.overlap_weight)
    ]
    if d.empty:
        return None
    v, lo, hi = d[["poa_hat", "poa_hat_lo", "poa_hat_hi"]].to_numpy(dtype=float)[0]
    return Interval(float(v), float(lo), float(hi))


def heatmap_plot(grids: dict[str, pd.DataFrame], path: Path, level: float = 0.95) -> Path:
    """(τ, ω) heatmaps of PoA-hat on one colour scale (the paper's Figure 6 layout).

    A cell whose PoA-hat interval overlaps the default cell's (τ = 0, ω = 1, outlined) is hatched grey:
    its difference from Dynamo's default is inside the noise, so its colour would show structure that
    is not there. A cell or default without an interval is hatched too (no difference can be claimed);
    a grid without interval columns at all is drawn in colour throughout.
    """
    keys = list(grids)
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.8), squeeze=False)
    vals = np.concatenate([g["poa_hat"].to_numpy(dtype=float) for g in grids.values()])
    vmin, vmax = np.nanmin(vals), np.nanmax(vals)
    im = None
    hatched = False
    for ax, key in zip(axes[0], keys, strict=True):
        grid = grids[key]
        g = grid.pivot(index="temperature", columns="overlap_weight", values="poa_hat")
        im = ax.imshow(g.to_numpy(dtype=float), origin="lower", cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
        ax.set_xticks(range(len(g.columns)), [f"{c:g}" for c in g.columns])
        ax.set_yticks(range(len(g.index)), [f"{i:g}" for i in g.index])
        ax.set_xlabel("ω (overlap weight)")
        ax.set_ylabel("τ (temperature)")
        ax.set_title(key)
        base = _default_cell(grid) if {"poa_hat_lo", "poa_hat_hi"} <= set(grid.columns) else None
        lo, hi = (
            grid.pivot(index="temperature", columns="overlap_weight", values=c).to_numpy(dtype=float) if base else None
            for c in ("poa_hat_lo", "poa_hat_hi")
        )
        for (i, j), v in np.ndenumerate(g.to_numpy(dtype=float)):
            tau, omega = g.index[i], g.columns[j]
            is_default = tau == DEFAULT_ROUTER.temperature and omega == DEFAULT_ROUTER.overlap_weight
            grey = False
            if base is not None and lo is not None and hi is not None and not is_default:
                grey = not differ(Interval(v, float(lo[i, j]), float(hi[i, j])), base)
            if grey:
                hatched = True
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="0.85", edgecolor="0.55", hatch="///", lw=0))
            if is_default:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", lw=2))
            ax.text(j, i, f"{v:.3g}", ha="center", va="center", fontsize=7, color="k" if grey else "w")
    if im is not None:
        fig.colorbar(im, ax=axes[0].tolist(), label="PoA-hat")
    handles = [Patch(facecolor="none", edgecolor="red", lw=2, label="Dynamo default (τ=0, ω=1)")]
    if hatched:
        handles.append(
            Patch(
                facecolor="0.85",
                edgecolor="0.55",
                hatch="///",
                label=f"not significantly different from the default ({level * 100:g} % intervals overlap)",
            )
        )
    fig.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.0, -0.08), fontsize=8, ncol=2, frameon=False)
    return _save(fig, path)


def spike_plot(phases: pd.DataFrame, path: Path) -> Path:
    cols = [("poa_hat", "PoA-hat"), ("ttft_p99_ms", "TTFT P99 (ms)"), ("output_tok_s", "output tok/s")]
    if "routing_regret" in phases:
        cols.insert(1, ("routing_regret", "routing regret"))
    fig, axes = plt.subplots(1, len(cols), figsize=(4.4 * len(cols), 3.8))
    names = list(dict.fromkeys(phases["phase"]))
    x = np.arange(len(names))
    for k, (col, label) in enumerate(cols):
        ax = axes[k]
        for i, policy in enumerate(("static", "adaptive")):
            d = phases[phases["policy"] == policy].set_index("phase").reindex(names)
            ax.bar(
                x + (i - 0.5) * 0.38,
                d[col].to_numpy(dtype=float),
                width=0.38,
                label=policy,
                yerr=_err(d, col),
                capsize=2,
            )
        ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
        ax.set_title(label)
        ax.grid(alpha=0.3, axis="y")
    axes[0].legend(fontsize=8)
    fig.suptitle("static default routing vs adaptive controller: ramp past capacity and spike (error bars: over seeds)")
    return _save(fig, path)
