"""Re-run the search on the simulator with the deployed graph as the baseline to beat.

The deployed topology becomes the study's first baseline, so the study's own paired comparison
(recommended vs baseline, tok/s per GPU, with its interval) answers "is a better topology available,
and by how much". An improvement counts only when the recommendation differs from what is deployed
and the whole interval of the ratio clears ``1 + min_gain``: a gain inside the noise is no gain.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from autotune.profile import Profile
from autotune.results.directory import check_results_dir, results_lock
from autotune.search.config import StudyConfig
from autotune.topology import Topology, parse_topology


@dataclass(frozen=True)
class RetuneResult:
    results_dir: str
    recommended: str
    deployed: str
    gain: float  # tok/s per GPU of the recommendation over the deployed graph's, simulated on one profile
    gain_lo: float
    gain_hi: float
    improvement_available: bool
    verdict: str

    @property
    def gain_text(self) -> str:
        return f"{self.gain:.2f}× tok/s per GPU, 95 % CI {self.gain_lo:.2f}–{self.gain_hi:.2f}×"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "gain_text": self.gain_text}


def with_deployed_baseline(profile: Profile, deployed: Topology) -> Profile:
    text = str(deployed)
    rest = [b for b in profile.baselines if b != text]
    return profile.model_copy(update={"baselines": [text, *rest]})


def retune(
    profile: Profile, deployed: Topology, results_dir: Path, *, trials: int, seed: int, min_gain: float
) -> RetuneResult:
    from autotune import pipeline  # the whole study machinery, only when a retune is due

    prof = with_deployed_baseline(profile, deployed)
    cfg = StudyConfig(results_dir=results_dir, trials=trials, backend="sim", seed=seed)
    check_results_dir(results_dir)
    with results_lock(results_dir):
        summary = pipeline.run(prof, cfg, None, {"backend": "sim", "purpose": "drift retune"}, True)
    rec = str(summary.get("recommended"))
    gain = float(summary.get("tok_s_per_gpu_vs_baseline") or math.nan)
    lo, hi = (summary.get("tok_s_per_gpu_ratio_ci") or [math.nan, math.nan])[:2]
    same = parse_topology(rec) == deployed
    better = not same and math.isfinite(float(lo)) and float(lo) > 1 + min_gain
    if same:
        verdict = "the deployed topology is still the recommendation"
    elif better:
        verdict = f"{rec} is better than the deployed {deployed}"
    else:
        verdict = f"{rec} is not better than the deployed {deployed} by more than {min_gain:.0%} beyond the noise"
    return RetuneResult(str(results_dir), rec, str(deployed), gain, float(lo), float(hi), better, verdict)
