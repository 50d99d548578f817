"""Mirror runs against real registries behind the fault proxy: flaky networks, throttling, outages.

The source repository (about a hundred tags: images sharing layers, and two-platform indexes) is pushed
once per module with raw HTTP; each scenario mirrors it into a fresh destination repository and checks
the destination with raw HTTP too.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable

import pytest

import ocitransport
from ocitransport.messages import Timeout
from ocitransport.mirror import Report, execute, plan_repository
from ocitransport.mirror.execute import Executor
from ocitransport.mirror.plan import plan_image
from ocitransport.mirror.session import Session
from tests.reliability.conftest import SourceRepo, check_destination, populate
from tests.servers import raw
from tests.servers.fixtures import unique_repo_name
from tests.servers.proxy import FaultProxy
from tests.servers.raw import list_tags as raw_tags
from tests.servers.registry import RegistryServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def source(registry: RegistryServer) -> SourceRepo:
    """88 images and 6 indexes (12 platform images): 106 tags."""
    return populate(registry, unique_repo_name("reliability-source"), images=88, indexes=6, seed=2024)


def test_mirror_through_ten_percent_faults(registry: RegistryServer, dst_registry: RegistryServer,
                                           source: SourceRepo, proxy_factory: Callable[..., FaultProxy]) -> None:
    src_proxy = proxy_factory(registry, seed=1)
    dst_proxy = proxy_factory(dst_registry, seed=2)
    rates = {"refuse": 0.01, "reset_before": 0.015, "reset_during": 0.015, "reset_after": 0.01,
             "truncate": 0.01, "stall": 0.005, "wrong_length": 0.005, "status_500": 0.01, "status_502": 0.01,
             "status_503": 0.01}
    assert abs(sum(rates.values()) - 0.10) < 1e-9
    dst_repo = unique_repo_name("ten-percent")
    for proxy in (src_proxy, dst_proxy):
        proxy.stall_seconds = 4.0
        proxy.set_rates(**rates)
    with ocitransport.Client(timeout=Timeout(connect=5, stall=2)) as client:
        # Faults from the first request: planning repeats a read that broke mid-body (tag lists and
        # manifests are streamed, so the retry layer has returned when the body breaks).
        started = time.monotonic()
        plan = plan_repository(f"{src_proxy.host}/{source.repo}", f"{dst_proxy.host}/{dst_repo}",
                               client=client)
        planned = time.monotonic() - started
        assert not plan.errors, plan.errors[:3]
        assert len(plan.units) == len(source.tags)
        planning_faults = src_proxy.faults + dst_proxy.faults
        report = execute(plan.units, client=client, jobs=8, retries=6)
        elapsed = time.monotonic() - started
    faults = src_proxy.faults + dst_proxy.faults
    requests = src_proxy.stats["requests"] + dst_proxy.stats["requests"]
    print(f"\nten-percent: {len(source.tags)} tags in {elapsed:.1f} s (planning {planned:.1f} s, "
          f"{planning_faults} faults); {requests} requests, {faults} faults "
          f"(src {src_proxy.stats}, dst {dst_proxy.stats}); report: {report.summary()}")
    assert report.ok, report.errors[:5]
    assert report.images_copied == len(source.tags)
    assert report.retries > 0 and faults >= 0.05 * requests
    assert planning_faults > 0
    for proxy in (src_proxy, dst_proxy):
        proxy.set_rates()
    check_destination(dst_registry, dst_repo, source)


def _plan(src_proxy: FaultProxy, dst_proxy: FaultProxy, source: SourceRepo, dst_repo: str, client: object,
          limit: int) -> list:
    plan = plan_repository(f"{src_proxy.host}/{source.repo}", f"{dst_proxy.host}/{dst_repo}",
                           client=client)  # type: ignore[arg-type]
    assert not plan.errors
    return plan.units[:limit]


def test_a_429_storm_pauses_the_whole_registry(registry: RegistryServer, dst_registry: RegistryServer,
                                               source: SourceRepo,
                                               proxy_factory: Callable[..., FaultProxy]) -> None:
    src_proxy, dst_proxy = proxy_factory(registry), proxy_factory(dst_registry, seed=3)
    dst_repo = unique_repo_name("storm")
    with ocitransport.Client() as client:
        units = _plan(src_proxy, dst_proxy, source, dst_repo, client, 30)
        dst_proxy.retry_after = 1
        dst_proxy.set_rates(status_429=0.03)
        started = time.monotonic()
        report = execute(units, client=client, jobs=8, retries=8)
        elapsed = time.monotonic() - started
    records = dst_proxy.records
    storms = [r for r in records if r.status == 429]
    print(f"\n429 storm: {len(units)} images in {elapsed:.1f} s; {len(records)} destination requests, "
          f"{len(storms)} answered 429; report: {report.summary()}; queued {report.queued_seconds:.1f} s, "
          f"lowest concurrency {report.lowest_concurrency}")
    assert report.ok, report.errors[:3]
    assert storms and report.throttle_events == len(storms)
    # Nobody went out while a Retry-After ran: a request arriving during the pause was already on its
    # way when the 429 was answered (the 0.3 s of slack covers that on a loaded machine).
    for throttled in storms:
        early = [r for r in records
                 if throttled.answered_at + 0.3 < r.received_at < throttled.answered_at + 0.95]
        assert not early, (throttled, early[:3])
    assert 1.0 <= report.throttled_seconds <= len(storms) * 1.05
    assert 0 < report.lowest_concurrency < 32 and report.queued_seconds > 0
    dst_proxy.set_rates()
    check_destination(dst_registry, dst_repo, SourceRepo(source.repo, {
        k: v for k, v in source.tags.items() if k in {u.destination.rsplit(":", 1)[1] for u in units}}),
        complete=False)


def test_registry_down_for_ten_seconds(registry: RegistryServer, dst_registry: RegistryServer,
                                       source: SourceRepo, proxy_factory: Callable[..., FaultProxy]) -> None:
    src_proxy, dst_proxy = proxy_factory(registry), proxy_factory(dst_registry, seed=4)
    dst_repo = unique_repo_name("down")
    with ocitransport.Client(timeout=Timeout(connect=3, stall=5)) as client:
        units = _plan(src_proxy, dst_proxy, source, dst_repo, client, 40)
        # A short retry policy while the registry is down: every image fails, each with one clear line.
        dst_proxy.set_down(True)
        short = execute(units[:5], client=client, jobs=4, retries=1)
        assert short.images_failed == 5 and not short.ok
        for reference, message in short.errors:
            assert "\n" not in message and "Traceback" not in message and reference in {u.source for u in units}
        dst_proxy.set_down(False)
        # A long one survives ten seconds down in the middle of the run.
        events: list[float] = []

        def outage() -> None:
            time.sleep(0.5)
            dst_proxy.set_down(True)
            events.append(time.monotonic())
            time.sleep(10)
            dst_proxy.set_down(False)
            events.append(time.monotonic())

        thread = threading.Thread(target=outage, daemon=True)
        started = time.monotonic()
        thread.start()
        report = execute(units, client=client, jobs=4, retries=6)
        elapsed = time.monotonic() - started
        thread.join(15)
    print(f"\ndown 10 s: short policy: {short.summary()} (first error: {short.errors[0][1]}); long policy: "
          f"{len(units)} images in {elapsed:.1f} s, {dst_proxy.stats['refused_while_down']} connections "
          f"refused; {report.summary()}")
    assert report.ok, report.errors[:3]
    assert len(events) == 2 and elapsed > events[0] - started + 1  # the outage was mid-run
    assert dst_proxy.stats["refused_while_down"] > 0
    done = {u.destination.rsplit(":", 1)[1] for u in units}
    check_destination(dst_registry, dst_repo, SourceRepo(source.repo, {
        k: v for k, v in source.tags.items() if k in done}), complete=False)
    assert len(raw_tags(dst_registry, dst_repo)) == len(units)


def test_a_manifest_is_pushed_only_once_the_registry_has_its_blobs(registry: RegistryServer,
                                                                   dst_registry: RegistryServer) -> None:
    """This run's bookkeeping says the destination holds a blob that it lost meanwhile (deleted behind
    the run's back; two workers writing one blob make the registry refuse a manifest the same way): the
    manifest PUT is refused, every blob is asked for again, the missing one copied, and the PUT goes
    through."""
    src_repo, dst_repo = unique_repo_name("recheck-src"), unique_repo_name("recheck-dst")
    shared = os.urandom(5000)
    first = raw.push_image(registry, src_repo, "a", layers=[shared, os.urandom(300)])
    second = raw.push_image(registry, src_repo, "b", layers=[shared, os.urandom(300)])
    shared_digest = first.layer_digests[0]

    async def main() -> tuple[Report, Report]:
        with ocitransport.Client() as client:
            session = Session(client, retries=2)
            executor = Executor(session, jobs=2, retries=2)
            units = [await plan_image(session, f"{registry.host}/{src_repo}:{tag}",
                                      f"{dst_registry.host}/{dst_repo}:{tag}") for tag in ("a", "b")]
            before = await executor.run(units[:1])
            deleted = raw.request(dst_registry, "DELETE", f"/v2/{dst_repo}/blobs/{shared_digest}")
            assert deleted.status == 202 and not raw.blob_exists(dst_registry, dst_repo, shared_digest)
            return before, await executor.run(units[1:])

    before, after = asyncio.run(asyncio.wait_for(main(), 60))
    assert before.ok and after.ok, after.errors
    assert after.retries >= 1  # the refused PUT, tried again after the check
    # Its own layer and config, and the lost shared layer copied again (the first pass skipped it).
    assert after.images[0].blobs_transferred == 3
    assert after.images[0].bytes_transferred == len(shared) + 300 + len(second.config)
    check_destination(dst_registry, dst_repo, SourceRepo(src_repo, {"a": first.digest, "b": second.digest}))


def test_a_ping_that_fails_for_a_while_is_retried_within_the_budget(registry: RegistryServer,
                                                                   dst_registry: RegistryServer, source: SourceRepo,
                                                                   proxy_factory: Callable[..., FaultProxy]) -> None:
    """The destination's ping fails on both schemes (every connection reset once its request head is
    read) for 2.5 s: the retry layer's budget (``retries=3``: 0.5 s, 1 s, then 2 s of backoff) outlasts
    it, and the run completes once the registry answers. With one retry budget per request the images'
    own attempts do not multiply it (tests/reliability/test_budget.py)."""
    src_proxy, dst_proxy = proxy_factory(registry), proxy_factory(dst_registry, seed=5)
    dst_repo = unique_repo_name("ping-fails")
    with ocitransport.Client() as client:
        units = _plan(src_proxy, dst_proxy, source, dst_repo, client, 5)
    dst_proxy.set_rates(reset_before=1.0)
    timer = threading.Timer(2.5, dst_proxy.set_rates)
    started = time.monotonic()
    timer.start()
    try:
        with ocitransport.Client() as client:
            report = execute(units, client=client, jobs=len(units), retries=3)
    finally:
        timer.cancel()
        dst_proxy.set_rates()
    elapsed = time.monotonic() - started
    print(f"\nping fails: {report.summary()} in {elapsed:.1f} s; {dst_proxy.stats['reset_before']} resets")
    assert report.ok, report.errors[:3]
    assert dst_proxy.stats["reset_before"] >= 3 and elapsed > 2.5
    check_destination(dst_registry, dst_repo, SourceRepo(source.repo, {
        k: v for k, v in source.tags.items() if k in {u.destination.rsplit(":", 1)[1] for u in units}}))


def test_the_proxy_costs_little_per_request(registry: RegistryServer, dst_registry: RegistryServer,
                                            source: SourceRepo, proxy_factory: Callable[..., FaultProxy]) -> None:
    """Without faults the proxy is nearly free: planning the whole source (a few hundred small requests)
    through proxies takes about as long as directly (a per-request delay, such as Nagle's algorithm
    meeting delayed ACKs, would add tens of milliseconds to each)."""
    src_proxy, dst_proxy = proxy_factory(registry), proxy_factory(dst_registry)
    dst_repo = unique_repo_name("proxy-cost")
    timings = {}
    for name, (src, dst) in {"direct": (registry.host, dst_registry.host),
                             "proxy": (src_proxy.host, dst_proxy.host)}.items():
        with ocitransport.Client() as client:
            started = time.monotonic()
            plan = plan_repository(f"{src}/{source.repo}", f"{dst}/{dst_repo}", client=client)
            timings[name] = time.monotonic() - started
        assert not plan.errors and len(plan.units) == len(source.tags)
    requests = src_proxy.stats["requests"] + dst_proxy.stats["requests"]
    print(f"\nproxy cost: planning {len(source.tags)} tags directly {timings['direct']:.2f} s, through the "
          f"proxies {timings['proxy']:.2f} s ({requests} requests)")
    assert requests > 2 * len(source.tags)
    assert timings["proxy"] < 2 * timings["direct"] + requests * 0.005
