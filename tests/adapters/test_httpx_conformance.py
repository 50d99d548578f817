"""One behavioural suite for httpx, run against ``httpx.HTTPTransport`` and our ``HTTPXTransport`` (and a
few cases against ``AsyncHTTPXTransport``) on the same loopback servers."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from tests.adapters.conftest import GZIP_PLAIN
from tests.servers.faults import pattern

Make = Callable[..., httpx.Client]


@pytest.mark.parametrize("code", [200, 201, 204, 301, 404, 418, 500, 503])
def test_status_codes(make_httpx: Make, fault_server, code: int) -> None:
    r = make_httpx().get(fault_server.url_for(f"/status/{code}"))
    assert r.status_code == code
    assert r.reason_phrase
    assert r.http_version == "HTTP/1.1"


def test_headers_with_repeats(make_httpx: Make, fault_server) -> None:
    r = make_httpx().get(fault_server.url_for("/status/200?header=X-Rep:one&header=X-Rep:two"))
    assert r.headers.get_list("x-rep") == ["one", "two"]
    assert r.headers["X-Rep"] == "one, two"


def test_request_headers_with_repeats(make_httpx: Make, fault_server) -> None:
    r = make_httpx().get(fault_server.url_for("/echo"), headers=[("X-Dup", "a"), ("X-Dup", "b")])
    echoed = r.json()["headers"]
    assert [v for k, v in echoed if k.lower() == "x-dup"] == ["a", "b"]
    names = {k.lower() for k, _ in echoed}
    assert "expect" not in names
    assert "accept" in names  # httpx's own default


def test_download_streaming(make_httpx: Make, fault_server) -> None:
    n = 5 << 20
    digest = hashlib.sha256()
    size = 0
    with make_httpx().stream("GET", fault_server.url_for(f"/bytes?n={n}")) as r:
        for chunk in r.iter_bytes():
            digest.update(chunk)
            size += len(chunk)
    assert size == n
    assert digest.hexdigest() == hashlib.sha256(pattern(n)).hexdigest()


def test_download_chunked(make_httpx: Make, fault_server) -> None:
    r = make_httpx().get(fault_server.url_for("/bytes?n=300000&chunked=1&chunk=7000"))
    assert r.content == pattern(300000)


def test_early_close_then_reuse(make_httpx: Make, fault_server) -> None:
    client = make_httpx()
    with client.stream("GET", fault_server.url_for(f"/bytes?n={8 << 20}")) as r:
        next(r.iter_raw())
    assert client.get(fault_server.url_for("/bytes?n=10")).content == pattern(10)


def test_upload_bytes_and_stream(make_httpx: Make, fault_server) -> None:
    client = make_httpx()
    body = pattern(200000)
    assert client.put(fault_server.url_for("/drain"), content=body).json()["length"] == len(body)
    parts = [pattern(1000, i * 1000) for i in range(50)]
    r = client.post(fault_server.url_for("/drain"), content=iter(parts))
    assert r.json()["sha256"] == hashlib.sha256(b"".join(parts)).hexdigest()
    assert fault_server.requests_to("/drain")[-1].header("transfer-encoding") == "chunked"


def test_redirects_by_httpx(make_httpx: Make, fault_server) -> None:
    client = make_httpx()
    r = client.get(fault_server.url_for("/redirect?to=/bytes%3Fn%3D5&code=302"))
    assert r.status_code == 302
    r = client.get(fault_server.url_for("/redirect?to=/bytes%3Fn%3D5&code=302"), follow_redirects=True)
    assert r.content == pattern(5)
    assert [h.status_code for h in r.history] == [302]
    r = client.post(fault_server.url_for("/redirect?to=/drain&code=307"), content=b"x" * 100,
                    follow_redirects=True)
    assert r.json()["length"] == 100


def test_cookies_persist(make_httpx: Make, fault_server) -> None:
    client = make_httpx()
    client.get(fault_server.url_for("/cookie?name=sid&value=abc"))
    assert client.cookies.get("sid") == "abc"
    assert "sid=abc" in client.get(fault_server.url_for("/cookie?name=o&value=1")).text


def test_gzip_decoded_once(make_httpx: Make, gzip_url: str) -> None:
    client = make_httpx()
    r = client.get(gzip_url)
    assert r.headers["content-encoding"] == "gzip"
    assert r.content == GZIP_PLAIN
    with client.stream("GET", gzip_url) as r:
        assert b"".join(r.iter_raw())[:2] == b"\x1f\x8b"


def test_read_timeout(make_httpx: Make, fault_server) -> None:
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout) as info:
        make_httpx().get(fault_server.url_for("/delay?seconds=5"), timeout=httpx.Timeout(1, connect=3))
    assert time.monotonic() - started < 4.5
    assert info.value.request.url.path == "/delay"


def test_read_timeout_mid_body(make_httpx: Make, fault_server) -> None:
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        make_httpx().get(fault_server.url_for("/stall?after=1000&seconds=5"), timeout=httpx.Timeout(1, connect=3))
    assert time.monotonic() - started < 4


def test_connection_refused(make_httpx: Make) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(httpx.ConnectError) as info:
        make_httpx().get(f"http://127.0.0.1:{port}/")
    assert info.value.request is not None


def test_truncated_body(make_httpx: Make, fault_server) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        make_httpx().get(fault_server.url_for("/truncate?length=1000&send=10"))


def test_truncated_body_streaming(make_httpx: Make, fault_server) -> None:
    with make_httpx().stream("GET", fault_server.url_for("/truncate?length=100000&send=10")) as r:
        assert r.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            r.read()


def test_reset_mid_body(make_httpx: Make, fault_server) -> None:
    with pytest.raises(httpx.ReadError):
        make_httpx().get(fault_server.url_for("/reset?when=mid&after=5000"))


def test_unsupported_protocol(make_httpx: Make) -> None:
    with pytest.raises(httpx.UnsupportedProtocol):
        make_httpx().get("ftp://127.0.0.1/x")


def test_tls_custom_ca(make_httpx: Make, tls_registry) -> None:
    r = make_httpx(verify=str(tls_registry.ca_file)).get(f"{tls_registry.url}/v2/")
    assert r.status_code == 200


def test_tls_untrusted(make_httpx: Make, tls_registry) -> None:
    with pytest.raises(httpx.ConnectError):
        make_httpx().get(f"{tls_registry.url}/v2/")


def test_close_idempotent(kind: str) -> None:
    from ocitransport.adapters.httpx import HTTPXTransport

    transport = HTTPXTransport() if kind == "ours" else httpx.HTTPTransport()
    with transport:
        pass
    transport.close()
    transport.close()


# ------------------------------------------------------------------------------------- async (ours)

def _async_client(kind: str, **kwargs: object) -> httpx.AsyncClient:
    from ocitransport.adapters.httpx import AsyncHTTPXTransport

    transport = AsyncHTTPXTransport() if kind == "ours" else httpx.AsyncHTTPTransport()
    return httpx.AsyncClient(transport=transport, **kwargs)  # type: ignore[arg-type]


def test_async_stream_both_ways(kind: str, fault_server) -> None:
    async def body() -> AsyncIterator[bytes]:
        for i in range(20):
            yield pattern(1000, i * 1000)
            await asyncio.sleep(0)

    async def main() -> None:
        async with _async_client(kind) as client:
            r = await client.post(fault_server.url_for("/drain"), content=body())
            assert r.json()["sha256"] == hashlib.sha256(pattern(20000)).hexdigest()
            got = b""
            async with client.stream("GET", fault_server.url_for("/bytes?n=2000000&chunked=1")) as r:
                async for chunk in r.aiter_bytes():
                    got += chunk
            assert got == pattern(2000000)
            many = await asyncio.gather(*(client.get(fault_server.url_for(f"/bytes?n={i}"))
                                          for i in range(1, 30)))
            assert [len(m.content) for m in many] == list(range(1, 30))

    asyncio.run(asyncio.wait_for(main(), 30))


def test_async_errors(kind: str, fault_server) -> None:
    async def main() -> None:
        async with _async_client(kind) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.get(fault_server.url_for("/delay?seconds=5"), timeout=httpx.Timeout(1, connect=3))
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get(fault_server.url_for("/truncate?length=1000&send=10"))

    asyncio.run(asyncio.wait_for(main(), 30))


def test_async_loop_not_blocked(kind: str, fault_server) -> None:
    async def main() -> None:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.05)
                ticks += 1

        task = asyncio.ensure_future(ticker())
        async with _async_client(kind) as client:
            r = await client.get(fault_server.url_for("/delay?seconds=1&n=3"))
        task.cancel()
        assert r.status_code == 200
        assert ticks >= 10

    asyncio.run(asyncio.wait_for(main(), 30))


def test_read_timeout_on_reused_connection(make_httpx: Make, fault_server) -> None:
    # A pooled connection has no connect phase: a stall there is a read timeout, not ConnectTimeout.
    client = make_httpx()
    assert client.get(fault_server.url_for("/bytes?n=10")).status_code == 200  # pools the connection
    with pytest.raises(httpx.ReadTimeout):
        client.get(fault_server.url_for("/stall?after=0&seconds=4"), timeout=httpx.Timeout(1, connect=3))


def test_head_cut_by_the_close(make_httpx: Make, raw_reply) -> None:
    """A connection closed inside the head (no blank line): an error, never an empty 200."""
    from tests.adapters.conftest import CUT_HEAD

    server = raw_reply(CUT_HEAD)
    with pytest.raises(httpx.RemoteProtocolError):
        make_httpx().get(server.url)


def _transport(kind: str, **kwargs: object) -> httpx.BaseTransport:
    from ocitransport.adapters.httpx import HTTPXTransport

    return HTTPXTransport(**kwargs) if kind == "ours" else httpx.HTTPTransport(**kwargs)  # type: ignore[arg-type]


def test_verify_takes_an_ssl_context(kind: str, tls_registry) -> None:
    """httpx 0.28's way to set the CAs: ``verify=ssl.create_default_context(cafile=...)``."""
    import ssl

    context = ssl.create_default_context(cafile=str(tls_registry.ca_file))
    with httpx.Client(transport=_transport(kind, verify=context)) as client:
        assert client.get(f"{tls_registry.url}/v2/").status_code == 200
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    with httpx.Client(transport=_transport(kind, verify=unverified)) as client:
        assert client.get(f"{tls_registry.url}/v2/").status_code == 200
    with httpx.Client(transport=_transport(kind, verify=ssl.create_default_context())) as client, \
            pytest.raises(httpx.ConnectError):
        client.get(f"{tls_registry.url}/v2/")


