"""Fit the deployment's constants from live samples: ``scipy.optimize.least_squares``, bootstrap intervals.

Each constant gets a status. *fitted*: the data pins it (bootstrap interval over requests narrower than
``MAX_CI_HALF_WIDTH`` of its value); *not identifiable*: the records cannot tell it (too few samples of
the kind it shows in, or its interval too wide — e.g. the per-step overhead and the decode bandwidth
both add a constant to every decode step), so it stays at the prior and the others are refitted around
it; *prior*: nothing in the records bears on it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from autotune.calibrate.engine import EngineConstants, Pricer, prior_constants
from autotune.calibrate.states import DecodeSample, PointSamples, PrefillSample, RouteSample
from autotune.profile import Profile

MAX_CORRELATION = 0.9  # two constants whose estimates correlate more than this are not told apart
MIN_SAMPLES = 10
EXP_P50_MINUS_P5 = math.log(2) - math.log(
    20 / 19
)  # of an exponential, in units of its mean  # a kind of sample with fewer than this identifies nothing
MAX_CI_HALF_WIDTH = 0.25  # relative: wider than ±25 % of the value is not a fit
ROBUST_SCALE = 0.1  # soft-L1 loss: residuals beyond 10 % count linearly (a busy host's stalls)

# name, lower, upper bound, where it shows (the sample kinds it needs); in priority order: of two
# constants the samples cannot tell apart, the later one stays at its prior
ENGINE_PARAMS: tuple[tuple[str, float, float, tuple[str, ...]], ...] = (
    ("prefill_mfu", 0.02, 1.0, ("prefill",)),
    ("decode_mbu", 0.02, 1.0, ("decode",)),
    ("stream_ms", -20.0, 500.0, ("prefill",)),
    ("kv_transfer_ms", 0.0, 2000.0, ("disagg_prefill",)),
    ("step_overhead_ms", 0.0, 100.0, ("decode", "prefill")),
)


@dataclass
class ParamFit:
    name: str
    prior: float
    value: float
    lo: float = math.nan
    hi: float = math.nan
    status: str = "prior"  # fitted | not identifiable | prior
    why: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Items:
    """The samples flattened, each with how its point's workers were timed."""

    decode: list[tuple[DecodeSample, bool, float]]
    prefill: list[tuple[PrefillSample, bool, float]]
    route: list[RouteSample]

    @classmethod
    def of(cls, groups: list[PointSamples]) -> Items:
        dec = [(d, g.point.mocker_tables, g.point.speedup) for g in groups for d in g.decode]
        pre = [(p, g.point.mocker_tables, g.point.speedup) for g in groups for p in g.prefill]
        # a prefill on an idle worker is priced exactly; one that joined running decodes waited an unknown
        # part of a step: use those only when too few prefills found their worker idle
        idle = [x for x in pre if x[0].batch == 0]
        return cls(dec, idle if len(idle) >= MIN_SAMPLES else pre, [r for g in groups for r in g.route])

    def counts(self) -> dict[str, int]:
        return {
            "decode": len(self.decode),
            "prefill": len(self.prefill),
            "disagg_prefill": sum(1 for p, _, _ in self.prefill if p.disaggregated),
            "route": len(self.route),
        }


def _residuals(base: Profile, c: EngineConstants, items: Items, di: np.ndarray, pi: np.ndarray) -> np.ndarray:
    pricer = Pricer(base, c)
    out = []
    if len(di):
        r = [
            (pricer.decode_ms_per_token(d, m, s) * d.steps - d.observed_ms) / d.observed_ms
            for d, m, s in (items.decode[i] for i in di)
        ]
        out.append(np.asarray(r) / math.sqrt(len(di)))
    if len(pi):
        r = [(pricer.prefill_ms(p, m, s) - p.observed_ms) / p.observed_ms for p, m, s in (items.prefill[i] for i in pi)]
        out.append(np.asarray(r) / math.sqrt(len(pi)))
    return np.concatenate(out) if out else np.zeros(0)


