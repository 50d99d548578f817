"""Redirects against the fault server: one Layer generator, both faces."""

from __future__ import annotations

import asyncio
import hashlib
import urllib.parse
from collections.abc import Iterator

import pytest

from ocitransport import AsyncClient, Client, RedirectError, Request
from ocitransport.redirects import Redirects
from tests.servers.faults import FaultServer


def redirect(server: FaultServer, to: str, code: int = 302) -> str:
    return server.url_for(f"/redirect?code={code}&to={urllib.parse.quote(to, safe='')}")


def echo_headers(response) -> dict[str, str]:
    return {k.lower(): v for k, v in response.json()["headers"]}


@pytest.fixture
def other_server() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


@pytest.fixture
def client() -> Iterator[Client]:
    with Client() as c:
        yield c


AUTH = {"Authorization": "Bearer secret", "Cookie": "a=b", "Proxy-Authorization": "Basic x",
        "X-Keep": "1"}


def test_relative_location_and_final_url(fault_server, client: Client) -> None:
    r = client.get(fault_server.url_for("/redirect?to=/echo"))
    assert r.status == 200 and r.json()["path"] == "/echo"
    assert r.url == fault_server.url_for("/echo")


def test_follow_can_be_turned_off(fault_server) -> None:
    with Client(follow_redirects=False) as c:
        r = c.get(fault_server.url_for("/redirect?to=/echo"))
        assert r.status == 302 and r.headers["Location"] == "/echo"
        r = c.get(fault_server.url_for("/redirect?to=/echo"), follow_redirects=True)
        assert r.status == 200
    with Client() as c:
        assert c.round_trip(Request("GET", fault_server.url_for("/redirect?to=/echo"))).status == 302


def test_credentials_kept_on_the_same_origin(fault_server, client: Client) -> None:
    r = client.get(redirect(fault_server, fault_server.url_for("/echo"), 307), headers=AUTH)
    h = echo_headers(r)
    assert h["authorization"] == "Bearer secret" and h["cookie"] == "a=b" and h["x-keep"] == "1"


def test_credentials_dropped_on_another_port(fault_server, other_server, client: Client) -> None:
    r = client.get(redirect(fault_server, other_server.url_for("/echo")), headers=AUTH)
    h = echo_headers(r)
    assert "authorization" not in h and "cookie" not in h and "proxy-authorization" not in h
    assert h["x-keep"] == "1"


def test_credentials_dropped_on_another_host(fault_server, client: Client) -> None:
    target = f"http://localhost:{fault_server.port}/echo"  # same port, other host name
    r = client.get(redirect(fault_server, target), headers=AUTH)
    assert "authorization" not in echo_headers(r)


def test_303_becomes_get_without_body(fault_server, client: Client) -> None:
    r = client.post(redirect(fault_server, "/echo", 303), body=b"payload",
                    headers={"Content-Type": "text/plain"})
    body = r.json()
    assert body["method"] == "GET" and body["body_length"] == 0
    assert "content-type" not in echo_headers(r)


@pytest.mark.parametrize("code", [301, 302])
def test_post_on_301_302_becomes_get(fault_server, client: Client, code: int) -> None:
    assert client.post(redirect(fault_server, "/echo", code), body=b"x").json()["method"] == "GET"


@pytest.mark.parametrize("code", [307, 308])
def test_307_308_resend_method_and_body(fault_server, client: Client, code: int) -> None:
    data = b"z" * 100_000
    r = client.put(redirect(fault_server, "/echo", code), body=data)
    body = r.json()
    assert body["method"] == "PUT" and body["body_sha256"] == hashlib.sha256(data).hexdigest()


def test_307_with_a_one_shot_body_is_refused(fault_server, client: Client) -> None:
    def body() -> Iterator[bytes]:
        yield b"once"

    with pytest.raises(RedirectError, match="one-shot"):
        client.post(redirect(fault_server, "/echo", 307), body=body())


def chain(server: FaultServer, hops: int) -> str:
    """A URL that redirects ``hops`` times before reaching /echo."""
    path = "/echo"
    for _ in range(hops):
        path = "/redirect?to=" + urllib.parse.quote(path, safe="")
    return server.url_for(path)


def test_redirect_limit_counts_hops(fault_server) -> None:
    with Client(max_redirects=3) as c:
        assert c.get(chain(fault_server, 3)).status == 200
        fault_server.reset()
        with pytest.raises(RedirectError, match="3 redirects"):
            c.get(chain(fault_server, 4))
        assert len(fault_server.requests) == 4  # the first request and three hops, no more


def test_ten_hops_allowed_eleven_refused(fault_server, client: Client) -> None:
    assert client.get(chain(fault_server, 10)).status == 200
    with pytest.raises(RedirectError, match="10 redirects"):
        client.get(chain(fault_server, 11))


