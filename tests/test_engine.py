"""The engine against real servers: errors, streaming both ways, back-pressure, cancellation, pool caps,
timeouts, TLS. Every wait is bounded in count and time; only loopback addresses are used."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import io
import os
import threading
import time
from collections.abc import Iterator

import pytest

from ocitransport import (
    AsyncClient,
    Client,
    ClientClosed,
    ConnectError,
    PoolTimeout,
    ProtocolError,
    ReadError,
    Request,
    RequestCancelled,
    Timeout,
    TimeoutError,
    TLSError,
    TransportError,
)
from ocitransport.engine import HIGH_WATER, RECV_BUFFER, Engine
from tests.servers.faults import pattern

MiB = 1 << 20


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MiB


@pytest.fixture
def client() -> Iterator[Client]:
    with Client(follow_redirects=False) as c:
        yield c


def free_port_refusing() -> int:
    """A loopback port nothing listens on (bound then closed)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------------------------------ basics

def test_get_head_and_body(nginx_server, client: Client) -> None:
    r = client.get(nginx_server.small_url)
    assert r.status == 200 and r.reason == "OK" and r.http_version == "HTTP/1.1"
    assert len(r.content) == 512 and r.headers["content-length"] == "512"
    assert r.url == nginx_server.small_url and r.request is not None and r.elapsed > 0
    h = client.head(nginx_server.small_url)
    assert h.status == 200 and h.content == b"" and h.headers["Content-Length"] == "512"
    # the handle that just did a HEAD serves a GET with a body again
    assert len(client.get(nginx_server.small_url).content) == 512


def test_no_default_accept_or_expect(fault_server, client: Client) -> None:
    body = b"x" * (2 * MiB)  # libcurl would add "Expect: 100-continue" above 1 MiB
    r = client.post(fault_server.url_for("/echo"), body=body)
    names = [k.lower() for k, _ in r.json()["headers"]]
    assert "accept" not in names and "expect" not in names
    assert r.json()["body_length"] == len(body)
    r = client.get(fault_server.url_for("/echo"), headers={"Accept": "application/json", "X-Empty": ""})
    headers = {k.lower(): v for k, v in r.json()["headers"]}
    assert headers["accept"] == "application/json" and headers["x-empty"] == ""


def test_header_injection_is_refused(fault_server, client: Client) -> None:
    with pytest.raises(ProtocolError):
        client.get(fault_server.url_for("/echo"), headers={"X-Bad": "a\r\nInjected: 1"})


def test_informational_heads_are_skipped(fault_server, client: Client) -> None:
    r = client.get(fault_server.url_for("/info?codes=100,103"))
    assert r.status == 200 and r.content == b"ok"
    with client.stream("GET", fault_server.url_for("/info?codes=103")) as s:
        assert s.status == 200 and s.read() == b"ok"


def test_many_headers(fault_server, client: Client) -> None:
    r = client.get(fault_server.url_for("/headers?n=200&size=100"))
    assert r.status == 200 and len(r.headers.get_all("X-Fault-199")) == 1


def test_sha256_of_buffered_sink_and_streamed_bodies(fault_server, client: Client) -> None:
    n = 3 * MiB + 17
    expected = hashlib.sha256(pattern(n)).hexdigest()
    url = fault_server.url_for(f"/bytes?n={n}")
    assert client.get(url, extensions={"sha256": True}).extensions["sha256"] == expected
    out = io.BytesIO()
    r = client.get(url, extensions={"sink": out, "sha256": True})
    assert r.content == b"" and out.getvalue() == pattern(n) and r.extensions["sha256"] == expected
    pieces: list[bytes] = []
    r = client.get(url + "&chunked=1", extensions={"sink": pieces.append})
    assert b"".join(pieces) == pattern(n)
    with client.stream("GET", url, extensions={"sha256": True}) as s:
        assert hashlib.sha256(s.read()).hexdigest() == expected
        assert s.extensions["sha256"] == expected


# ------------------------------------------------------------------------------------------------ errors

def test_connection_refused(client: Client) -> None:
    url = f"http://127.0.0.1:{free_port_refusing()}/v2/"
    with pytest.raises(ConnectError) as info:
        client.get(url)
    assert info.value.curl_code == 7 and info.value.url == url
    assert "GET" in str(info.value) and url in str(info.value)
    assert isinstance(info.value.__cause__, Exception)


