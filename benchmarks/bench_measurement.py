"""Measurement benchmark: run-length independence and interval coverage of a point's TTFT P99.

For each topology and concurrency, the truth is the mean TTFT P99 of 20,000-request reference runs
(adaptive length off) over several seeds: a closed loop with fixed request lengths can hold slow modes
(clients clumped in step with the engines) for thousands of requests, so one 20,000-request run of one
seed is itself off the long-run value by up to a few per cent (the spread is printed); then the default settings (adaptive length, starting from -n) are run for several -n and
seeds, and the report says whether each 95 % interval contains the reference.

    python benchmarks/bench_measurement.py [--quick]

Prints a table per check and the coverage count (issue bar: >= 17 of 20 seeds).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autotune.backends.sim import SimBackend  # noqa: E402
from autotune.metrics import summarize  # noqa: E402
from autotune.profile import load_profile  # noqa: E402
from autotune.topology import parse_topology  # noqa: E402

REFERENCE_N = 20_000
REFERENCE_SEEDS = range(100, 105)


def reference(profile, topo: str, c: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Mean and relative sample SD of TTFT P99 over the reference seeds."""
    vals = [point(profile, topo, c, REFERENCE_N, seed=s, adaptive=False)[0].ttft_p99_ms for s in REFERENCE_SEEDS]
    mean = sum(vals) / len(vals)
    sd = (sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5
    return mean, sd / mean


def point(profile, topo: str, c: int, n: int, seed: int, adaptive: bool = True):  # type: ignore[no-untyped-def]
    prof = profile.model_copy(update={"measurement": profile.measurement.model_copy(update={"adaptive": adaptive})})
    run = SimBackend().deploy(prof, parse_topology(topo)).run_point(c, seed=seed, requests=n)
    return summarize(run, level=prof.measurement.ci_level), run.meta


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer shapes and seeds (a smoke run)")
    args = ap.parse_args()
    prof = load_profile("paper-70b-1p5d")
    shapes = ["1P4-5D4"] if args.quick else ["1P4-5D4", "1P4-2D4", "2P4-2D4"]
    loads = [128] if args.quick else [32, 128, 256]
    lengths = [200, 1000, 4000] if args.quick else [200, 500, 1000, 2000, 4000]
    t0 = time.monotonic()
    print("## Run-length independence: TTFT P99 (ms) and its 95 % interval vs the 20,000-request reference\n")
    print(
        f"(reference: mean over {len(REFERENCE_SEEDS)} seeds of {REFERENCE_N}-request runs, seed-to-seed SD in brackets)\n"
    )
    print("| topology | C | reference | -n | requests run | TTFT P99 [95 % CI] | contains reference |")
    print("|---|---|---|---|---|---|---|")
    inside = total = 0
    for topo in shapes:
        for c in loads:
            ref, ref_sd = reference(prof, topo, c)
            for n in lengths:
                m, meta = point(prof, topo, c, n, seed=prof.seed + 1)
                ok = m.ttft_p99_ms_lo <= ref <= m.ttft_p99_ms_hi
                inside += ok
                total += 1
                print(
                    f"| {topo} | {c} | {ref:.1f} (±{100 * ref_sd:.1f} %) | {n} | {meta.get('requests_run', n)} | "
                    f"{m.ttft_p99_ms:.1f} [{m.ttft_p99_ms_lo:.1f}, {m.ttft_p99_ms_hi:.1f}] | {'yes' if ok else 'NO'} |"
                )
    print(f"\n{inside}/{total} intervals contain their reference.\n")
    seeds = 5 if args.quick else 20
    topo, c = "1P4-5D4", 128
    ref, _ = reference(prof, topo, c)
    hits = 0
    widths = []
    for s in range(seeds):
        m, _ = point(prof, topo, c, prof.measurement.start_requests(c), seed=1000 + s)  # as the search starts
        hits += m.ttft_p99_ms_lo <= ref <= m.ttft_p99_ms_hi
        widths.append((m.ttft_p99_ms_hi - m.ttft_p99_ms_lo) / 2 / m.ttft_p99_ms)
    print(f"## Coverage: {topo} C={c}, reference TTFT P99 {ref:.2f} ms")
    print(
        f"{hits}/{seeds} seeds' 95 % intervals contain the reference (bar: >= 17/20); "
        f"median relative half-width {sorted(widths)[len(widths) // 2]:.3f}"
    )
    print(f"\n(wall time {time.monotonic() - t0:.0f} s)")


if __name__ == "__main__":
    main()
