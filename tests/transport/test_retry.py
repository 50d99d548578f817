"""The retry layer against a real misbehaving server (tests/servers/faults.py): statuses, resets,
Retry-After, body rewinds, giving up with the registry's error intact, both faces."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import pytest

import ocitransport
from ocitransport import transport
from ocitransport.exceptions import ConnectError, ReadError
from ocitransport.messages import Request
from tests.servers.faults import FaultServer, Step


@pytest.fixture
def client() -> Iterator[ocitransport.Client]:
    with ocitransport.Client() as c:
        yield c


FAST = transport.Backoff(duration=0.01, factor=1.0, jitter=0.0, steps=3)
ERROR_BODY = json.dumps({"errors": [{"code": "UNAVAILABLE", "message": "try later"}]}).encode()


def _busy(status: int = 503, retry_after: str | None = None) -> Step:
    headers = [("Content-Type", "application/json")]
    if retry_after is not None:
        headers.append(("Retry-After", retry_after))
    return Step(status, headers, ERROR_BODY)


def test_statuses_are_retried_until_success(fault_server: FaultServer, client: ocitransport.Client) -> None:
    fault_server.script([_busy(), _busy(502), None], path="/bytes")
    rt = transport.new_retry(client, backoff=FAST)
    response = rt.round_trip(Request("GET", fault_server.url_for("/bytes?n=10")))
    assert response.status == 200 and len(response.content) == 10
    assert response.extensions["retries"] == 2
    assert len(fault_server.requests_to("/bytes")) == 3


def test_gives_up_with_the_last_answer_and_its_error_body(fault_server: FaultServer,
                                                          client: ocitransport.Client) -> None:
    fault_server.script([_busy()] * 5, path="/bytes")
    rt = transport.new_retry(client, backoff=FAST)
    response = rt.round_trip(Request("GET", fault_server.url_for("/bytes?n=10")))
    assert response.status == 503 and response.extensions["retries"] == 2
    assert len(fault_server.requests_to("/bytes")) == 3  # steps=3: three attempts in all, as upstream
    with pytest.raises(transport.Error) as info:
        transport.check_error(response, 200)
    assert "UNAVAILABLE: try later" in str(info.value)


def test_a_status_outside_the_set_is_returned_at_once(fault_server: FaultServer,
                                                      client: ocitransport.Client) -> None:
    fault_server.script([Step(404, [("Content-Type", "application/json")], ERROR_BODY)], path="/bytes")
    response = transport.new_retry(client, backoff=FAST).round_trip(
        Request("GET", fault_server.url_for("/bytes?n=10")))
    assert response.status == 404 and "retries" not in response.extensions
    assert len(fault_server.requests_to("/bytes")) == 1


def test_connection_resets_are_retried_then_raised(fault_server: FaultServer, client: ocitransport.Client) -> None:
    rt = transport.new_retry(client, backoff=FAST)
    started = time.monotonic()
    with pytest.raises((ReadError, ConnectError)):
        rt.round_trip(Request("GET", fault_server.url_for("/reset?when=before")))
    assert len(fault_server.requests_to("/reset")) == 3
    assert time.monotonic() - started < 10


def test_bodies_are_sent_whole_on_every_attempt(fault_server: FaultServer, client: ocitransport.Client) -> None:
    fault_server.script([_busy(), _busy(), None], path="/drain")
    body = b"x" * 100_000
    response = transport.new_retry(client, backoff=FAST).round_trip(
        Request("PUT", fault_server.url_for("/drain"), body=body))
    assert response.status == 200 and response.json()["length"] == len(body)
    assert [r.body_length for r in fault_server.requests_to("/drain")] == [len(body)] * 3


def test_a_body_that_cannot_be_replayed_is_not_retried(fault_server: FaultServer,
                                                       client: ocitransport.Client) -> None:
    fault_server.script([_busy(), None], path="/drain")
    response = transport.new_retry(client, backoff=FAST).round_trip(
        Request("PUT", fault_server.url_for("/drain"), body=iter([b"a" * 10, b"b" * 10])))
    assert response.status == 503
    assert len(fault_server.requests_to("/drain")) == 1


def test_retry_after_is_waited_and_a_long_one_is_not(fault_server: FaultServer,
                                                     client: ocitransport.Client) -> None:
    rt = transport.new_retry(client, backoff=FAST, max_retry_after=5)
    fault_server.script([_busy(429, "1"), None], path="/bytes")
    started = time.monotonic()
    response = rt.round_trip(Request("GET", fault_server.url_for("/bytes?n=1")))
    assert response.status == 200 and time.monotonic() - started >= 0.95
    assert response.extensions["retry_wait"] >= 1.0

    fault_server.script([_busy(429, "3600"), None], path="/bytes")
    started = time.monotonic()
    response = rt.round_trip(Request("GET", fault_server.url_for("/bytes?n=1")))
    assert response.status == 429 and time.monotonic() - started < 1.0  # beyond the cap: give up at once


def test_async_face(fault_server: FaultServer) -> None:
    fault_server.script([_busy(), None], path="/bytes")
    fault_server.script([_busy()] * 5, path="/drain")

    async def main() -> tuple[int, int, int]:
        async with ocitransport.AsyncClient() as ac:
            rt = transport.new_retry(ac, backoff=FAST)
            ok = await rt.round_trip_async(Request("GET", fault_server.url_for("/bytes?n=5")))
            busy = await rt.round_trip_async(Request("PUT", fault_server.url_for("/drain"), body=b"abc"))
            with pytest.raises((ReadError, ConnectError)):
                await rt.round_trip_async(Request("GET", fault_server.url_for("/reset?when=before")))
            return ok.status, busy.status, busy.extensions["retries"]

    assert asyncio.run(asyncio.wait_for(main(), 30)) == (200, 503, 2)
    # Three attempts; libcurl itself re-sends once more when the first went out on a kept-alive
    # connection that turned out dead (it cannot know the server reset that request, not an old one).
    assert 3 <= len(fault_server.requests_to("/reset")) <= 4