def test_truncated_body_is_read_error(fault_server, client: Client) -> None:
    with pytest.raises(ReadError) as info:
        client.get(fault_server.url_for("/truncate?length=1000&send=10"))
    assert info.value.curl_code == 18


@pytest.mark.parametrize("when", ["before", "headers", "mid"])
def test_reset_is_read_or_connect_error(fault_server, client: Client, when: str) -> None:
    with pytest.raises((ReadError, ConnectError)):
        client.get(fault_server.url_for(f"/reset?when={when}&after=1000"))


def test_stall_is_timeout(fault_server, client: Client) -> None:
    t0 = time.monotonic()
    with pytest.raises(TimeoutError) as info:
        client.get(fault_server.url_for("/stall?after=0&seconds=20"), timeout=Timeout(stall=1))
    assert info.value.curl_code == 28 and time.monotonic() - t0 < 10


def test_total_timeout(fault_server, client: Client) -> None:
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        client.get(fault_server.url_for("/delay?seconds=10"), timeout=Timeout(total=0.5))
    assert time.monotonic() - t0 < 5


def test_callback_exceptions_reach_the_caller(fault_server, client: Client) -> None:
    class Boom(Exception):
        pass

    def body() -> Iterator[bytes]:
        yield b"a" * 1000
        raise Boom("source failed")

    with pytest.raises(Boom):
        client.put(fault_server.url_for("/drain"), body=body())

    def sink(data: bytes) -> None:
        raise Boom("sink failed")

    with pytest.raises(Boom):
        client.get(fault_server.url_for("/bytes?n=100000"), extensions={"sink": sink})
    assert client.get(fault_server.url_for("/bytes?n=10")).status == 200


def test_unsupported_scheme(client: Client) -> None:
    with pytest.raises(TransportError):
        client.get("ftp://127.0.0.1/x")


# ------------------------------------------------------------------------------------------------ TLS

def test_http2_negotiated_with_tls_registry(tls_registry) -> None:
    with Client(verify=str(tls_registry.ca_file)) as c:
        r = c.get(tls_registry.url + "/v2/")
        assert r.status == 200 and r.http_version == "HTTP/2"
        futures = [c.submit("GET", tls_registry.url + "/v2/") for _ in range(20)]
        assert all(f.result(timeout=30).http_version == "HTTP/2" for f in futures)


def test_http1_when_http2_is_off(tls_registry) -> None:
    with Client(verify=str(tls_registry.ca_file), http2=False) as c:
        assert c.get(tls_registry.url + "/v2/").http_version == "HTTP/1.1"


def test_untrusted_certificate_is_tls_error(tls_registry) -> None:
    with Client() as c, pytest.raises(TLSError):
        c.get(tls_registry.url + "/v2/")
    with Client(verify=False) as c:
        assert c.get(tls_registry.url + "/v2/").status == 200


def test_mtls(mtls_registry) -> None:
    cert = (str(mtls_registry.client_cert), str(mtls_registry.client_key))
    with Client(verify=str(mtls_registry.ca_file), cert=cert) as c:
        assert c.get(mtls_registry.url + "/v2/").status == 200
    with Client(verify=str(mtls_registry.ca_file)) as c, pytest.raises(TLSError):
        c.get(mtls_registry.url + "/v2/")


# ------------------------------------------------------------------------------------------------ pool

def test_500_concurrent_requests_respect_the_connection_cap(fault_server) -> None:
    with Client(max_connections_per_host=8, follow_redirects=False) as c:
        futures = [c.submit("GET", fault_server.url_for("/bytes?n=2000")) for _ in range(500)]
        results = [f.result(timeout=60) for f in futures]
    assert all(r.status == 200 and len(r.content) == 2000 for r in results)
    assert fault_server.peak_connections <= 8
    assert fault_server.connections <= 8


def test_map_respects_total_cap_and_keeps_order(fault_server) -> None:
    with Client(max_connections=4, max_connections_per_host=4, follow_redirects=False) as c:
        reqs = [Request("GET", fault_server.url_for(f"/bytes?n={i + 1}")) for i in range(300)]
        sizes = [len(r.content) for r in c.map(reqs, concurrency=50)]
    assert sizes == list(range(1, 301))
    assert fault_server.peak_connections <= 4


def test_keep_alive_reuses_connections(fault_server, client: Client) -> None:
    for _ in range(50):
        assert client.get(fault_server.url_for("/bytes?n=10")).status == 200
    assert fault_server.connections == 1


