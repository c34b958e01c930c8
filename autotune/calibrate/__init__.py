"""``autotune calibrate``: fit the simulator's deployment constants from the per-request records of live points.

``points`` reads and writes the records, ``states`` reconstructs what each worker was doing around each
request, ``fit`` fits the constants (``scipy.optimize.least_squares``, bootstrap intervals), ``heldout``
predicts held-out points before and after, ``report`` writes the overlay and the report (docs/calibrate.md).
"""