def _solve(
    base: Profile, start: EngineConstants, free: list[str], items: Items, di: np.ndarray, pi: np.ndarray
) -> tuple[EngineConstants, np.ndarray]:
    """The constants in ``free`` that best explain the samples, and the residuals' Jacobian there."""
    bounds = {n: (lo, hi) for n, lo, hi, _ in ENGINE_PARAMS}
    x0 = np.array([min(max(getattr(start, n), bounds[n][0]), bounds[n][1]) for n in free], float)

    def fun(x: np.ndarray) -> np.ndarray:
        return _residuals(
            base, dataclasses.replace(start, **dict(zip(free, map(float, x), strict=True))), items, di, pi
        )

    res = least_squares(
        fun,
        x0,
        bounds=([bounds[n][0] for n in free], [bounds[n][1] for n in free]),
        loss="soft_l1",
        f_scale=ROBUST_SCALE / math.sqrt(max(len(di), len(pi), 1)),
        x_scale=np.maximum(np.abs(x0), 0.1),
        diff_step=1e-3,
    )
    return dataclasses.replace(start, **dict(zip(free, map(float, res.x), strict=True))), np.asarray(res.jac)


def _confounded(jac: np.ndarray, free: list[str]) -> dict[str, str]:
    """Constants whose estimates move together with an earlier (higher-priority) one: the samples see only
    their combination. From the correlation of the least-squares estimates, (JᵀJ)⁻¹."""
    cov = np.linalg.pinv(jac.T @ jac)
    sd = np.sqrt(np.clip(np.diag(cov), 1e-300, None))
    corr = cov / np.outer(sd, sd)
    out: dict[str, str] = {}
    for j in range(len(free)):
        for i in range(j):
            if free[i] not in out and abs(corr[i, j]) > MAX_CORRELATION:
                out[free[j]] = (
                    f"confounded with {free[i]} (estimates correlated r={corr[i, j]:+.2f}): "
                    "the samples see only their combination"
                )
                break
    return out


def _needs(items: Items, kinds: tuple[str, ...]) -> str:
    counts = items.counts()
    short = [k for k in kinds if counts[k] < MIN_SAMPLES]
    if not short:
        return ""
    what = {
        "decode": "decode phases (requests with 2+ output tokens on a known worker)",
        "prefill": "prefills with no prefill queueing (alone on their worker, with a routing time)",
        "disagg_prefill": "such prefills on disaggregated points",
    }
    return "; ".join(f"{counts[k]} {what[k]}, needs {MIN_SAMPLES}" for k in short)


