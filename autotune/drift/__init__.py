"""Drift: is the deployed graph still what the last study predicted, and is a better one available?

A scheduled retuning job should not redo the study every night. `autotune drift` measures the
deployed graph without redeploying it (a short probe burst at the study's operating point), holds the
figures against the study's prediction and the last drift run, looks at the traffic, and re-runs the
search on the simulator only when something moved beyond the threshold *and* outside the noise.
"""