def test_trace_extension_is_called(make_httpx: Make, fault_server) -> None:
    events: list[tuple[str, dict]] = []
    r = make_httpx().get(fault_server.url_for("/bytes?n=5"),
                         extensions={"trace": lambda name, info: events.append((name, info))})
    assert r.status_code == 200
    names = [name for name, _ in events]
    for step in ("send_request_headers", "receive_response_headers"):
        assert f"http11.{step}.started" in names and f"http11.{step}.complete" in names
    assert names.index("http11.send_request_headers.started") < names.index(
        "http11.receive_response_headers.complete")
    started = dict(events)["http11.send_request_headers.started"]["request"]
    assert started.method == b"GET" and started.url.target == b"/bytes?n=5"
    version, status, _reason, headers = dict(events)["http11.receive_response_headers.complete"]["return_value"]
    assert (version, status) == (b"HTTP/1.1", 200)
    assert (b"Content-Length", b"5") in [(k.title(), v) for k, v in headers]
    # A new connection: httpcore's connect events come first (what `httpx -v` prints).
    assert names[:2] == ["connection.connect_tcp.started", "connection.connect_tcp.complete"]
    stream = dict(events)["connection.connect_tcp.complete"]["return_value"]
    assert stream.get_extra_info("server_addr") == ("127.0.0.1", int(fault_server.url.rsplit(":", 1)[1]))


