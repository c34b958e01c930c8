"""Built-in catalogs of GPUs, models and framework overheads (data files beside this module).

Profiles name catalog entries (``gpu: B200``) or extend them (``gpu: {base: B200, hbm_gb: 170}``);
keeping the figures in YAML with their sources means a reviewer can check every number.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml

KINDS = ("gpus", "models", "frameworks")


@cache
def load(kind: str) -> dict[str, dict[str, Any]]:
    """Return one catalog as ``{name: fields}``; cached because it never changes at run time."""
    if kind not in KINDS:
        raise KeyError(kind)
    text = resources.files(__package__).joinpath(f"{kind}.yaml").read_text()
    data = yaml.safe_load(text)
    return {str(k): dict(v) for k, v in data.items()}


def names(kind: str) -> list[str]:
    return sorted(load(kind))
