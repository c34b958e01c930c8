"""Router presets per regime: a (τ, ω) grid measured in that regime, and whether any cell beats Dynamo's default.

Every cell of a grid runs the same requests: the same seed and the same request count (the default
cell runs first and finds the length its figures need; the other cells run exactly that many), so
the cells differ only by the router (common random numbers). A preset replaces the default only
when its intervals put it beyond the noise; otherwise the regime keeps the default, and the choice
carries the evidence either way. A regime the sweep never reached gets no grid and keeps the default.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import pandas as pd

from autotune.backends import result_key
from autotune.backends.sim import SimBackend
from autotune.intervals import Interval, differ
from autotune.profile import Profile
from autotune.scoring import score_point, step_timers
from autotune.search.signals import worker_init
from autotune.topology import DEFAULT_ROUTER, RouterSettings, Topology

TAU_GRID = (0.0, 0.3, 0.7, 1.0)
OMEGA_GRID = (0.0, 0.5, 1.0, 2.0)


def heatmap(
    profile: Profile,
    topology: Topology,
    concurrency: int,
    *,
    seed: int,
    requests: int | None = None,
    perf_model: str = "roofline",
    jobs: int = 1,
) -> pd.DataFrame:
    """PoA-hat and TTFT P99 over the (τ, ω) grid at one concurrency, every cell on the same requests.

    The default cell's adaptive run finds the length; then every cell, the default's included, is a
    fixed run of that many requests (an adaptive point pauses where a fixed one drains, so only fixed
    runs share their requests exactly). Cells whose effective router settings are equal simulate
    identically (``autotune.sim.router.effective_router``: in a disaggregated graph every ω > 0
    routes alike), so each distinct one runs once, on ``jobs`` processes, with the figures of one.
    """
    cells = [RouterSettings(temperature=t, overlap_weight=w) for t in TAU_GRID for w in OMEGA_GRID]
    n = int(_cell_row(profile, topology, DEFAULT_ROUTER, concurrency, seed, requests, perf_model)["requests"])
    fixed = profile.model_copy(update={"measurement": profile.measurement.model_copy(update={"adaptive": False})})
    keys = [result_key("sim", profile, topology.with_router(r)) for r in cells]
    distinct = {k: r for k, r in zip(keys, cells, strict=True)}  # one router per key (the last: any will do)
    args = [(fixed, topology, router, concurrency, seed, n, perf_model) for router in distinct.values()]
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=min(jobs, len(args)), initializer=worker_init) as pool:
            ran = list(pool.map(_cell_row, *zip(*args, strict=True)))
    else:
        ran = [_cell_row(*a) for a in args]
    by_key = dict(zip(distinct, ran, strict=True))
    rows = [
        {**by_key[k], "temperature": r.temperature, "overlap_weight": r.overlap_weight}
        for k, r in zip(keys, cells, strict=True)
    ]
    return pd.DataFrame(rows).sort_values(["temperature", "overlap_weight"], ignore_index=True)


def _cell_row(
    profile: Profile,
    topology: Topology,
    router: RouterSettings,
    concurrency: int,
    seed: int,
    requests: int | None,
    perf_model: str,
) -> dict[str, float]:
    """One grid cell: a fresh simulated deployment with ``router``; ``requests`` is the run's start length."""
    dep = SimBackend(perf_model).deploy(profile, topology)
    dep.set_router(router)
    n = requests or profile.measurement.start_requests(concurrency)
    run = dep.run_point(concurrency, seed=seed, requests=n)
    m = score_point(run, step_timers(dep.perf, topology), profile.engine.block_size)
    return {
        "concurrency": concurrency,
        "temperature": router.temperature,
        "overlap_weight": router.overlap_weight,
        "requests": int(run.meta.get("requests_run", n)),
        "poa_hat": m.poa_hat,
        "poa_hat_lo": m.poa_hat_lo,
        "poa_hat_hi": m.poa_hat_hi,
        "routing_regret": m.routing_regret,
        "routing_regret_lo": m.routing_regret_lo,
        "routing_regret_hi": m.routing_regret_hi,
        "ttft_p99_ms": m.metrics.ttft_p99_ms,
        "ttft_p99_ms_lo": m.metrics.ttft_p99_ms_lo,
        "ttft_p99_ms_hi": m.metrics.ttft_p99_ms_hi,
        "output_tok_s": m.metrics.output_tok_s,
        "output_tok_s_lo": m.metrics.output_tok_s_lo,
        "output_tok_s_hi": m.metrics.output_tok_s_hi,
    }


def _cell(r: pd.Series, name: str) -> Interval:
    return Interval(float(r[name]), float(r[f"{name}_lo"]), float(r[f"{name}_hi"]))


def beats_default(r: pd.Series, d: pd.Series) -> bool:
    """Significantly better than Dynamo's default cell: lower PoA-hat beyond the noise with TTFT P99 not
    worse beyond it, or TTFT P99 lower beyond the noise with PoA-hat indistinguishable."""
    poa, poa_d = _cell(r, "poa_hat"), _cell(d, "poa_hat")
    ttft, ttft_d = _cell(r, "ttft_p99_ms"), _cell(d, "ttft_p99_ms")
    poa_better = differ(poa, poa_d) and poa.value < poa_d.value
    poa_worse = differ(poa, poa_d) and poa.value > poa_d.value
    ttft_better = differ(ttft, ttft_d) and ttft.value < ttft_d.value
    ttft_worse = differ(ttft, ttft_d) and ttft.value > ttft_d.value
    return (poa_better and not ttft_worse) or (ttft_better and not poa_better and not poa_worse)


