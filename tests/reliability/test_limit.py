"""The politeness layer (ocitransport.transport.limit): its arithmetic without I/O, then both faces for real."""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import threading
import time
from collections.abc import Callable

import pytest

import ocitransport
from ocitransport import transport
from ocitransport.messages import Request
from ocitransport.transport.limit import AIMDLimit, LimitPolicy, LocalLimits, RegistryLimit
from tests.servers.faults import FaultServer
from tests.servers.proxy import FaultProxy
from tests.servers.registry import RegistryServer

# ---------------------------------------------------------------------------------------------- arithmetic


def test_aimd_cuts_once_per_round_and_grows_back() -> None:
    limit = AIMDLimit(LimitPolicy(floor=2, ceiling=16))
    assert limit.slots == 16 and limit.generation == 0
    assert limit.throttled(0) is True
    assert limit.slots == 8 and limit.generation == 1
    # answers to requests admitted before the cut do not cut again
    assert limit.throttled(0) is False and limit.slots == 8
    assert limit.throttled(1) is True and limit.slots == 4
    for _ in range(10):
        limit.throttled(limit.generation)
    assert limit.slots == 2 and limit.value == 2.0 and limit.lowest == 2.0  # the floor holds
    # additive increase: about one slot per round of successes
    for _ in range(2):
        limit.succeeded()
    assert limit.slots == 2 and 2.85 < limit.value < 3.0
    for _ in range(3):
        limit.succeeded()
    assert limit.slots == 3
    for _ in range(1000):
        limit.succeeded()
    assert limit.value == 16.0  # the ceiling holds


def test_policy_is_validated_and_initial_is_clamped() -> None:
    with pytest.raises(ValueError):
        LimitPolicy(floor=0)
    with pytest.raises(ValueError):
        LimitPolicy(floor=4, ceiling=2)
    with pytest.raises(ValueError):
        LimitPolicy(decrease=1.0)
    assert AIMDLimit(LimitPolicy(floor=2, ceiling=8, initial=100)).slots == 8
    assert AIMDLimit(LimitPolicy(floor=2, ceiling=8, initial=1)).slots == 2


def test_queued_requests_get_slots_in_order() -> None:
    state = RegistryLimit(LimitPolicy(floor=1, ceiling=2))
    a, b = state.admit("r", 0.0), state.admit("r", 0.0)
    c, d = state.admit("r", 0.0), state.admit("r", 0.0)
    assert (a.granted, b.granted, c.granted, d.granted) == (True, True, False, False)
    assert state.in_flight == 2 and list(state.waiting) == [c, d]
    assert state.finish(a, 1.0, status=200) == [c]
    assert c.granted and state.in_flight == 2
    # a throttled answer halves the limit: b's slot is not handed over
    assert state.finish(b, 1.0, status=429) == []
    assert state.limit.slots == 1 and state.in_flight == 1 and state.cuts == 1
    # c got its slot before the cut: its 503 belongs to the round that was already cut
    assert c.generation == 0
    assert state.finish(c, 1.0, status=503) == [d]
    assert state.limit.slots == 1 and state.cuts == 1 and state.throttle_events == 2
    assert d.generation == 1  # handed its slot after the cut
    # a ticket frees its slot once
    assert state.finish(d, 1.0, status=None) == [] and state.in_flight == 0
    assert state.finish(d, 1.0, status=None) == [] and state.in_flight == 0


def test_requests_without_a_slot_are_never_queued() -> None:
    state = RegistryLimit(LimitPolicy(floor=1, ceiling=1))
    held = state.admit("r", 0.0)
    free = state.admit("r", 0.0, slot=False)
    assert held.granted and free.granted and not free.slot and state.in_flight == 1
    state.finish(free, 0.5, status=200)
    assert state.in_flight == 1