def test_pool_timeout(fault_server) -> None:
    with Client(max_connections=1, follow_redirects=False) as c:
        blocker = c.submit("GET", fault_server.url_for("/stall?after=0&seconds=5"))
        t0 = time.monotonic()
        with pytest.raises(PoolTimeout):
            c.get(fault_server.url_for("/bytes?n=1"), timeout=Timeout(pool=0.3))
        assert time.monotonic() - t0 < 3
        blocker.cancel()


def test_no_thread_per_request(nginx_server) -> None:
    with Client() as c:
        c.get(nginx_server.small_url)
        c.submit("GET", nginx_server.small_url).result(timeout=10)  # the one loop thread exists now
        before = threading.active_count()
        for _ in range(100):
            assert c.get(nginx_server.small_url).status == 200
        futures = [c.submit("HEAD", nginx_server.small_url) for _ in range(100)]
        assert all(f.result(timeout=30).status == 200 for f in futures)
        assert threading.active_count() == before
    assert threading.active_count() == before - 1  # the loop thread is joined by close()


# ------------------------------------------------------------------------------------------------ cancel

def test_cancel_future_frees_the_connection(fault_server) -> None:
    with Client(max_connections=1, follow_redirects=False) as c:
        fut = c.submit("GET", fault_server.url_for("/stall?after=0&seconds=10"))
        for _ in range(200):
            if c.engine.stats()["active"] == 1:
                break
            time.sleep(0.01)
        assert fut.cancel()
        with pytest.raises(concurrent.futures.CancelledError):
            fut.result(timeout=1)
        t0 = time.monotonic()
        assert c.get(fault_server.url_for("/bytes?n=5")).content == pattern(5)
        assert time.monotonic() - t0 < 2
        assert c.engine.stats()["active"] == 0


def test_closing_a_stream_early_cancels_and_frees_the_slot(fault_server) -> None:
    with Client(max_connections=1, follow_redirects=False) as c:
        with c.stream("GET", fault_server.url_for(f"/bytes?n={512 * MiB}")) as r:
            first = next(r.iter_bytes())
            assert first == pattern(len(first))
        assert c.engine.stats()["active"] == 0
        assert c.get(fault_server.url_for("/bytes?n=3")).content == pattern(3)


# ------------------------------------------------------------------------------------------------ streaming

@pytest.mark.slow
def test_1gib_download_streams_with_bounded_memory(fault_server, client: Client) -> None:
    n = 1 << 30
    before = rss_mib()
    peak = before
    got = 0
    t0 = time.monotonic()
    with client.stream("GET", fault_server.url_for(f"/bytes?n={n}")) as r:
        for chunk in r.iter_bytes():
            got += len(chunk)
            if got % (64 * MiB) < len(chunk):
                peak = max(peak, rss_mib())
                assert time.monotonic() - t0 < 120
    peak = max(peak, rss_mib())
    assert got == n
    assert peak - before < 100, f"RSS grew by {peak - before:.0f} MiB"


def test_back_pressure_pauses_the_transfer(fault_server) -> None:
    async def main() -> None:
        async with AsyncClient(follow_redirects=False) as c:
            n = 256 * MiB
            async with c.stream("GET", fault_server.url_for(f"/bytes?n={n}")) as r:
                stream = r._stream
                it = r.aiter_bytes()
                first = await it.__anext__()
                await asyncio.sleep(1.0)  # the engine's thread keeps driving; we do not read
                held = stream.bytes_received
                assert held <= HIGH_WATER + 4 * RECV_BUFFER, held
                await asyncio.sleep(0.3)
                assert stream.bytes_received == held  # paused: nothing more arrives
                total = len(first)
                async for chunk in it:
                    total += len(chunk)
                assert total == n

    asyncio.run(asyncio.wait_for(main(), 120))


def test_back_pressure_with_another_thread_driving(fault_server) -> None:
    with Client(follow_redirects=False) as c, c.stream("GET", fault_server.url_for(f"/bytes?n={128 * MiB}")) as r:
        stream = r._stream
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # these requests drive the engine, our stream included
            c.get(fault_server.url_for("/bytes?n=10"))
        assert stream.bytes_received <= HIGH_WATER + 4 * RECV_BUFFER
        assert len(r.read()) == 128 * MiB


