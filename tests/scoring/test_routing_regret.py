"""The routing regret (today's PoA-hat before the measured estimator) on hand-solved cost matrices and sim logs."""

from __future__ import annotations

import numpy as np
import pytest

from autotune.perf.mocker import MockerTimer
from autotune.poa import routing_regret, window_costs
from autotune.records import DecisionLog


def test_optimal_routing_is_exactly_one() -> None:
    # two requests, two workers, one slot each is enough: r0 -> w1 (1), r1 -> w0 (2) is optimal
    cost = np.array([[[5.0, 9.0], [1.0, 4.0]], [[2.0, 6.0], [3.0, 7.0]]])
    act, opt = window_costs(cost, [1, 0])
    assert act == pytest.approx(3.0)
    assert opt == pytest.approx(3.0)
    assert act / opt == 1.0


def test_greedy_routing_priced_above_opt() -> None:
    # both requests went to w1: r0 in slot 0 (1), r1 in slot 1 (7) -> ACT 8; OPT 3 (hand-solved above)
    cost = np.array([[[5.0, 9.0], [1.0, 4.0]], [[2.0, 6.0], [3.0, 7.0]]])
    act, opt = window_costs(cost, [1, 1])
    assert act == pytest.approx(8.0)
    assert opt == pytest.approx(3.0)


def test_slots_replicated_when_window_exceeds_workers() -> None:
    # one worker, three requests: slot k costs own*(1+k). Arrival order puts the longest last;
    # OPT (rearrangement inequality) puts the longest first: 3*1 + 2*2 + 1*3 = 10 vs ACT 1 + 4 + 9 = 14
    own = np.array([1.0, 2.0, 3.0])
    cost = own[:, None, None] * (1 + np.arange(3))[None, None, :]
    act, opt = window_costs(cost, [0, 0, 0])
    assert act == pytest.approx(14.0)
    assert opt == pytest.approx(10.0)


def test_below_one_when_router_stacks_on_a_much_cheaper_worker() -> None:
    # worker 0 is cache-hot (cost 1 in slot 0, 2 in slot 1), worker 1 is cold and slow (10, 20).
    # The router sent both requests to worker 0: ACT = 1 + 2 = 3. OPT is a perfect matching for a
    # window of m = 2 requests: 1 + 10 = 11. PoA-hat = 3/11 < 1: the matching constraint binds.
    cost = np.array([[[1.0, 2.0], [10.0, 20.0]], [[1.0, 2.0], [10.0, 20.0]]])
    act, opt = window_costs(cost, [0, 0])
    assert act == pytest.approx(3.0)
    assert opt == pytest.approx(11.0)
    assert act / opt < 1


def test_ratio_of_sums_over_windows() -> None:
    log = DecisionLog("prefill", [0, 1])
    timers = [MockerTimer(), MockerTimer()]
    # 4 decisions, window 2: identical requests, no cache, idle workers -> both windows are optimal
    # when the router alternates, and priced above OPT when it stacks
    for i, c in enumerate([0, 1, 0, 0]):
        log.time_s.append(float(i))
        log.request_id.append(i)
        log.chosen.append(c)
        log.input_tokens.append(512)
        log.output_tokens.append(8)
        log.overlap_blocks.append((0, 0))
        log.active_prefill_tokens.append((0, 0))
        log.active_blocks.append((0, 0))
        log.active_requests.append((0, 0))
        log.logits.append((0.0, 0.0))
    res = routing_regret({"prefill": log}, timers, 64, window=2)
    t = MockerTimer().step_s(512, 0.0, 0, 0, 0.0)
    # window 1: ACT = OPT = 2t; window 2 stacked: ACT = t*1 + t*2 = 3t, OPT = 2t
    assert res.act_s == pytest.approx(5 * t)
    assert res.opt_s == pytest.approx(4 * t)
    assert res.value == pytest.approx(5 / 4)
    assert res.windows == 2
    assert res.window_median == pytest.approx((1.0 + 1.5) / 2)


def test_sim_logs_give_finite_poa(paper_profile) -> None:
    from autotune.backends.sim import SimBackend
    from autotune.topology import parse_topology

    topo = parse_topology("4A4@tau=1,omega=1")
    dep = SimBackend().deploy(paper_profile, topo)
    run = dep.run_point(64, seed=3, requests=600)
    timers = [dep.perf.timer(tp) for _, tp in topo.worker_tps()]
    sampled = routing_regret(run.decisions, timers, 64, time_range=run.window_s)
    dep.set_router(parse_topology("4A4@tau=0,omega=1").router)
    run2 = dep.run_point(64, seed=3, requests=600)
    greedy = routing_regret(run2.decisions, timers, 64, time_range=run2.window_s)
    assert np.isfinite(sampled.value) and np.isfinite(greedy.value)
    # softmax sampling at τ=1 spreads requests without regard to load: priced above Dynamo's argmin
    assert sampled.value > greedy.value >= 1.0 - 1e-9
    assert sampled.windows > 0 and sampled.window_p90 >= sampled.window_median


def test_memoised_assignment_answers_as_a_fresh_solve() -> None:
    # the estimators share one memo per stage: repeated matrices answer from it, and the same six values
    # as 3 requests x 2 slots and as 2 requests x 3 workers are different keys (answers 5 and 6)
    from autotune.poa.windows import optimal_cost

    rng = np.random.default_rng(3)
    memo: dict[bytes, float] = {}
    mats = [rng.uniform(1, 10, (n, m, n)) for n, m in [(2, 2), (3, 3), (2, 2), (4, 2)] for _ in range(3)]
    mats += [mats[0], mats[4]]  # repeats answered from the memo
    for cost in mats:
        assert optimal_cost(cost, memo) == optimal_cost(cost)
    assert len(memo) == 12
    flat = np.arange(1.0, 7.0)
    a, b = flat.reshape(3, 1, 2), flat.reshape(2, 3, 1)
    assert (optimal_cost(a, memo), optimal_cost(b, memo)) == (5.0, 6.0)
