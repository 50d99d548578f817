"""Self-tests of the fault proxy (tests/servers/proxy.py) in front of a real registry, with plain http.client."""

from __future__ import annotations

import http.client
import os
import socket
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from types import SimpleNamespace

import pytest

from tests.servers import raw
from tests.servers.proxy import FaultProxy
from tests.servers.registry import RegistryServer

Outcome = tuple[int, bytes, dict[str, str]] | BaseException


def _through(proxy: FaultProxy) -> SimpleNamespace:
    """Something tests.servers.raw accepts as a registry, reaching it through ``proxy``."""
    return SimpleNamespace(port=proxy.port, host=proxy.host, tls=False, auth="none", token_server=None)


def _get(proxy: FaultProxy, path: str, *, method: str = "GET", body: bytes | None = None,
         timeout: float = 10.0, connection: http.client.HTTPConnection | None = None,
         headers: dict[str, str] | None = None) -> Outcome:
    """One request through the proxy: ``(status, body, headers)`` or the exception the client got."""
    conn = connection or http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        return response.status, data, {k.lower(): v for k, v in response.getheaders()}
    except (OSError, http.client.HTTPException) as exc:
        return exc
    finally:
        if connection is None:
            conn.close()


@pytest.fixture
def image(registry: RegistryServer, repo_name: str) -> raw.PushedImage:
    return raw.push_image(registry, repo_name, layers=[os.urandom(200_000)])


@pytest.fixture
def proxy(registry: RegistryServer, proxy_factory: Callable[..., FaultProxy]) -> FaultProxy:
    return proxy_factory(registry, seed=7)


def _blob_path(image: raw.PushedImage) -> str:
    return f"/v2/{image.repo}/blobs/{image.layer_digests[0]}"


def test_forwards_keep_alive_requests_unchanged(proxy: FaultProxy, image: raw.PushedImage) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    try:
        outcomes = [_get(proxy, _blob_path(image), connection=conn) for _ in range(3)]
        head = _get(proxy, _blob_path(image), method="HEAD", connection=conn)
    finally:
        conn.close()
    for outcome in outcomes:
        assert not isinstance(outcome, BaseException)
        assert outcome[0] == 200 and outcome[1] == image.layers[0]
    assert not isinstance(head, BaseException) and head[0] == 200 and head[1] == b""
    stats = proxy.stats
    assert stats["connections"] == 1 and stats["requests"] == 4
    assert stats["response_body_bytes"] == 3 * len(image.layers[0])
    assert [r[:3] for r in proxy.records] == [("GET", _blob_path(image), 200)] * 3 + [
        ("HEAD", _blob_path(image), 200)]
    assert proxy.faults == 0


def test_uploads_through_the_proxy_and_counts_body_bytes(proxy: FaultProxy, repo_name: str,
                                                         registry: RegistryServer) -> None:
    data = os.urandom(300_000)
    digest = raw.push_blob(_through(proxy), repo_name, data)  # type: ignore[arg-type]
    assert raw.get_blob(registry, repo_name, digest) == data
    assert proxy.stats["request_body_bytes"] == len(data)
    put = [r for r in proxy.records if r.method == "PUT"]
    assert len(put) == 1 and put[0].status == 201 and put[0].request_body_bytes == len(data)


def test_answer_status_is_scripted_and_one_shot(proxy: FaultProxy, image: raw.PushedImage) -> None:
    proxy.answer_status(503, times=2, path_contains="/blobs/")
    proxy.answer_status(429, retry_after="3", method="GET", path_contains="/manifests/")
    first, second, third = (_get(proxy, _blob_path(image)) for _ in range(3))
    assert not isinstance(first, BaseException) and first[0] == 503 and b"UNAVAILABLE" in first[1]
    assert not isinstance(second, BaseException) and second[0] == 503
    assert not isinstance(third, BaseException) and third[0] == 200
    limited = _get(proxy, f"/v2/{image.repo}/manifests/{image.tag}")
    assert not isinstance(limited, BaseException)
    assert limited[0] == 429 and limited[2]["retry-after"] == "3" and b"TOOMANYREQUESTS" in limited[1]
    assert proxy.stats["answer_status"] == 3
    assert [r.status for r in proxy.records] == [503, 503, 200, 429]


