"""The adaptive controller running against a live deployment (`autotune control`).

The regime logic is `autotune.controller.AdaptiveController`, the same class the simulator runs;
this package adds what a live loop needs: reading TTFT from the frontend's metrics, applying router
presets through an `Actuator`, and the safety rules around a switch.
"""
