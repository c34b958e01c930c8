"""Topology: the deployment shape a trial tests and its compact string form (pure values).

String form (documented in the README)::

    1P4-5D4                       1 prefill worker at TP4, 5 decode workers at TP4 (disaggregated)
    6A4                           6 aggregated workers at TP4
    1P4-5D4@tau=0.7,omega=0.1     with router temperature τ and overlap weight ω
    ...@credit=1.5                overlap credit (Dynamo 1.3+ only)

Limits (README): at most ``MAX_WORKERS`` workers per pool, TP at most ``MAX_TP``, each router weight
at most ``ROUTER_MAX``; a key appears once.

``omega`` is the paper's ω: the weight on prefill load relative to decode load (Dynamo 0.9
``--kv-overlap-score-weight``, 1.0-1.2 ``--router-kv-overlap-score-weight``, 1.3+
``--router-prefill-load-scale``). One internal meaning, one name per Dynamo version.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace

from autotune.errors import InputError

MAX_WORKERS = 4096  # workers per pool: the largest cluster a profile may describe (cluster.nodes <= 4096)
MAX_TP = 1024  # tensor-parallel degree of one worker
ROUTER_MAX = 1000.0  # upper bound of τ, ω and credit: far beyond any useful setting, far from float overflow
CREDIT_MIN_VERSION = (1, 3)  # overlap credit exists from Dynamo 1.3 (dynamo.md §2)


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
            if v > ROUTER_MAX:
                raise InputError(f"router {name} must be at most {ROUTER_MAX:g}, got {v!r}")

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


_SHAPE = re.compile(
    r"^(?:(?P<np>[0-9]+)P(?P<tp_p>[0-9]+)-(?P<nd>[0-9]+)D(?P<tp_d>[0-9]+)|(?P<na>[0-9]+)A(?P<tp_a>[0-9]+))$", re.ASCII
)
_ROUTER_KEYS = {"tau": "temperature", "omega": "overlap_weight", "credit": "overlap_credit"}


def shorten(text: str, limit: int = 60) -> str:
    """``repr`` of user text for an error line, cut to ``limit`` characters (a 10,000-digit count stays one line)."""
    return repr(text) if len(text) <= limit else repr(text[: limit - 3]) + "..."


def parse_topology(text: str, flag: str = "--topology") -> Topology:
    """Parse the compact form; errors name the flag and the offending part."""
    shape, _, router_part = text.strip().partition("@")
    m = _SHAPE.match(shape.strip())
    if not m:
        raise InputError(
            f"{flag}: cannot parse {shorten(text)}: expected e.g. 1P4-5D4 or 6A4, optionally @tau=0.7,omega=1"
        )
    kw: dict[str, float] = {}
    if router_part:
        for item in router_part.split(","):
            key, eq, val = item.partition("=")
            key = key.strip()
            if not eq or key not in _ROUTER_KEYS:
                raise InputError(
                    f"{flag}: unknown router setting {shorten(item)} in {shorten(text)} (use tau=, omega=, credit=)"
                )
            if _ROUTER_KEYS[key] in kw:
                raise InputError(f"{flag}: {key} is given twice in {shorten(text)}")
            try:
                if not val.isascii() or "_" in val:  # float() also reads '1_0' and non-ASCII digits
                    raise ValueError
                kw[_ROUTER_KEYS[key]] = float(val)
            except ValueError:
                raise InputError(f"{flag}: {key} must be a number, got {shorten(val)}") from None
    try:
        router = RouterSettings(**kw)
    except InputError as exc:
        raise InputError(f"{flag}: {exc}") from None
    names = {
        "na": "aggregated workers",
        "tp_a": "TP",
        "np": "prefill workers",
        "tp_p": "prefill TP",
        "nd": "decode workers",
        "tp_d": "decode TP",
    }
    g: dict[str, int] = {}
    for k, v in m.groupdict().items():
        if v is None:
            continue
        limit = MAX_TP if k.startswith("tp") else MAX_WORKERS
        # bound the digits before int(): Python refuses to convert strings of more than 4300 digits
        if len(v.lstrip("0")) > len(str(limit)) or int(v) > limit:
            raise InputError(f"{flag}: {names[k]} must be at most {limit} in {shorten(text)}")
        if int(v) < 1:
            raise InputError(f"{flag}: {names[k]} must be at least 1 in {shorten(text)}")
        g[k] = int(v)
    if "na" in g:
        return Topology(agg_workers=g["na"], agg_tp=g["tp_a"], router=router)
    return Topology(g["np"], g["tp_p"], g["nd"], g["tp_d"], router=router)


def check_router_version(router: RouterSettings, version: tuple[int, int], where: str) -> None:
    """Refuse router settings the profile's Dynamo version does not have (every command calls this,
    through ``autotune.profile.profile_topology``, so ``simulate`` accepts exactly what ``dgd`` renders)."""
    if router.overlap_credit != 1.0 and version < CREDIT_MIN_VERSION:
        raise InputError(
            f"{where}: credit={_num(router.overlap_credit)} needs Dynamo 1.3 or newer "
            f"(the profile's dynamo.version is {version[0]}.{version[1]})"
        )
