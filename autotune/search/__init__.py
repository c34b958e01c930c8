"""The search: an Optuna study over topologies and router weights (ask-and-tell).

``space`` maps a trial to a topology, ``evaluate`` scores one topology on a backend, ``study``
drives the loop (storage, resume, parallelism, progress), ``select`` picks the recommendation.
"""
