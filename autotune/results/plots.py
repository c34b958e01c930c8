"""PNG plots of a study: PoA-hat and TTFT vs concurrency, the Pareto front, (τ, ω) heatmaps, the spike."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from autotune.results.files import atomic_write  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> Path:
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)
    return path


def sweep_plot(curves: dict[str, pd.DataFrame], path: Path) -> Path:
    """PoA-hat and TTFT P99 against concurrency for the recommended and baseline topologies."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for label, df in curves.items():
        a1.plot(df["concurrency"], df["poa_hat"], marker="o", label=label)
        a2.plot(df["concurrency"], df["ttft_p99_ms"], marker="o", label=label)
        sat = df[df["regime"] == "saturated"]
        if len(sat):
            a2.axvline(sat["concurrency"].iloc[0], ls=":", lw=1, color=a2.lines[-1].get_color())
    for ax, name in ((a1, "PoA-hat"), (a2, "TTFT P99 (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrency")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    a2.set_yscale("log")
    a1.ticklabel_format(axis="y", useOffset=False, style="plain")
    a1.legend(fontsize=8)
    a1.set_title("PoA-hat vs concurrency")
    a2.set_title("TTFT P99 vs concurrency (dotted: knee)")
    return _save(fig, path)


def pareto_plot(trials: pd.DataFrame, front: pd.DataFrame, chosen: pd.Series | None, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ok = trials[trials["slo_ok"].astype(bool)] if "slo_ok" in trials else trials
    bad = trials[~trials["slo_ok"].astype(bool)] if "slo_ok" in trials else trials.iloc[0:0]
    ax.scatter(ok["tok_s_per_gpu"], ok["poa_hat"], s=12, alpha=0.5, label="trials (SLO met)")
    ax.scatter(bad["tok_s_per_gpu"], bad["poa_hat"], s=12, alpha=0.4, marker="x", label="trials (SLO violated)")
    if len(front):
        f = front.sort_values("tok_s_per_gpu")
        ax.plot(f["tok_s_per_gpu"], f["poa_hat"], "-o", color="C3", ms=5, label="Pareto front")
    if chosen is not None:
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
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def heatmap_plot(grids: dict[str, pd.DataFrame], path: Path) -> Path:
    """(τ, ω) heatmaps of PoA-hat on one colour scale (the paper's Figure 6 layout)."""
    keys = list(grids)
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.8), squeeze=False)
    vals = np.concatenate([g["poa_hat"].to_numpy(dtype=float) for g in grids.values()])
    vmin, vmax = np.nanmin(vals), np.nanmax(vals)
    im = None
    for ax, key in zip(axes[0], keys, strict=True):
        g = grids[key].pivot(index="temperature", columns="overlap_weight", values="poa_hat")
        im = ax.imshow(g.to_numpy(dtype=float), origin="lower", cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
        ax.set_xticks(range(len(g.columns)), [f"{c:g}" for c in g.columns])
        ax.set_yticks(range(len(g.index)), [f"{i:g}" for i in g.index])
        ax.set_xlabel("ω (overlap weight)")
        ax.set_ylabel("τ (temperature)")
        ax.set_title(key)
        for (i, j), v in np.ndenumerate(g.to_numpy(dtype=float)):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="w")
    if im is not None:
        fig.colorbar(im, ax=axes[0].tolist(), label="PoA-hat")
    return _save(fig, path)


def spike_plot(phases: pd.DataFrame, path: Path) -> Path:
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    names = list(dict.fromkeys(phases["phase"]))
    x = np.arange(len(names))
    for k, (col, label) in enumerate(
        (("poa_hat", "PoA-hat"), ("ttft_p99_ms", "TTFT P99 (ms)"), ("output_tok_s", "output tok/s"))
    ):
        ax = axes[k]
        for i, policy in enumerate(("static", "adaptive")):
            d = phases[phases["policy"] == policy].set_index("phase").reindex(names)
            ax.bar(x + (i - 0.5) * 0.38, d[col].to_numpy(dtype=float), width=0.38, label=policy)
        ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
        ax.set_title(label)
        ax.grid(alpha=0.3, axis="y")
    axes[0].legend(fontsize=8)
    fig.suptitle("static default routing vs adaptive controller: load ramp and spike")
    return _save(fig, path)
