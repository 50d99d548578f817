"""The ``--jobs auto`` controller as a pure unit, on synthetic latency / throughput traces.

Each trace is a model of the path: for ``c`` requests in flight it gives the answers per second and
their latency. A link-bound path (far away) answers ``c / rtt`` per second at a flat ``rtt`` until the
registries' capacity, after which extra requests only queue (latency ``c / capacity``), as Little's law
says; a loopback path is at capacity from the start."""

from __future__ import annotations

import pytest

from ocitransport.transport.autotune import AUTO_CEILING, AUTO_START, AutoPolicy, ConcurrencyController


def far(rtt: float, capacity: float):
    def model(c: int) -> tuple[float, float]:
        throughput = min(c / rtt, capacity)
        return throughput, c / throughput
    return model


def run(model, controller: ConcurrencyController, seconds: float = 30.0, *,
        throttle_above: int = 0) -> ConcurrencyController:
    """Feed ``controller`` the answers ``model`` gives for its limit, for ``seconds`` of simulated time
    (bounded: at most 200,000 answers)."""
    t = 0.0
    for _ in range(200_000):
        if t >= seconds:
            break
        throughput, latency = model(controller.limit)
        t += 1.0 / throughput
        controller.sample(t, latency, throttled=bool(throttle_above) and controller.limit > throttle_above)
    return controller


def best_fixed(model, limits=range(1, AUTO_CEILING + 1)) -> float:
    return max(model(c)[0] for c in limits)


@pytest.mark.parametrize("rtt", [0.0005, 0.02, 0.05, 0.1])
def test_ends_within_ten_percent_of_the_best_fixed_jobs(rtt: float) -> None:
    model = far(rtt, capacity=400.0)  # the registries answer at most 400 requests/s
    c = run(model, ConcurrencyController())
    assert model(c.limit)[0] >= 0.9 * best_fixed(model), (rtt, c.limit, c.rounds[-5:])
    assert c.peak <= AUTO_CEILING


def test_grows_from_the_start_while_latency_stays_flat() -> None:
    c = run(far(0.1, capacity=10_000.0), ConcurrencyController(), seconds=5.0)
    assert c.limit == AUTO_CEILING  # throughput never stopped growing: up to the ceiling, not beyond
    assert c.peak == AUTO_CEILING
    assert [r.next_limit for r in c.rounds[:2]] == [32, 64]  # doubling from 16 while nothing disappointed


def test_loopback_stays_where_it_started() -> None:
    # Registries' CPU is the bottleneck at 16: one probe at 32 shows no gain and doubled latency.
    model = far(0.002, capacity=16 / 0.002)
    c = run(model, ConcurrencyController(), seconds=5.0)
    assert c.limit == 16
    assert c.peak == 32


def test_a_lower_start_on_loopback_stays_there() -> None:
    # Started at 8 with the registries saturated at 8: one probe at 16 shows no gain and doubled latency.
    model = far(0.002, capacity=8 / 0.002)
    c = run(model, ConcurrencyController(AutoPolicy(initial=8)), seconds=5.0)
    assert c.limit == 8
    assert c.peak == 16


def test_a_throttle_cuts_and_holds() -> None:
    c = run(far(0.05, capacity=10_000.0), ConcurrencyController(), seconds=10.0, throttle_above=20)
    assert c.limit <= 20
    assert any(r.throttled for r in c.rounds)
    throttled = next(i for i, r in enumerate(c.rounds) if r.throttled)
    r = c.rounds[throttled]
    assert r.next_limit == max(1, r.limit // 2)
    # No growth for the hold rounds after the cut.
    assert [x.next_limit for x in c.rounds[throttled + 1:throttled + 3]] == [r.next_limit] * 2


def test_never_exceeds_its_ceiling_or_goes_below_its_floor() -> None:
    policy = AutoPolicy(initial=4, floor=2, ceiling=12)
    c = run(far(0.05, capacity=10_000.0), ConcurrencyController(policy), seconds=5.0)
    assert c.peak == 12
    c = run(far(0.05, capacity=10_000.0), ConcurrencyController(policy), seconds=5.0, throttle_above=1)
    assert c.limit == 2


def test_a_round_needs_enough_answers() -> None:
    c = ConcurrencyController()
    for i in range(7):
        assert not c.sample(1.0 + i, 0.05)
    assert c.rounds == []
    assert c.limit == AUTO_START


def test_bad_policy() -> None:
    with pytest.raises(ValueError, match="floor <= initial <= ceiling"):
        AutoPolicy(initial=100, ceiling=64)


def test_describe() -> None:
    assert ConcurrencyController().describe() == "auto: 16 (peak 16, ceiling 64)"


def test_rounds_the_limit_did_not_hold_back_are_not_judged() -> None:
    # A pipelined run 100 ms away: for its first second only 6 images are planned (fewer than the limit),
    # answers come no faster with more room, and most are the near destination's (planning's HEADs),
    # quick; then the plan has arrived and the path is link-bound up to 400 answers/s. Judged, those
    # early rounds would make the far answers look like queueing, and the limit would stop short.
    rtt, planned_by = 0.1, 1.0
    model = far(rtt, capacity=400.0)
    c = ConcurrencyController()
    t = 0.0
    for _ in range(200_000):
        if t >= 30.0:
            break
        early = t < planned_by
        in_flight = min(c.limit, 6) if early else c.limit
        throughput, latency = (in_flight / rtt, 0.2 * rtt) if early else model(c.limit)
        t += 1.0 / throughput
        c.sample(t, latency, limited=in_flight >= c.limit)
    assert model(c.limit)[0] >= 0.9 * best_fixed(model), (c.limit, c.rounds[:8])
    assert all(r.next_limit == r.limit for r in c.rounds if r.latency == 0.2 * rtt)  # not judged


def test_an_unlimited_round_still_backs_off_on_a_throttle() -> None:
    c = ConcurrencyController()
    for i in range(8):
        c.sample(1.0 + i * 0.01, 0.05, throttled=i == 7, limited=False)
    assert c.limit == AUTO_START // 2 and c.rounds[-1].throttled
