"""The building blocks every profile section shares: limits, constrained number types, the strict base model.

Kept apart from the sections so the section modules (``profile_schema``, ``profile_serving``) can share
them without importing each other.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from autotune.topology import ROUTER_MAX

# Upper bounds on counts that size arrays, loops and the search space (README "Limits"): far beyond any
# real deployment, low enough that a typo (an extra three zeros) is an error and not a MemoryError.
MAX_NODES = 4096
MAX_GPUS_PER_NODE = 72  # GB200 NVL72
MAX_TOKENS = 16_777_216  # 16 Mi tokens: request lengths, context windows, batch budgets
MAX_CONCURRENCY = 100_000
MAX_REQUESTS = 1_000_000  # requests per load point
MAX_TRIALS = 100_000
SEED_MAX = 2**32 - 1  # numpy's seed limit: 0 <= seed < 2**32

Pos = Annotated[float, Field(gt=0)]
PosInt = Annotated[int, Field(gt=0)]
NonNeg = Annotated[float, Field(ge=0)]
Tokens = Annotated[int, Field(gt=0, le=MAX_TOKENS)]
Concurrency = Annotated[int, Field(gt=0, le=MAX_CONCURRENCY)]
Requests = Annotated[int, Field(gt=0, le=MAX_REQUESTS)]
RouterWeight = Annotated[float, Field(ge=0, le=ROUTER_MAX)]
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]
Dtype = Literal["fp4", "fp8", "bf16", "fp16"]
DTYPE_BYTES = {"fp4": 0.5, "fp8": 1.0, "bf16": 2.0, "fp16": 2.0}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
