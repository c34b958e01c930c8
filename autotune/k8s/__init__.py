"""Kubernetes side of autotune: render DGDs, apply/watch/delete them, clean up leftovers.

Constants shared by every module here live in this file so labels, names and the DGD
coordinates are spelled exactly once.
"""

from __future__ import annotations

GROUP = "nvidia.com"
# Dynamo's CRD serves both; v1alpha1 is deprecated from Dynamo 1.5, where v1beta1 becomes the storage
# version (../dynamo/crd-v1beta1/README.md, "Version skew"). The profile's dynamo.version picks one.
V1ALPHA1, V1BETA1 = "v1alpha1", "v1beta1"
API_VERSIONS = (V1ALPHA1, V1BETA1)
V1BETA1_SINCE = (1, 5)  # Dynamo version from which graphs are rendered as v1beta1
PLURAL = "dynamographdeployments"
KIND = "DynamoGraphDeployment"
FIELD_MANAGER = "autotune"

# Labels select (must be valid label values); annotations carry the unabridged strings.
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_STUDY = "autotune.dev/study"
LABEL_TRIAL = "autotune.dev/trial"
ANN_STUDY = "autotune.dev/study-name"
ANN_TRIAL = "autotune.dev/trial-id"
ANN_TOPOLOGY = "autotune.dev/topology"
ANN_PROFILE = "autotune.dev/profile-digest"
MANAGED_BY = "autotune"

# Set by Dynamo's operator on every pod of a graph (kubernetes.md §2).
POD_LABEL_DGD = "nvidia.com/dynamo-graph-deployment-name"


def study_selector(study_label: str | None = None) -> str:
    """Label selector for everything autotune made, optionally narrowed to one study."""
    sel = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
    return f"{sel},{LABEL_STUDY}={study_label}" if study_label else sel