@dataclass(frozen=True)
class PresetChoice:
    """One regime's preset and why: ``keep_default`` when no cell is significantly better than the default."""

    regime: str
    preset: RouterSettings
    keep_default: bool
    reason: str
    concurrency: int | None = None  # where the grid was measured (None: not measured)
    default_cell: dict[str, float] | None = None  # the default's figures and intervals
    best_cell: dict[str, float] | None = None  # the chosen cell, or the nominally best one that was not enough

    def as_dict(self) -> dict[str, object]:
        return {
            "regime": self.regime,
            "temperature": self.preset.temperature,
            "overlap_weight": self.preset.overlap_weight,
            "keep_default": self.keep_default,
            "reason": self.reason,
            "concurrency": self.concurrency,
            "default_cell": self.default_cell,
            "best_cell": self.best_cell,
        }


_FIGS = ("poa_hat", "poa_hat_lo", "poa_hat_hi", "ttft_p99_ms", "ttft_p99_ms_lo", "ttft_p99_ms_hi")


def _figs(r: pd.Series) -> dict[str, float]:
    return {"temperature": float(r["temperature"]), "overlap_weight": float(r["overlap_weight"])} | {
        k: float(r[k]) for k in _FIGS
    }


def not_reached(regime: str, why: str) -> PresetChoice:
    return PresetChoice(regime, DEFAULT_ROUTER, True, why)


def choose_preset(regime: str, grid: pd.DataFrame) -> PresetChoice:
    """Dynamo's default stays unless a (τ, ω) cell is significantly better in this regime; among the cells
    that are, the lowest PoA-hat, then TTFT P99."""
    g = grid.dropna(subset=["poa_hat"])
    is_default = (g["temperature"] == DEFAULT_ROUTER.temperature) & (
        g["overlap_weight"] == DEFAULT_ROUTER.overlap_weight
    )
    conc = int(g["concurrency"].iloc[0]) if len(g) and "concurrency" in g else None
    if g.empty or not is_default.any():
        return PresetChoice(regime, DEFAULT_ROUTER, True, "the default cell has no figures: nothing to compare", conc)
    d = g[is_default].iloc[0]
    others = g[~is_default]
    better = others[[beats_default(r, d) for _, r in others.iterrows()]]
    order = ["poa_hat", "ttft_p99_ms", "temperature", "overlap_weight"]
    if better.empty:
        nominal = others.sort_values(order).iloc[0] if len(others) else d
        return PresetChoice(
            regime,
            DEFAULT_ROUTER,
            True,
            f"no (τ, ω) cell of {len(g)} is significantly better than the default (intervals overlap)",
            conc,
            _figs(d),
            _figs(nominal),
        )
    r = better.sort_values(order).iloc[0]
    preset = RouterSettings(temperature=float(r["temperature"]), overlap_weight=float(r["overlap_weight"]))
    return PresetChoice(
        regime,
        preset,
        False,
        f"{len(better)} of {len(others)} cells significantly better than the default; the lowest PoA-hat chosen",
        conc,
        _figs(d),
        _figs(r),
    )


@dataclass(frozen=True)
class GridSpread:
    """How much a (τ, ω) grid moves PoA-hat: the paper's "mean ± SD across the 16 configs" (paper.md §4),
    the max/min spread, and how many cells differ from Dynamo's default beyond their intervals."""

    cells: int
    poa_mean: float
    poa_sd: float  # sample SD across cells (ddof 1), as the paper's ± reads
    poa_min: float
    poa_max: float
    poa_differs: int  # cells whose PoA-hat interval does not overlap the default's
    ttft_differs: int  # the same for TTFT P99

    @property
    def max_over_min(self) -> float:
        return self.poa_max / self.poa_min if self.poa_min > 0 else float("nan")


def grid_spread(grid: pd.DataFrame) -> GridSpread:
    """The spread of one ``heatmap`` grid (cells without a PoA-hat left out)."""
    g = grid.dropna(subset=["poa_hat"])
    poa = g["poa_hat"].astype(float)
    is_default = (g["temperature"] == DEFAULT_ROUTER.temperature) & (
        g["overlap_weight"] == DEFAULT_ROUTER.overlap_weight
    )
    poa_differs = ttft_differs = 0
    if is_default.any():
        d = g[is_default].iloc[0]
        others = [r for _, r in g[~is_default].iterrows()]
        poa_differs = sum(differ(_cell(r, "poa_hat"), _cell(d, "poa_hat")) for r in others)
        ttft_differs = sum(differ(_cell(r, "ttft_p99_ms"), _cell(d, "ttft_p99_ms")) for r in others)
    return GridSpread(
        cells=len(g),
        poa_mean=float(poa.mean()) if len(g) else float("nan"),
        poa_sd=float(poa.std(ddof=1)) if len(g) > 1 else float("nan"),
        poa_min=float(poa.min()) if len(g) else float("nan"),
        poa_max=float(poa.max()) if len(g) else float("nan"),
        poa_differs=poa_differs,
        ttft_differs=ttft_differs,
    )
