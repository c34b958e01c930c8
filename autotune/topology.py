"""Topology: the deployment shape a trial tests and its compact string form (pure values).

String form (documented in the README)::

    1P4-5D4                       1 prefill worker at TP4, 5 decode workers at TP4 (disaggregated)
    6A4                           6 aggregated workers at TP4
    1P4-5D4@tau=0.7,omega=0.1     with router temperature τ and overlap weight ω
    ...@credit=1.5                overlap credit (Dynamo 1.3+ only)

``omega`` is the paper's ω: the weight on prefill load relative to decode load (Dynamo 0.9
``--kv-overlap-score-weight``, 1.0-1.2 ``--router-kv-overlap-score-weight``, 1.3+
``--router-prefill-load-scale``). One internal meaning, one name per Dynamo version.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace

from autotune.errors import InputError


@dataclass(frozen=True)
class RouterSettings:
    """KV-router weights, in the internal (version-free) meaning."""

    temperature: float = 0.0  # τ: 0 = argmin; >0 = softmax sampling over normalised logits
    overlap_weight: float = 1.0  # ω: prefill-load scale; 0 = ignore cache and prefill load
    overlap_credit: float = 1.0  # blocks of credit per overlapping block (1.3+); ω=0 forces 0

    def __post_init__(self) -> None:
        for name in ("temperature", "overlap_weight", "overlap_credit"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise InputError(f"router {name} must be a finite number >= 0, got {v!r}")

    @property
    def effective_credit(self) -> float:
        return 0.0 if self.overlap_weight == 0 else self.overlap_credit

    def to_string(self) -> str:
        parts = [f"tau={_num(self.temperature)}", f"omega={_num(self.overlap_weight)}"]
        if self.overlap_credit != 1.0:
            parts.append(f"credit={_num(self.overlap_credit)}")
        return ",".join(parts)


def _num(v: float) -> str:
    """Shortest text that parses back to the same float (``:g`` would round 0.1234567 to 0.123457)."""
    text = repr(float(v))
    return text[:-2] if text.endswith(".0") else text


DEFAULT_ROUTER = RouterSettings()  # Dynamo's defaults: τ 0, ω 1, credit 1 (dynamo.md §2)


@dataclass(frozen=True)
class Topology:
    prefill_workers: int = 0
    prefill_tp: int = 1
    decode_workers: int = 0
    decode_tp: int = 1
    agg_workers: int = 0
    agg_tp: int = 1
    router: RouterSettings = field(default_factory=RouterSettings)

    @property
    def disaggregated(self) -> bool:
        return self.prefill_workers > 0

    @property
    def gpus(self) -> int:
        return (
            self.prefill_workers * self.prefill_tp
            + self.decode_workers * self.decode_tp
            + self.agg_workers * self.agg_tp
        )

    def worker_tps(self) -> list[tuple[str, int]]:
        """``(role, tp)`` per worker, prefill first: the order every backend numbers workers in."""
        return (
            [("prefill", self.prefill_tp)] * self.prefill_workers
            + [("decode", self.decode_tp)] * self.decode_workers
            + [("agg", self.agg_tp)] * self.agg_workers
        )

    def shape(self) -> str:
        if self.disaggregated:
            return f"{self.prefill_workers}P{self.prefill_tp}-{self.decode_workers}D{self.decode_tp}"
        return f"{self.agg_workers}A{self.agg_tp}"

    def to_string(self) -> str:
        return f"{self.shape()}@{self.router.to_string()}"

    def __str__(self) -> str:
        return self.to_string()

    def with_router(self, router: RouterSettings) -> Topology:
        return replace(self, router=router)


_SHAPE = re.compile(r"^(?:(?P<np>\d+)P(?P<tp_p>\d+)-(?P<nd>\d+)D(?P<tp_d>\d+)|(?P<na>\d+)A(?P<tp_a>\d+))$")
_ROUTER_KEYS = {"tau": "temperature", "omega": "overlap_weight", "credit": "overlap_credit"}


def parse_topology(text: str, flag: str = "--topology") -> Topology:
    """Parse the compact form; errors name the flag and the offending part."""
    shape, _, router_part = text.strip().partition("@")
    m = _SHAPE.match(shape.strip())
    if not m:
        raise InputError(f"{flag}: cannot parse {text!r}: expected e.g. 1P4-5D4 or 6A4, optionally @tau=0.7,omega=1")
    kw: dict[str, float] = {}
    if router_part:
        for item in router_part.split(","):
            key, eq, val = item.partition("=")
            key = key.strip()
            if not eq or key not in _ROUTER_KEYS:
                raise InputError(f"{flag}: unknown router setting {item!r} in {text!r} (use tau=, omega=, credit=)")
            try:
                kw[_ROUTER_KEYS[key]] = float(val)
            except ValueError:
                raise InputError(f"{flag}: {key} must be a number, got {val!r}") from None
    try:
        router = RouterSettings(**kw)
    except InputError as exc:
        raise InputError(f"{flag}: {exc}") from None
    g = {k: int(v) for k, v in m.groupdict().items() if v is not None}
    if "na" in g:
        topo = Topology(agg_workers=g["na"], agg_tp=g["tp_a"], router=router)
        counts = [("aggregated workers", g["na"]), ("TP", g["tp_a"])]
    else:
        topo = Topology(g["np"], g["tp_p"], g["nd"], g["tp_d"], router=router)
        counts = [
            ("prefill workers", g["np"]),
            ("prefill TP", g["tp_p"]),
            ("decode workers", g["nd"]),
            ("decode TP", g["tp_d"]),
        ]
    for what, n in counts:
        if n < 1:
            raise InputError(f"{flag}: {what} must be at least 1 in {text!r}")
    return topo
