"""Price-of-anarchy estimators of a load point's routing (docs/poa-hat.md).

* ``poa_hat`` (``measured``): the headline, as the paper defines it — measured latency of the
  realised routing over the Hungarian optimum on frozen no-queue latencies. Queueing counts, so it
  grows from a few to hundreds as the prefill capacity is exhausted.
* ``routing_regret`` (``regret``): the realised assignment and the optimum priced on the same frozen
  cost matrix — the routing choice alone, ≈ 1 (exactly 1 with one candidate worker).

Both share the windowing, the Hungarian optimum and the aggregation (``windows``).
"""

from autotune.poa.measured import poa_hat
from autotune.poa.regret import routing_regret
from autotune.poa.windows import PoaResult, window_costs

__all__ = ["PoaResult", "poa_hat", "routing_regret", "window_costs"]
