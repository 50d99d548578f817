"""Every request ends within its limits, and the error names the one that fired: a server that accepts
and never answers (``Timeout.connect`` under TLS, ``Timeout.first_byte`` in plain HTTP), one that sends
the head and falls silent (``Timeout.stall``), a blob or a token trickled at 2 bytes a second
(``Timeout.min_rate``) - on ping, token, manifest and blob requests, through the mirror Session and
``mirror.copy``. Transfers we pause ourselves, and a fast body, trip nothing. Limits are small here so
that each test runs in seconds; the defaults are in ``messages.Timeout``."""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable

import pytest

from ocitransport import mirror
from ocitransport.authn import MultiKeychain
from ocitransport.client import AsyncClient, Client
from ocitransport.exceptions import ConnectTimeout, ReadTimeout
from ocitransport.messages import DEFAULT_TIMEOUT, Timeout
from ocitransport.mirror.session import Session
from ocitransport.name import Repository
from tests.servers import raw
from tests.servers.faults import FaultServer, SilentServer
from tests.servers.proxy import FaultProxy
from tests.servers.registry import RegistryServer

MIB = 1 << 20
#: Small limits: 1 s to connect, 1 s for the head, 1 s without a byte, 512 bytes/s over 1 s windows.
SMALL = Timeout(connect=1.0, stall=1.0, first_byte=1.0, min_rate=512, rate_period=1.0)


def test_the_defaults_are_tens_of_seconds() -> None:
    t = DEFAULT_TIMEOUT
    assert (t.connect, t.head_limit, t.stall, t.min_rate, t.rate_period, t.total) == (30, 30, 30, 1024, 30, None)


def _session_error(server: FaultServer, call: str, *args: object, timeout: Timeout = SMALL) -> BaseException:
    """Run one Session operation against the fault server (anonymous, no retries); return its error."""
    repo = Repository(f"{server.host}/hostile/repo")

    async def run() -> BaseException:
        with Client(timeout=timeout) as client:
            session = Session(client, MultiKeychain(), retries=0)
            try:
                rt = await session.pull(repo)
                await getattr(session, call)(rt, repo, *args)
            except Exception as exc:  # noqa: BLE001 - the test looks at it
                return exc
        raise AssertionError("no error")

    return asyncio.run(asyncio.wait_for(run(), 60))


def _timed(fn: Callable[[], BaseException]) -> tuple[BaseException, float]:
    started = time.monotonic()
    error = fn()
    return error, time.monotonic() - started


def test_manifest_server_that_never_answers(fault_server: FaultServer) -> None:
    fault_server.alias("/v2/", "/status/200")
    fault_server.alias("/v2/hostile/repo/manifests/v1", "/delay?seconds=300")
    error, took = _timed(lambda: _session_error(fault_server, "get_manifest", "v1"))
    assert isinstance(error, ReadTimeout), repr(error)
    assert "no response within 1 s of sending the request (Timeout.first_byte)" in str(error)
    assert took < 6


def test_manifest_head_then_silence(fault_server: FaultServer) -> None:
    fault_server.alias("/v2/", "/status/200")
    fault_server.alias("/v2/hostile/repo/manifests/v1", "/stall?after=0&length=500&seconds=300")
    error, took = _timed(lambda: _session_error(fault_server, "get_manifest", "v1"))
    assert isinstance(error, ReadTimeout), repr(error)
    assert "no data received or sent for 1 s (stall timeout, Timeout.stall)" in str(error)
    assert took < 6


def test_ping_that_never_answers(fault_server: FaultServer) -> None:
    fault_server.alias("/v2/", "/delay?seconds=300")
    error, took = _timed(lambda: _session_error(fault_server, "get_manifest", "v1"))
    assert "(Timeout.first_byte)" in str(error), repr(error)
    assert took < 8


def test_token_realm_trickling_2_bytes_a_second(fault_server: FaultServer) -> None:
    challenge = f'Bearer realm="{fault_server.url}/token",service="faults"'
    fault_server.alias("/v2/", "/status/401?" + urllib.parse.urlencode([("header", f"WWW-Authenticate:{challenge}")]))
    fault_server.alias("/token", "/slow?n=4096&rate=2")
    error, took = _timed(lambda: _session_error(fault_server, "get_manifest", "v1"))
    assert "below the minimum rate of 512 bytes/s (Timeout.min_rate)" in str(error), repr(error)
    assert fault_server.requests_to("/token")
    assert took < 8


def test_tls_handshake_never_answered() -> None:
    with SilentServer(max_hold=30) as silent, Client(timeout=SMALL) as client:
        started = time.monotonic()
        with pytest.raises(ConnectTimeout) as info:
            client.get(f"https://{silent.host}/v2/")
        took = time.monotonic() - started
    assert "(Timeout.connect 1 s)" in str(info.value), str(info.value)
    assert took < 5 and silent.connections >= 1