def test_unsupported_protocol_words(make_httpx: Make) -> None:
    with pytest.raises(httpx.UnsupportedProtocol, match="Request URL has an unsupported protocol 'ftp://'."):
        make_httpx().get("ftp://127.0.0.1/x")


def test_out_of_range_port_is_connect_error(make_httpx: Make) -> None:
    with pytest.raises(httpx.ConnectError):
        make_httpx().get("http://127.0.0.1:70000/")


def test_async_under_trio(kind: str, fault_server) -> None:
    """httpx's AsyncClient on trio (through anyio): requests, streams and errors."""
    trio = pytest.importorskip("trio")

    async def main() -> None:
        with trio.fail_after(30):
            async with _async_client(kind) as client:
                r = await client.get(fault_server.url_for("/bytes?n=100"))
                assert r.content == pattern(100)
                got = b""
                async with client.stream("GET", fault_server.url_for("/bytes?n=300000&chunked=1")) as r:
                    async for chunk in r.aiter_bytes():
                        got += chunk
                assert got == pattern(300000)
                r = await client.post(fault_server.url_for("/drain"), content=b"x" * 1000)
                assert r.json()["length"] == 1000
                with pytest.raises(httpx.RemoteProtocolError):
                    await client.get(fault_server.url_for("/truncate?length=1000&send=10"))

    trio.run(main)


class _DeafServer:
    """Accepts, reads the request head, then reads nothing more for ``seconds`` and closes: an upload to
    it stops once the socket buffers are full."""

    def __init__(self, seconds: float) -> None:
        import threading

        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(5)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/upload"
        self.seconds = seconds
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data and len(data) < 65536:
                more = conn.recv(4096)
                if not more:
                    return
                data += more
            time.sleep(self.seconds)

    def stop(self) -> None:
        self.thread.join(self.seconds + 6)
        self.sock.close()


@pytest.mark.parametrize("face", ["sync", "async"])
def test_write_timeout_with_a_longer_read_timeout(kind: str, face: str) -> None:
    """``Timeout(9, write=0.5)``: an upload the server does not read fails after about 0.5 s of no
    progress, not after the read timeout."""
    from ocitransport.adapters.httpx import AsyncHTTPXTransport, HTTPXTransport

    server = _DeafServer(seconds=3)
    data = b"*" * (64 << 20)
    timeout = httpx.Timeout(9, write=0.5)
    start = time.monotonic()
    try:
        if face == "sync":
            with httpx.Client(transport=HTTPXTransport() if kind == "ours" else httpx.HTTPTransport()) as c, \
                    pytest.raises(httpx.WriteTimeout):
                c.put(server.url, content=data, timeout=timeout)
        else:
            async def main() -> None:
                transport = AsyncHTTPXTransport() if kind == "ours" else httpx.AsyncHTTPTransport()
                async with httpx.AsyncClient(transport=transport) as c:
                    with pytest.raises(httpx.WriteTimeout):
                        await c.put(server.url, content=data, timeout=timeout)

            asyncio.run(asyncio.wait_for(main(), 20))
        assert time.monotonic() - start < 2.5
    finally:
        server.stop()
