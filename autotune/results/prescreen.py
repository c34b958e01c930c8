"""The prescreen section of ``report.md``: how well the simulator predicted what the live backend measured.

Read from ``prescreen.csv`` (written by ``autotune run --prescreen``), so ``autotune report`` re-renders it too.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

FILE = "prescreen.csv"
_FIGURES = (("tok_s_per_gpu", "tok/s/GPU"), ("ttft_p99_ms", "TTFT P99 ms"), ("poa_hat", "PoA-hat"))


def _f(v: float) -> str:
    return "-" if not math.isfinite(v) else (f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}")


def _pct(v: float) -> str:
    return "-" if not math.isfinite(v) else f"{100 * v:+.1f} %"


def prescreen_section(out: Path) -> str:
    """Markdown for ``out/prescreen.csv``, or '' when the study was not prescreened."""
    path = Path(out) / FILE
    if not path.exists():
        return ""
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError):
        return f"\n## Prescreen\n\n{FILE} is unreadable; nothing to show.\n"
    lines = [
        "",
        "## Prescreen (simulator-proposed, live-confirmed)",
        "",
        f"The simulator searched the space each round; only the configurations below ran live ({len(df)} trials).",
        "Predicted by the round's (recalibrated) simulator vs measured live; error = (predicted - measured) / measured.",
        "",
        "| round | trial | role | topology | " + " | ".join(f"{n} pred / meas (error)" for _, n in _FIGURES) + " |",
        "|" + "---|" * (4 + len(_FIGURES)),
    ]
    for r in df.to_dict("records"):
        cells = [
            f"{_f(float(r[f'{k}_predicted']))} / {_f(float(r[f'{k}_measured']))} ({_pct(float(r[f'{k}_rel_error']))})"
            for k, _ in _FIGURES
        ]
        lines.append(f"| {r['round']} | {r['trial']} | {r['role']} | {r['topology']} | " + " | ".join(cells) + " |")
    if len(df):
        for key, name in _FIGURES:
            err = df[f"{key}_rel_error"].abs()
            if err.notna().any():
                lines.append(
                    f"\nMedian |error| of {name}: {100 * float(err.median()):.1f} % over {int(err.notna().sum())} trials."
                )
    return "\n".join(lines) + "\n"