def test_streaming_upload_of_a_large_iterator(fault_server, client: Client) -> None:
    n = 64 * MiB
    block = os.urandom(MiB)

    def body() -> Iterator[bytes]:
        for _ in range(n // MiB):
            yield block

    expected = hashlib.sha256(block * (n // MiB)).hexdigest()
    r = client.put(fault_server.url_for("/drain"), body=body(), extensions={"sha256_upload": True})
    assert r.json() == {"length": n, "sha256": expected}
    assert r.extensions["sha256_upload"] == expected
    request = fault_server.requests_to("/drain")[-1]
    assert request.header("Transfer-Encoding") == "chunked"


def test_upload_of_a_file_and_bytes(fault_server, client: Client, tmp_path) -> None:
    data = os.urandom(3 * MiB + 5)
    path = tmp_path / "blob"
    path.write_bytes(data)
    expected = {"length": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    with open(path, "rb") as f:
        f.seek(0)
        assert client.post(fault_server.url_for("/drain"), body=f).json() == expected
        # replay from the start position: the same Request sent twice
        f.seek(0)
        req = Request("PUT", fault_server.url_for("/drain"), body=f)
        assert client.round_trip(req).json() == expected
        assert client.round_trip(req).json() == expected
    assert client.patch(fault_server.url_for("/drain"), body=data).json() == expected
    assert fault_server.requests_to("/drain")[-1].header("Content-Length") == str(len(data))


def test_engine_faces_share_one_multi(nginx_server) -> None:
    engine = Engine()
    try:
        assert engine.round_trip(Request("GET", nginx_server.small_url)).status == 200
        assert engine.submit(Request("GET", nginx_server.small_url)).result(timeout=10).status == 200

        async def main() -> int:
            return (await engine.round_trip_async(Request("GET", nginx_server.small_url))).status

        assert asyncio.run(main()) == 200
    finally:
        engine.close()


# ------------------------------------------------------------------------------------------------ close

def test_close_fails_pending_requests(fault_server) -> None:
    c = Client(follow_redirects=False)
    futures = [c.submit("GET", fault_server.url_for("/stall?after=0&seconds=10")) for _ in range(5)]
    errors: list[BaseException] = []

    def sync_caller() -> None:
        try:
            c.get(fault_server.url_for("/stall?after=0&seconds=10"))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    thread = threading.Thread(target=sync_caller)
    thread.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    c.close()
    c.close()  # idempotent
    for f in futures:
        with pytest.raises(ClientClosed):
            f.result(timeout=5)
    thread.join(timeout=5)
    assert not thread.is_alive() and len(errors) == 1 and isinstance(errors[0], ClientClosed)
    assert time.monotonic() - t0 < 5
    with pytest.raises(ClientClosed):
        c.get(fault_server.url_for("/bytes?n=1"))


def test_close_fails_an_open_stream(fault_server) -> None:
    c = Client(follow_redirects=False)
    r = c.request("GET", fault_server.url_for(f"/bytes?n={64 * MiB}"), stream=True)
    c.close()
    with pytest.raises((ClientClosed, RequestCancelled)):
        r.read()


def test_non_ascii_header_values_go_out_as_latin1(fault_server, client: Client) -> None:
    r = client.get(fault_server.url_for("/echo"), headers={"X-Name": "caf\u00e9"})
    assert dict(r.json()["headers"])["X-Name"] == "caf\u00e9"


def test_async_body_on_the_sync_face_is_a_type_error(fault_server, client: Client) -> None:
    async def source():
        yield b"x"

    with pytest.raises(TypeError, match="AsyncClient"):
        client.put(fault_server.url_for("/drain"), body=source())


def test_stall_after_a_burst_is_seen_in_time(fault_server, client: Client) -> None:
    # libcurl's low-speed check averages ~5 s of samples; the engine's own check does not.
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        client.get(fault_server.url_for(f"/stall?after={4 * MiB}&seconds=20"), timeout=Timeout(stall=1))
    assert time.monotonic() - t0 < 3


def test_stream_head_then_body_error_returns_the_head(fault_server, client: Client) -> None:
    r = client.request("GET", fault_server.url_for("/truncate?length=1000&send=10"), stream=True)
    assert r.status == 200
    with pytest.raises(ReadError):
        r.read()


def test_a_paused_stream_is_not_a_stall(fault_server) -> None:
    async def main() -> None:
        async with AsyncClient(timeout=Timeout(stall=1)) as c, \
                c.stream("GET", fault_server.url_for(f"/bytes?n={64 * MiB}")) as r:
            it = r.aiter_bytes()
            got = len(await it.__anext__())
            await asyncio.sleep(2.0)  # paused by back-pressure for longer than the stall limit
            async for chunk in it:
                got += len(chunk)
            assert got == 64 * MiB

    asyncio.run(asyncio.wait_for(main(), 60))


def test_an_unread_sync_stream_is_not_a_stall(fault_server) -> None:
    with Client(timeout=Timeout(stall=1), follow_redirects=False) as c:
        r = c.request("GET", fault_server.url_for(f"/bytes?n={32 * MiB}"), stream=True)
        time.sleep(2.5)  # nobody drives the engine meanwhile
        assert len(r.read()) == 32 * MiB
        results = c.map([Request("GET", fault_server.url_for(f"/bytes?n={MiB}"))] * 8, concurrency=8)
        assert len(next(results).content) == MiB
        time.sleep(2.5)  # a slow consumer of map()
        assert [len(x.content) for x in results] == [MiB] * 7


def test_timeouts_are_classified_by_phase(fault_server, client: Client) -> None:
    from ocitransport import ConnectTimeout, ReadTimeout

    assert client.get(fault_server.url_for("/bytes?n=1")).status == 200  # a pooled connection now
    with pytest.raises(ReadTimeout):  # reused connection: CONNECT_TIME is 0.0, still a read timeout
        client.get(fault_server.url_for("/delay?seconds=5"), timeout=Timeout(total=0.3))
    with pytest.raises(ReadTimeout):
        client.get(fault_server.url_for("/stall?after=10&seconds=5"), timeout=Timeout(total=0.3))
    # 192.0.2.1 (TEST-NET-1) would leave loopback; a full listen backlog is not portable either, so
    # the connect phase is checked through the table directly.
    from ocitransport._curl_errors import error_from_curl

    assert isinstance(error_from_curl(28, "x", "GET", "http://127.0.0.1/", phase="connect"), ConnectTimeout)


def test_timing_extension(fault_server, client: Client) -> None:
    first = client.get(fault_server.url_for("/bytes?n=10"), extensions={"timing": True})
    again = client.get(fault_server.url_for("/bytes?n=10"), extensions={"timing": True})
    assert first.extensions["timing"]["new_connections"] == 1
    assert again.extensions["timing"]["new_connections"] == 0
    assert 0 <= again.extensions["timing"]["starttransfer"] <= again.extensions["timing"]["total"]
    assert "timing" not in client.get(fault_server.url_for("/bytes?n=10")).extensions


# ------------------------------------------------------------------------------------------------ per-request costs

def test_pooled_handle_sends_each_requests_own_headers_and_url(fault_server, client: Client) -> None:
    """A pooled handle skips the URL and HTTPHEADER setopts when they are unchanged: changes still go out."""
    sets = [{"Authorization": "Bearer a", "X-Set": "1"}, {"Authorization": "Bearer b", "X-Set": "2"}, None]
    for i in range(9):
        headers = sets[i % 3]
        r = client.get(fault_server.url_for(f"/echo?i={i % 2}"), headers=headers)
        echoed = {k.lower(): v for k, v in r.json()["headers"]}
        assert r.json()["target"] == f"/echo?i={i % 2}"
        if headers is None:
            assert "authorization" not in echoed and "x-set" not in echoed
        else:
            assert echoed["authorization"] == headers["Authorization"] and echoed["x-set"] == headers["X-Set"]
    assert client.engine.stats()["free_handles"] == 1  # all nine went through one pooled handle


def test_header_lists_are_reused_and_bounded() -> None:
    from ocitransport.engine import HEADER_LIST_BYTES, HEADER_LISTS

    engine = Engine()
    try:
        one = engine._header_list([("Authorization", "Bearer t"), ("User-Agent", "x")], False)
        assert engine._header_list([("Authorization", "Bearer t"), ("User-Agent", "x")], False) is one
        assert engine._header_list([("Authorization", "Bearer u"), ("User-Agent", "x")], False) is not one
        # with a body, framing headers are left to libcurl: a different list for the same items
        assert engine._header_list([("Content-Length", "3")], True) != engine._header_list(
            [("Content-Length", "3")], False)
        for i in range(3 * HEADER_LISTS):
            engine._header_list([("Range", f"bytes={i}-")], False)
        assert all(len(cache) <= HEADER_LISTS for cache in engine._header_lists)
        huge = [("X-Huge", "h" * (HEADER_LIST_BYTES + 1))]  # built every time, never kept
        assert engine._header_list(huge, False) is not engine._header_list(huge, False)
        with pytest.raises(ProtocolError):  # refused every time, never cached
            engine._header_list([("X-Bad", "a\r\nb")], False)
        with pytest.raises(ProtocolError):
            engine._header_list([("X-Bad", "a\r\nb")], False)
    finally:
        engine.close()


def test_a_read_stream_is_freed_without_the_cyclic_gc(nginx_server, client: Client) -> None:
    """A finished streamed response leaves no reference cycle behind (no GC work per request)."""
    import gc
    import weakref

    client.get(nginx_server.small_url)  # warm: pooled handle and connection
    gc.collect()
    gc.disable()
    try:
        r = client.request("GET", nginx_server.small_url, stream=True)
        stream = weakref.ref(r._stream)
        assert len(r.read()) == 512
        del r
        assert stream() is None
        with client.stream("GET", nginx_server.small_url) as s:
            parts = list(s.iter_bytes())
            held = weakref.ref(s._stream)
        assert len(b"".join(parts)) == 512
        del s
        assert held() is None
    finally:
        gc.enable()


def test_a_streamed_head_comes_before_its_body(fault_server, client: Client) -> None:
    """The head is handed over as soon as it is complete, not with the first body byte."""
    t0 = time.monotonic()
    with client.stream("GET", fault_server.url_for("/stall?after=0&seconds=3&length=5&finish=1")) as r:
        assert r.status == 200 and time.monotonic() - t0 < 2
        assert len(r.read()) == 5


# ------------------------------------------------------------------------------------------------ threads

def test_64_threads_each_get_their_own_result_among_stalls_and_errors(fault_server) -> None:
    """Client.request from a ThreadPoolExecutor(64) as sync tools use it, with stalls, timeouts, resets and
    error statuses mixed in and a streaming body read slowly alongside: every result is its own request's,
    no thread is left waiting, and the engine ends with nothing blocked or in flight."""
    n = 512
    for i in range(n):  # errors name their own request's path
        if i % 16 == 2:
            fault_server.alias(f"/reset-{i}", "/reset?when=before")
        elif i % 64 == 3:
            fault_server.alias(f"/stall-{i}", "/delay?seconds=20")
    with Client(max_connections=64, max_connections_per_host=64, follow_redirects=False) as c:
        def one(i: int) -> tuple[int, object]:
            kind = i % 16
            try:
                if kind == 1:
                    return i, c.get(fault_server.url_for(f"/status/503?body=x{i}")).content
                if kind == 2:
                    return i, c.get(fault_server.url_for(f"/reset-{i}"))
                if kind == 3 and i % 64 == 3:  # a stall the total timeout ends
                    return i, c.get(fault_server.url_for(f"/stall-{i}"), timeout=Timeout(total=0.5))
                if kind == 4:  # a stall that answers
                    return i, c.get(fault_server.url_for(f"/delay?seconds=0.2&n={i}")).content
                return i, c.get(fault_server.url_for(f"/bytes?n={i}")).content
            except TransportError as exc:
                return i, exc

        got = bytearray()

        def read_slowly() -> None:
            with c.stream("GET", fault_server.url_for(f"/bytes?n={4 * MiB}")) as s:
                for chunk in s.iter_bytes():
                    got.extend(chunk)
                    time.sleep(0.002)

        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(64) as pool:
            reader = pool.submit(read_slowly)
            futures = [pool.submit(one, i) for i in range(n)]
            _done, pending = concurrent.futures.wait([reader, *futures], timeout=60)
            assert not pending, f"{len(pending)} threads still waiting after 60 s"
        reader.result()
        assert bytes(got) == pattern(4 * MiB)
        for f in futures:
            i, result = f.result()
            kind = i % 16
            if kind == 1:
                assert result == f"x{i}".encode(), i
            elif kind == 2:
                assert isinstance(result, (ReadError, ConnectError)) and f"/reset-{i}:" in str(result), (i, result)
            elif kind == 3 and i % 64 == 3:
                assert isinstance(result, TimeoutError) and f"/stall-{i}:" in str(result), (i, result)
            else:
                assert result == pattern(i), i
        assert time.monotonic() - t0 < 60
        stats = c.engine.stats()
        assert stats["blocked"] == 0 and stats["active"] == 0 and stats["queued"] == 0, stats