def test_hold_request_delays_matching_requests_only(proxy: FaultProxy, image: raw.PushedImage) -> None:
    proxy.hold_request(1.0, method="GET", path_contains="/blobs/")
    took = []
    for method in ("HEAD", "GET", "GET"):  # the HEAD does not match; the second GET finds the script used up
        started = time.monotonic()
        outcome = _get(proxy, _blob_path(image), method=method)
        took.append(time.monotonic() - started)
        assert not isinstance(outcome, BaseException) and outcome[0] == 200
    assert took[1] >= 1.0 > took[0]
    assert took[2] < 1.0
    assert [r.fault for r in proxy.records] == ["", "hold", ""]
    assert proxy.stats["hold"] == proxy.faults == 1
    with pytest.raises(ValueError):
        proxy.hold_request(-1)


def test_rates_are_reproducible_from_the_seed(registry: RegistryServer, image: raw.PushedImage,
                                              proxy_factory: Callable[..., FaultProxy]) -> None:
    sequences = []
    for _ in range(2):
        proxy = proxy_factory(registry, seed=11)
        proxy.set_rates(status_500=0.3, status_502=0.1)
        proxy.match(method="GET", path_contains="/blobs/")
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
        try:
            statuses = [o[0] for o in (_get(proxy, _blob_path(image), connection=conn) for _ in range(30))
                        if not isinstance(o, BaseException)]
            # the match filter: other methods are never hit
            assert all(not isinstance(o, BaseException) and o[0] == 200
                       for o in (_get(proxy, _blob_path(image), method="HEAD", connection=conn)
                                 for _ in range(5)))
        finally:
            conn.close()
        assert len(statuses) == 30
        sequences.append(statuses)
        assert proxy.stats["status_500"] == statuses.count(500) and proxy.stats["status_502"] == statuses.count(502)
    assert sequences[0] == sequences[1]
    assert 3 <= sequences[0].count(500) <= 18 and 200 in sequences[0]


def test_burst_repeats_an_injected_status(proxy: FaultProxy, image: raw.PushedImage) -> None:
    proxy.burst = 3
    proxy.set_rates(status_503=0.1)
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    try:
        outcomes = [_get(proxy, _blob_path(image), method="HEAD", connection=conn) for _ in range(40)]
    finally:
        conn.close()
    statuses = "".join("x" if o[0] == 503 else "." for o in outcomes if not isinstance(o, BaseException))
    assert len(statuses) == 40
    runs = [len(run) for run in statuses.split(".") if run]
    assert runs and all(n >= 3 for n in runs), statuses
    assert proxy.stats["status_503"] == statuses.count("x")


def test_429_retry_after_as_seconds_and_as_date(proxy: FaultProxy, image: raw.PushedImage) -> None:
    proxy.retry_after = 30
    proxy.set_rates(status_429=1.0)
    seconds = _get(proxy, _blob_path(image))
    proxy.set_rates(status_429_date=1.0)
    dated = _get(proxy, _blob_path(image))
    assert not isinstance(seconds, BaseException) and seconds[0] == 429 and seconds[2]["retry-after"] == "30"
    assert not isinstance(dated, BaseException) and dated[0] == 429
    ahead = parsedate_to_datetime(dated[2]["retry-after"]).timestamp() - time.time()
    assert 27 <= ahead <= 31


def test_resets_and_truncation_reach_the_client(proxy: FaultProxy, image: raw.PushedImage,
                                                registry: RegistryServer) -> None:
    size = len(image.layers[0])
    proxy.set_rates(reset_before=1.0)
    assert isinstance(_get(proxy, _blob_path(image)), (ConnectionError, http.client.RemoteDisconnected))
    proxy.set_rates(reset_during=1.0)
    assert isinstance(_get(proxy, _blob_path(image)), (ConnectionError, http.client.IncompleteRead))
    proxy.set_rates(truncate=1.0)
    truncated = _get(proxy, _blob_path(image))
    assert isinstance(truncated, http.client.IncompleteRead) and len(truncated.partial) == size // 2
    proxy.set_rates(wrong_length=1.0)
    short = _get(proxy, _blob_path(image))
    assert not isinstance(short, BaseException) and short[0] == 200
    assert len(short[1]) < size and short[1] == image.layers[0][:len(short[1])]
    # reset_after: the registry did the work, the client never heard of it
    proxy.set_rates(reset_after=1.0)
    tag_path = f"/v2/{image.repo}/manifests/after-reset"
    put = _get(proxy, tag_path, method="PUT", body=image.manifest, headers={"Content-Type": image.media_type})
    assert isinstance(put, (ConnectionError, http.client.RemoteDisconnected))
    proxy.set_rates()
    assert raw.get_manifest(registry, image.repo, "after-reset").status == 200
    stats = proxy.stats
    assert [stats[k] for k in ("reset_before", "reset_during", "truncate", "wrong_length", "reset_after")] == [
        1, 1, 1, 1, 1]
    assert [r.fault for r in proxy.records] == ["reset_before", "reset_during", "truncate", "wrong_length",
                                                 "reset_after"]


