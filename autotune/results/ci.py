"""How a figure and its confidence interval are written, and what a ratio of two of them says.

One form everywhere a person reads a figure (``autotune simulate`` tables, ``report.md``):
``value [lo, hi]``, the bounds at the value's precision; a figure without an interval (too few
batches, docs/measurement.md) is written alone. Files keep the raw numbers (``<name>_lo``/``_hi``,
``<name>_ci: [lo, hi]``).
"""

from __future__ import annotations

import math
from typing import Any

from autotune.intervals import Interval, ratio_of_intervals


def _finite(*xs: Any) -> bool:
    return all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in xs)


def decimals(v: float) -> int:
    """Decimals that show ``v`` to about three significant figures (none at 1,000 and above, one from 10)."""
    a = abs(float(f"{v:.3g}"))  # as rounded: 0.99996 is written 1.00, like 1.0
    if a == 0:
        return 1
    if a >= 1000:
        return 0
    if a >= 10:
        return 1
    return max(0, 2 - math.floor(math.log10(a)))


def fmt_num(v: Any, nd: int | None = None) -> str:
    """A figure for a person: ``-`` when missing, thousands separated, about three significant figures."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int) and nd is None:
        return f"{v:,}"
    d = decimals(v) if nd is None else nd
    return f"{v:,.{d}f}"


def fmt_interval(value: Any, lo: Any, hi: Any, sep: str = " ") -> str:
    """``value [lo, hi]`` with the bounds at the value's precision; the value alone without an interval."""
    if not _finite(value):
        return "-"
    if not _finite(lo, hi):
        return fmt_num(value)
    d = decimals(float(value))
    return f"{fmt_num(value, d)}{sep}[{fmt_num(lo, d)}, {fmt_num(hi, d)}]"


def ci_pair(iv: Interval) -> list[float] | None:
    """``[lo, hi]`` for a file, or None when the figure has no interval."""
    return [iv.lo, iv.hi] if _finite(iv.lo, iv.hi) else None


def excludes_one(iv: Interval) -> bool:
    """A ratio differs from 1 beyond the noise: its whole interval lies on one side of 1."""
    return _finite(iv.lo, iv.hi) and (iv.lo > 1 or iv.hi < 1)


def ratio(a: Interval, b: Interval) -> dict[str, Any]:
    """``a / b`` with its interval (delta method) and whether it differs from 1 beyond the noise."""
    r = ratio_of_intervals(a, b)
    return {
        "ratio": r.value if _finite(r.value) else None,
        "ci": ci_pair(r),
        "significant": excludes_one(r),
    }


def level_text(level: float) -> str:
    """``95 %`` for 0.95."""
    return f"{level * 100:g} %"
