"""Decision benchmark: is the recommendation on a profile the same across study seeds?

Runs the whole study (``autotune plan``) once per seed into a temporary directory and prints, per
seed, the recommended topology, its objectives with their 95 % intervals, the front size, the
trials of the polish pass, and the study's wall time and CPU time (user + system, all its processes).

    python benchmarks/bench_decisions.py [-p paper-70b-1p5d] [--seeds 5] [-n TRIALS]

The issue bar: the same shape every time (or an explanation of why not).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-p", "--profile", default="paper-70b-1p5d")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("-n", "--trials", type=int, default=None, help="trials per study (default: the profile's)")
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    shapes: Counter[str] = Counter()
    print("| seed | recommended | tok/s/GPU [95 % CI] | PoA-hat [95 % CI] | front | polished | wall s | CPU s |")
    print("|---|---|---|---|---|---|---|---|")
    for seed in range(args.seeds):
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "autotune", "plan", "-p", args.profile, "--seed", str(seed), "-r", tmp]
            cmd += ["-o", "json"] + (["-n", str(args.trials)] if args.trials else [])
            t0, cpu0 = time.monotonic(), _children_cpu_s()
            r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
            wall, cpu = time.monotonic() - t0, _children_cpu_s() - cpu0
            if r.returncode != 0:
                print(f"| {seed} | failed: {r.stderr.strip().splitlines()[-1]} | | | | | {wall:.0f} | {cpu:.0f} |")
                continue
            s = json.loads(r.stdout)
            front = len(Path(tmp, "pareto.csv").read_text().strip().splitlines()) - 1
            polished = r.stderr.count("not tried by the search")
            shape = str(s["recommended"]).split("@")[0]
            shapes[shape] += 1
            tput = s.get("tok_s_per_gpu_ci") or [None, None]
            poa = s.get("poa_hat_ci") or [None, None]
            print(
                f"| {seed} | {s['recommended']} | {s['tok_s_per_gpu']:.0f} [{_f(tput[0])}, {_f(tput[1])}] | "
                f"{s['poa_hat']:.3f} [{_f(poa[0], 3)}, {_f(poa[1], 3)}] | {front} | {polished} | {wall:.0f} | "
                f"{cpu:.0f} |"
            )
    top, count = shapes.most_common(1)[0] if shapes else ("-", 0)
    print(f"\nSame shape in {count}/{args.seeds} seeds ({top}); shapes: {dict(shapes)}")


def _children_cpu_s() -> float:
    """User + system CPU of the finished child processes (the study and its worker processes)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _f(v: float | None, nd: int = 0) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


if __name__ == "__main__":
    main()