def test_stall_outlasts_a_client_timeout_and_trickle_is_slow(proxy: FaultProxy,
                                                             image: raw.PushedImage) -> None:
    proxy.stall_seconds = 3.0
    proxy.set_rates(stall=1.0)
    started = time.monotonic()
    stalled = _get(proxy, _blob_path(image), timeout=0.5)
    assert isinstance(stalled, (TimeoutError, socket.timeout))
    assert time.monotonic() - started < 2.5
    proxy.trickle_rate = 400_000  # bytes/s: the 200 kB layer takes about half a second
    proxy.set_rates(trickle=1.0)
    started = time.monotonic()
    slow = _get(proxy, _blob_path(image))
    elapsed = time.monotonic() - started
    assert not isinstance(slow, BaseException) and slow[1] == image.layers[0]
    assert 0.35 <= elapsed <= 5.0


def test_cut_request_body_drops_the_upload_midway(proxy: FaultProxy, repo_name: str,
                                                  registry: RegistryServer) -> None:
    started = raw.request(registry, "POST", f"/v2/{repo_name}/blobs/uploads/")
    location = started.headers["Location"]
    path = location.split(registry.host, 1)[-1]
    proxy.cut_request_body(1000, method="PATCH")
    data = os.urandom(500_000)
    cut = _get(proxy, path, method="PATCH", body=data)
    assert isinstance(cut, (ConnectionError, http.client.RemoteDisconnected, BrokenPipeError))
    (record,) = proxy.records
    assert record[:4] == ("PATCH", path.split("?")[0], 0, 1000) and record.fault == "cut_request"
    assert proxy.stats["request_body_bytes"] == 1000
    # one-shot: the next request passes
    assert raw.request(_through(proxy), "GET", f"/v2/{repo_name}/tags/list").status in (200, 404)  # type: ignore[arg-type]


def test_cut_response_body(proxy: FaultProxy, image: raw.PushedImage) -> None:
    proxy.cut_response_body(4096, path_contains="/blobs/", times=1)
    cut = _get(proxy, _blob_path(image))
    assert isinstance(cut, http.client.IncompleteRead) and len(cut.partial) == 4096
    whole = _get(proxy, _blob_path(image))
    assert not isinstance(whole, BaseException) and whole[1] == image.layers[0]


def test_down_and_up_and_refuse(proxy: FaultProxy, image: raw.PushedImage) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
    try:
        assert not isinstance(_get(proxy, _blob_path(image), connection=conn), BaseException)
        proxy.set_down(True)
        assert isinstance(_get(proxy, _blob_path(image), connection=conn), (OSError, http.client.HTTPException))
    finally:
        conn.close()
    assert isinstance(_get(proxy, _blob_path(image)), (OSError, http.client.HTTPException))
    proxy.set_down(False)
    assert not isinstance(_get(proxy, _blob_path(image)), BaseException)
    proxy.set_rates(refuse=1.0)
    assert isinstance(_get(proxy, _blob_path(image)), (OSError, http.client.HTTPException))
    assert proxy.stats["refuse"] == 1
    proxy.reset()
    assert proxy.stats["requests"] == 0 and proxy.records == []
    assert not isinstance(_get(proxy, _blob_path(image)), BaseException)


def test_unknown_kind_is_rejected(proxy: FaultProxy) -> None:
    with pytest.raises(ValueError, match="unknown fault kinds"):
        proxy.set_rates(explode=0.1)


def test_a_tls_hello_is_refused_at_once(proxy: FaultProxy) -> None:
    """Clients that try HTTPS first (loopback registries) must learn at once that there is none."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(32))
        try:
            assert sock.recv(100) == b""
        except ConnectionResetError:
            pass
    assert time.monotonic() - started < 2 and proxy.stats["requests"] == 0