def test_pauses_extend_and_are_counted_once() -> None:
    state = RegistryLimit(LimitPolicy(max_pause=30.0))
    ticket = state.admit("r", 0.0)
    state.finish(ticket, 10.0, status=429, retry_after=2.0)
    assert state.pause_left(10.0) == 2.0 and state.pause_left(11.5) == 0.5 and state.pause_left(12.5) == 0.0
    state.pause(11.0, 3.0)  # overlaps: [10, 12] then [11, 14] is 4 s of pause, not 5
    assert state.paused_until == 14.0 and state.paused_seconds == 4.0
    state.pause(12.0, 1.0)  # inside the current pause: nothing changes
    assert state.paused_until == 14.0 and state.paused_seconds == 4.0
    state.pause(20.0, 3600.0)  # capped
    assert state.paused_until == 50.0 and state.paused_seconds == 34.0
    # a 503 without Retry-After cuts but does not pause
    other = RegistryLimit(LimitPolicy())
    other.finish(other.admit("r", 0.0), 1.0, status=503)
    assert other.pause_left(1.0) == 0.0 and other.cuts == 1
    # other statuses neither pause nor cut, even with Retry-After
    other.finish(other.admit("r", 0.0), 1.0, status=500, retry_after=5.0)
    assert other.pause_left(1.0) == 0.0 and other.cuts == 1 and other.throttle_events == 1


def test_local_limits_hand_slots_through_futures_and_skip_cancelled_waiters() -> None:
    now = [100.0]
    limits = LocalLimits(LimitPolicy(floor=1, ceiling=1), clock=lambda: now[0])
    first = limits.admit("r.example")
    second, third = limits.admit("r.example"), limits.admit("r.example")
    assert first.granted and second.future is not None and third.future is not None
    assert second.future.cancel()  # the second waiter gave up (its task was cancelled)
    limits.finish(first, status=429, retry_after=1.5)
    assert third.future.result(timeout=0) is True and third.granted
    assert limits.registry("r.example").in_flight == 1
    assert limits.pause_left("r.example") == 1.5
    now[0] += 1.0
    assert limits.pause_left("r.example") == 0.5
    limits.withdraw(second)  # late withdrawal of a ticket that is not queued any more: harmless
    limits.finish(third, status=200)
    limits.record_wait(0.25)
    stats = limits.stats()
    assert stats.throttle_events == 1 and stats.cuts == 1 and stats.paused_seconds == 1.5
    assert stats.queued_seconds == 0.25 and stats.lowest_limit == 1 and stats.limits == {"r.example": 1}
    assert limits.registry("r.example").in_flight == 0 and not limits.registry("r.example").waiting


def test_new_limit_takes_a_backend_or_a_policy(registry: RegistryServer) -> None:
    with ocitransport.Client() as client:
        backend = LocalLimits()
        assert transport.new_limit(client, backend=backend).backend is backend
        assert isinstance(transport.new_limit(client, policy=LimitPolicy(ceiling=3)).backend, LocalLimits)
        with pytest.raises(ValueError):
            transport.new_limit(client, backend=backend, policy=LimitPolicy())


# ---------------------------------------------------------------------------------------------- for real


def _received_after(proxy: FaultProxy, when: float) -> list[float]:
    return [r.received_at for r in proxy.records if r.received_at > when]


def test_sync_face_pauses_every_request_after_a_retry_after(
        registry: RegistryServer, proxy_factory: Callable[..., FaultProxy]) -> None:
    proxy = proxy_factory(registry)
    url = f"{proxy.url}/v2/"
    with ocitransport.Client() as client:
        layer = transport.new_limit(client, policy=LimitPolicy(floor=1, ceiling=8))
        proxy.answer_status(429, retry_after="1")
        assert layer.round_trip(Request("GET", url)).status == 429
        (throttled,) = proxy.records
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            statuses = list(pool.map(lambda _: layer.round_trip(Request("GET", url)).status, range(12)))
    assert statuses == [200] * 12
    later = _received_after(proxy, throttled.answered_at)
    assert len(later) == 12
    assert min(later) - throttled.answered_at >= 0.95  # nobody went out before the Retry-After
    stats = layer.backend.stats()
    assert stats.throttle_events == 1 and stats.cuts == 1 and stats.lowest_limit == 4
    assert 0.9 <= stats.paused_seconds <= 1.1
    assert stats.queued_seconds >= 0.9 * 6  # the six threads each waited out the pause