def test_check_hook_may_refuse(fault_server, other_server) -> None:
    seen: list[tuple[str, str]] = []

    def guard(src: str, dst: str) -> None:
        seen.append((src, dst))
        if str(other_server.port) in dst:
            raise RedirectError("blocked by policy")

    with Client(redirect_check=guard) as c:
        assert c.get(fault_server.url_for("/redirect?to=/echo")).status == 200
        with pytest.raises(RedirectError, match="policy"):
            c.get(redirect(fault_server, other_server.url_for("/echo")))
    assert seen[0] == (fault_server.url_for("/redirect?to=/echo"), fault_server.url_for("/echo"))


def test_non_http_location_is_refused(fault_server, client: Client) -> None:
    with pytest.raises(RedirectError, match="scheme"):
        client.get(redirect(fault_server, "file:///etc/passwd"))


def test_streaming_intermediate_responses_are_closed(fault_server, client: Client) -> None:
    with client.stream("GET", fault_server.url_for("/redirect?to=/bytes%3Fn%3D1000")) as r:
        assert len(r.read()) == 1000
    assert client.engine.stats()["active"] == 0


def test_submit_and_map_follow_redirects(fault_server, client: Client) -> None:
    url = fault_server.url_for("/redirect?to=/echo")
    assert client.submit("GET", url).result(timeout=10).json()["path"] == "/echo"
    results = list(client.map([Request("GET", url) for _ in range(20)], concurrency=5))
    assert [r.status for r in results] == [200] * 20
    results = list(client.map([Request("GET", url)], follow_redirects=False))
    assert results[0].status == 302


def test_async_face_is_the_same_layer(fault_server, other_server) -> None:
    async def main() -> None:
        async with AsyncClient() as c:
            r = await c.get(redirect(fault_server, other_server.url_for("/echo")), headers=AUTH)
            assert "authorization" not in echo_headers(r)
            r = await c.post(redirect(fault_server, "/echo", 303), body=b"x")
            assert r.json()["method"] == "GET"

            async def once():
                yield b"x"

            with pytest.raises(RedirectError):
                await c.post(redirect(fault_server, "/echo", 308), body=once())

    asyncio.run(asyncio.wait_for(main(), 30))


def test_layer_over_any_round_tripper(fault_server) -> None:
    with Client(follow_redirects=False) as c:
        layer = Redirects(c, max_redirects=2)
        assert layer.round_trip(Request("GET", fault_server.url_for("/redirect?to=/echo"))).status == 200


def test_streaming_requests_redirected_in_map_and_submit(fault_server, client: Client) -> None:
    url = fault_server.url_for("/redirect?to=/bytes%3Fn%3D5000")
    out = list(client.map([Request("GET", url, stream=True) for _ in range(5)], concurrency=5))
    assert [len(r.read()) for r in out] == [5000] * 5
    r = client.submit(Request("GET", url, stream=True)).result(timeout=10)
    assert len(r.read()) == 5000
    assert client.engine.stats()["active"] == 0


def test_cancel_during_a_redirect_chain(fault_server, client: Client) -> None:
    import concurrent.futures

    url = fault_server.url_for("/redirect?to=/stall%3Fafter%3D0%26seconds%3D10")
    fut = client.submit("GET", url)
    import time

    deadline = time.monotonic() + 5
    while len(fault_server.requests_to("/stall")) < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fut.cancel()
    with pytest.raises(concurrent.futures.CancelledError):
        fut.result(timeout=2)
    deadline = time.monotonic() + 2
    while client.engine.stats()["active"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert client.engine.stats()["active"] == 0


def test_drive_future_runs_a_layer_on_the_engines_futures(fault_server, client: Client) -> None:
    """``roundtrip.drive_future``: a layer's generator on futures, each request a hop of the engine; a
    step it cannot take on futures fails the flow; ``map`` counts redirect hops as transfers in flight."""
    from ocitransport.roundtrip import Sleep, drive_future

    layer = Redirects(client.engine)
    flow = drive_future(layer.handle(Request("GET", fault_server.url_for("/redirect?to=/echo"))), client.engine)
    assert flow.result(timeout=10).json()["path"] == "/echo"
    assert flow.hops == 2

    def sleeper():  # type: ignore[no-untyped-def]
        response = yield Request("GET", fault_server.url_for("/echo"))
        yield Sleep(0)
        return response

    with pytest.raises(TypeError, match="only send requests"):
        drive_future(sleeper(), client.engine).result(timeout=10)

    url = fault_server.url_for("/redirect?to=/delay%3Fseconds%3D0.05")
    peak = 0
    for r in client.map([Request("GET", url) for _ in range(12)], concurrency=3):
        stats = client.engine.stats()
        peak = max(peak, stats["active"] + stats["queued"])
        assert r.status == 200
    assert 0 < peak <= 3
