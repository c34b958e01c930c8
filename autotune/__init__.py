"""autotune: cluster autotuner for NVIDIA Dynamo disaggregated serving."""

__version__ = "0.1.0"