def fit_engine(
    base: Profile, groups: list[PointSamples], *, boot: int = 100, seed: int = 0, level: float = 0.95
) -> tuple[EngineConstants, list[ParamFit]]:
    """Fitted engine constants and each one's status, interval and reason."""
    items = Items.of(groups)
    prior = prior_constants(base)
    fits = {n: ParamFit(n, getattr(prior, n), getattr(prior, n)) for n, *_ in ENGINE_PARAMS}
    free = []
    for name, _, _, kinds in ENGINE_PARAMS:
        why = _needs(items, kinds)
        if why:
            fits[name].why = why
            fits[name].status = (
                "prior" if name == "kv_transfer_ms" and not items.counts()["disagg_prefill"] else "not identifiable"
            )
        else:
            free.append(name)
    di, pi = np.arange(len(items.decode)), np.arange(len(items.prefill))
    rng = np.random.default_rng(seed)
    for _ in range(len(ENGINE_PARAMS)):  # each pass holds what proved unidentifiable at the prior
        if not free:
            break
        best, jac = _solve(base, prior, free, items, di, pi)
        confounded = _confounded(jac, free)
        if confounded:
            for n, why in confounded.items():
                fits[n].status, fits[n].why = "not identifiable", why
            free = [n for n in free if n not in confounded]
            continue
        draws = np.array(
            [
                [
                    getattr(_solve(base, best, free, items, rng.choice(di, len(di)), rng.choice(pi, len(pi)))[0], n)
                    for n in free
                ]
                for _ in range(boot)
            ]
        ).reshape(boot, len(free))
        tail = (1 - level) / 2 * 100
        lo, hi = np.percentile(draws, [tail, 100 - tail], axis=0) if boot else (np.full(len(free), math.nan),) * 2
        dropped = []
        for k, n in enumerate(free):
            v = float(getattr(best, n))
            f = fits[n]
            f.value, f.lo, f.hi = v, float(lo[k]), float(hi[k])
            half = (f.hi - f.lo) / 2
            scale = max(abs(v), abs(f.prior), 1e-9)
            if n != "stream_ms" and boot and half / scale > MAX_CI_HALF_WIDTH:
                f.status, f.value = "not identifiable", f.prior
                f.why = f"bootstrap interval ±{half / scale:.0%} of its value: the records do not separate it"
                dropped.append(n)
            else:
                f.status, f.why = "fitted", ""
        if not dropped:
            break
        free = [n for n in free if n not in dropped]
    for f in fits.values():
        if f.status != "fitted":
            f.value = f.prior
    final = dataclasses.replace(prior, **{n: fits[n].value for n in fits})
    return final, list(fits.values())


@dataclass
class HostFit:
    """Send → routing decision as intercept + per prompt token (the frontend's work before routing)."""

    request_ms: ParamFit
    input_token_us: ParamFit
    jitter_ms: float | None


def fit_host(
    base: Profile, groups: list[PointSamples], *, boot: int = 200, seed: int = 0, level: float = 0.95
) -> HostFit:
    """Robust line through the route delays; the intercept's exponential part is the frontend's jitter."""
    d = base.dynamo
    req = ParamFit("host_request_ms", d.frontend_overhead_ms, d.frontend_overhead_ms)
    tok = ParamFit("host_input_token_us", d.frontend_input_token_us, d.frontend_input_token_us)
    route = [r for g in groups for r in g.route]
    if len(route) < MIN_SAMPLES:
        for f in (req, tok):
            f.status, f.why = "not identifiable", f"{len(route)} requests carry a routing time, needs {MIN_SAMPLES}"
        return HostFit(req, tok, None)
    x = np.array([r.input_tokens for r in route], float)
    y = np.array([r.observed_ms for r in route], float)

    def line(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        res = least_squares(
            lambda p: p[0] + p[1] * xs - ys,
            [float(np.median(ys)), 0.0],
            loss="soft_l1",
            f_scale=1.0,
            x_scale=[1.0, 1e-3],
        )
        return np.asarray(res.x, float)

    a, b = line(x, y)
    # the exponential part, from the spread of what the line leaves (as validate.fit_frontend_jitter_ms)
    p5, p50 = np.percentile(y - a - b * x, [5, 50])
    jitter = float(max(0.0, (p50 - p5) / EXP_P50_MINUS_P5))
    rng = np.random.default_rng(seed)
    idx = [rng.integers(0, len(x), len(x)) for _ in range(boot)]
    draws = np.array([line(x[i], y[i]) for i in idx])
    tail = (1 - level) / 2 * 100
    (alo, blo), (ahi, bhi) = np.percentile(draws, [tail, 100 - tail], axis=0)
    req.value, req.lo, req.hi, req.status = float(a), float(alo), float(ahi), "fitted"
    spread = float(np.ptp(x))
    if spread < 64:
        tok.status, tok.why = "not identifiable", f"prompt lengths span {spread:.0f} tokens; needs 64 or more"
    else:
        tok.value, tok.lo, tok.hi, tok.status = float(b) * 1e3, float(blo) * 1e3, float(bhi) * 1e3, "fitted"
    return HostFit(req, tok, jitter)