def test_async_face_bounds_concurrency(fault_server: FaultServer) -> None:
    async def main() -> tuple[float, list[int]]:
        async with ocitransport.AsyncClient() as client:
            layer = transport.new_limit(client, policy=LimitPolicy(floor=1, ceiling=2))
            started = time.monotonic()
            responses = await asyncio.gather(*(
                layer.round_trip_async(Request("GET", fault_server.url_for("/delay?seconds=0.3")))
                for _ in range(6)))
            return time.monotonic() - started, [r.status for r in responses]

    elapsed, statuses = asyncio.run(asyncio.wait_for(main(), 30))
    assert statuses == [200] * 6
    assert elapsed >= 0.85  # two at a time: three rounds of 0.3 s (unbounded, it is one round)


def test_async_face_with_retry_waits_out_a_dated_retry_after(
        registry: RegistryServer, proxy_factory: Callable[..., FaultProxy]) -> None:
    proxy = proxy_factory(registry)
    proxy.retry_after = 2
    proxy.set_rates(status_429_date=1.0)
    proxy.match(path_contains="/tags/")
    backend = LocalLimits(LimitPolicy(floor=1, ceiling=4))

    async def main() -> list[int]:
        async with ocitransport.AsyncClient() as client:
            rt = transport.new_retry(transport.new_limit(client, backend=backend),
                                     backoff=transport.Backoff(duration=0.05, steps=2))
            first = await rt.round_trip_async(Request("GET", f"{proxy.url}/v2/x/tags/list"))
            proxy.set_rates()
            rest = await asyncio.gather(*(rt.round_trip_async(Request("GET", f"{proxy.url}/v2/"))
                                          for _ in range(5)))
            return [first.status] + [r.status for r in rest]

    statuses = asyncio.run(asyncio.wait_for(main(), 30))
    # the date has one-second resolution: each 429 paused between 1 and 2 seconds; retries gave up
    assert statuses[0] == 429 and statuses[1:] == [200] * 5
    records = proxy.records
    throttled = [r for r in records if r.status == 429]
    assert len(throttled) == 2
    for before, after in itertools.pairwise(records):
        if before.status == 429:
            assert after.received_at - before.answered_at >= 0.9
    stats = backend.stats()
    assert stats.throttle_events == 2 and stats.paused_seconds >= 1.9


def test_a_cancelled_waiter_gives_its_slot_back(fault_server: FaultServer) -> None:
    backend = LocalLimits(LimitPolicy(floor=1, ceiling=1))

    async def main() -> int:
        async with ocitransport.AsyncClient() as client:
            layer = transport.new_limit(client, backend=backend)
            slow = asyncio.ensure_future(layer.round_trip_async(
                Request("GET", fault_server.url_for("/delay?seconds=0.5"))))
            await asyncio.sleep(0.1)
            waiter = asyncio.ensure_future(layer.round_trip_async(Request("GET", fault_server.url_for("/echo"))))
            await asyncio.sleep(0.1)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            assert (await slow).status == 200
            return (await layer.round_trip_async(Request("GET", fault_server.url_for("/echo")))).status

    assert asyncio.run(asyncio.wait_for(main(), 30)) == 200
    state = backend.registry(fault_server.host)
    assert state.in_flight == 0 and not state.waiting
    assert [r.path for r in fault_server.requests] == ["/delay", "/echo"]


def test_threads_share_one_limit(fault_server: FaultServer) -> None:
    backend = LocalLimits(LimitPolicy(floor=1, ceiling=2))
    peak = 0
    lock = threading.Lock()
    with ocitransport.Client() as client:
        layer = transport.new_limit(client, backend=backend)

        def one(_: int) -> int:
            nonlocal peak
            response = layer.round_trip(Request("GET", fault_server.url_for("/delay?seconds=0.2")))
            with lock:
                peak = max(peak, backend.registry(fault_server.host).in_flight)
            return response.status

        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            assert list(pool.map(one, range(6))) == [200] * 6
        elapsed = time.monotonic() - started
    assert elapsed >= 0.55 and peak <= 2
