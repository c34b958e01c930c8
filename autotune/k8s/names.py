"""Names and label values of a trial's graph, shared by both DGD apiVersions and the cluster chores."""

from __future__ import annotations

import hashlib
import re

# Grove-backed resources break above ~45 characters (dynamo #8480, #8566); children append
# "-<service>-<hash>" to the graph name, so the graph name itself stays well below that.
MAX_NAME = 40
# Worker and frontend names: v1alpha1 service keys, v1beta1 component names (dynamo.md §1).
FRONTEND = "Frontend"
SERVICE_PREFILL, SERVICE_DECODE, SERVICE_AGG = "prefill", "decode", "worker"


def slug(text: str, limit: int) -> str:
    """Lower-case DNS-1123 label fragment of at most ``limit`` characters (may be empty)."""
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s[:limit].rstrip("-")


def label_value(text: str) -> str:
    """A valid label value (<= 63 chars, alnum ends); long values get a hash suffix."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")
    if len(s) <= 63:
        return s
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{s[:54].rstrip('-._')}-{digest}"


def dgd_name(study: str, trial_id: str) -> str:
    """Unique, stable, short graph name: ``at-<study>-<hash>-<trial>``.

    Stable so a resumed study finds its own leftovers; the hash keeps two studies whose names
    share a prefix (or two trial ids that slug alike) apart.
    """
    digest = hashlib.sha256(f"{study}\0{trial_id}".encode()).hexdigest()[:6]
    trial = slug(trial_id, 10) or "t"
    study_part = slug(study, MAX_NAME - len("at--") - len(digest) - len(trial) - 2) or "s"
    name = f"at-{study_part}-{digest}-{trial}"
    assert len(name) <= MAX_NAME, name
    return name


def frontend_service_name(name: str) -> str:
    """The Service Dynamo's operator creates for the Frontend (dynamo.md §1)."""
    return f"{name}-{FRONTEND.lower()}"