def _copy_through(proxy: FaultProxy, registry: RegistryServer, src_repo: str, dst_repo: str) -> mirror.Report:
    with Client(timeout=SMALL) as client:
        return mirror.copy(f"{proxy.host}/{src_repo}:v1", f"{registry.host}/{dst_repo}:v1", client=client,
                           retries=0)


def test_mirror_copy_of_a_blob_trickled_at_2_bytes_a_second(
        registry: RegistryServer, proxy_factory: Callable[..., FaultProxy],
        make_repo_name: Callable[[], str]) -> None:
    # 200 bytes: at 2 bytes/s a run without the rate limit still ends (in ~2 min), and fails the test.
    image = raw.push_image(registry, make_repo_name(), "v1", layers=[bytes(200)])
    proxy = proxy_factory(registry)
    proxy.trickle_rate = 2
    proxy.match("GET", "/blobs/")
    proxy.set_rates(trickle=1.0)
    started = time.monotonic()
    report = _copy_through(proxy, registry, image.repo, make_repo_name())
    took = time.monotonic() - started
    assert not report.ok
    text = " ".join(message for _, message in report.errors)
    assert "below the minimum rate of 512 bytes/s (Timeout.min_rate)" in text, text
    assert took < 30, took  # before: held until killed


def test_mirror_copy_of_a_blob_whose_server_falls_silent(
        registry: RegistryServer, proxy_factory: Callable[..., FaultProxy],
        make_repo_name: Callable[[], str]) -> None:
    image = raw.push_image(registry, make_repo_name(), "v1", layers=[bytes(64 * 1024)])
    proxy = proxy_factory(registry)
    proxy.stall_seconds = 120
    proxy.match("GET", "/blobs/")
    proxy.set_rates(stall=1.0)
    started = time.monotonic()
    report = _copy_through(proxy, registry, image.repo, make_repo_name())
    took = time.monotonic() - started
    assert not report.ok
    text = " ".join(message for _, message in report.errors)
    assert "(stall timeout, Timeout.stall)" in text, text
    assert took < 30, took


def test_an_upload_sent_slowly_and_paused_is_no_first_byte_or_stall(fault_server: FaultServer) -> None:
    """The body goes out over ~3 s in 1.5 s gaps (the async source is empty: we pause the transfer);
    neither counts. Then the server never answers: the head limit fires, counted from the body's end."""

    async def body() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"x" * 1000
            await asyncio.sleep(1.5)

    async def main() -> tuple[BaseException, float]:
        async with AsyncClient(timeout=SMALL) as client:
            started = time.monotonic()
            try:
                await client.request("PUT", fault_server.url_for("/delay?seconds=300"), body=body(),
                                     headers={"Content-Length": "3000"})
            except Exception as exc:  # noqa: BLE001 - the test looks at it
                return exc, time.monotonic() - started
        raise AssertionError("no error")

    error, took = asyncio.run(asyncio.wait_for(main(), 30))
    assert isinstance(error, ReadTimeout), repr(error)
    assert "(Timeout.first_byte)" in str(error)
    assert 3.9 <= took < 8, took  # the last byte went out at ~3 s: the head clock starts there
    assert fault_server.requests[-1].body_length == 3000


def test_fast_bodies_and_slow_consumers_trip_nothing(fault_server: FaultServer) -> None:
    """A body at 4 MiB/s against a 1 MiB/s minimum passes; so does a consumer that reads 16 MiB at about
    5 MiB/s against an 8 MiB/s minimum: the engine pauses that transfer above its high-water mark, and
    time we hold a transfer back is not the server's slowness."""
    fast = Timeout(connect=1.0, stall=1.0, first_byte=1.0, min_rate=MIB, rate_period=1.0)
    with Client(timeout=fast) as client:
        response = client.get(fault_server.url_for(f"/slow?n={12 * MIB}&rate={4 * MIB}"))
        assert response.status == 200 and len(response.content) == 12 * MIB
    greedy = Timeout(connect=1.0, stall=1.0, first_byte=1.0, min_rate=8 * MIB, rate_period=1.0)

    async def consume() -> int:  # async: the engine's own thread drives while the consumer sleeps
        got = 0
        async with AsyncClient(timeout=greedy) as client, \
                client.stream("GET", fault_server.url_for(f"/bytes?n={16 * MIB}")) as slow:
            async for chunk in slow.aiter_bytes():
                got += len(chunk)
                await asyncio.sleep(0.0002 * len(chunk) / 1024)  # ~5 MiB/s
        return got

    assert asyncio.run(asyncio.wait_for(consume(), 30)) == 16 * MIB
