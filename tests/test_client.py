"""The sync facade against a real registry and the fault server (verified with independent raw helpers)."""

from __future__ import annotations

import concurrent.futures
import json
import os
import threading
import time
import urllib.parse

import pytest

from ocitransport import Client, ClientClosed, ConnectError, Request, Response, Timeout
from tests.servers import raw
from tests.servers.faults import pattern


def absolute(registry, location: str) -> str:
    return urllib.parse.urljoin(registry.url + "/", location)


def with_digest(url: str, digest: str) -> str:
    return url + ("&" if "?" in url else "?") + "digest=" + urllib.parse.quote(digest)


def test_blob_push_by_post_put_and_read_back(registry, repo_name) -> None:
    data = os.urandom(300_000)
    digest = raw.sha256_digest(data)
    with Client() as c:
        r = c.post(f"{registry.url}/v2/{repo_name}/blobs/uploads/")
        assert r.status == 202, r.text
        r = c.put(with_digest(absolute(registry, r.headers["Location"]), digest), body=data,
                  headers={"Content-Type": "application/octet-stream"})
        assert r.status == 201, r.text
        assert r.headers["Docker-Content-Digest"] == digest
        assert raw.get_blob(registry, repo_name, digest) == data  # independent check
        h = c.head(f"{registry.url}/v2/{repo_name}/blobs/{digest}")
        assert h.status == 200 and int(h.headers["Content-Length"]) == len(data) and h.content == b""
        g = c.get(f"{registry.url}/v2/{repo_name}/blobs/{digest}", extensions={"sha256": True})
        assert g.content == data and "sha256:" + g.extensions["sha256"] == digest


def test_chunked_upload_with_patch_then_delete(registry, repo_name) -> None:
    parts = [os.urandom(100_000), os.urandom(50_000)]
    data = b"".join(parts)
    digest = raw.sha256_digest(data)
    with Client() as c:
        location = absolute(registry, c.post(f"{registry.url}/v2/{repo_name}/blobs/uploads/").headers["Location"])
        offset = 0
        for part in parts:
            r = c.patch(location, body=part, headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{offset + len(part) - 1}"})
            assert r.status == 202, r.text
            offset += len(part)
            location = absolute(registry, r.headers["Location"])
        r = c.put(with_digest(location, digest))  # no body: Content-Length: 0
        assert r.status == 201, r.text
        assert raw.blob_exists(registry, repo_name, digest)
        r = c.delete(f"{registry.url}/v2/{repo_name}/blobs/{digest}")
        assert r.status == 202, r.text
        assert not raw.blob_exists(registry, repo_name, digest)


def test_manifest_put_get_delete(registry, repo_name) -> None:
    config = b"{}"
    layer = os.urandom(1000)
    cd, ld = raw.push_blob(registry, repo_name, config), raw.push_blob(registry, repo_name, layer)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": raw.OCI_MANIFEST,
        "config": {"mediaType": raw.OCI_CONFIG, "digest": cd, "size": len(config)},
        "layers": [{"mediaType": raw.OCI_LAYER, "digest": ld, "size": len(layer)}],
    }).encode()
    with Client() as c:
        r = c.put(f"{registry.url}/v2/{repo_name}/manifests/v1", body=manifest,
                  headers={"Content-Type": raw.OCI_MANIFEST})
        assert r.status == 201, r.text
        digest = r.headers["Docker-Content-Digest"]
        r = c.get(f"{registry.url}/v2/{repo_name}/manifests/v1", headers={"Accept": raw.MANIFEST_ACCEPT})
        assert r.status == 200 and r.content == manifest and r.headers["Content-Type"] == raw.OCI_MANIFEST
        assert c.delete(f"{registry.url}/v2/{repo_name}/manifests/{digest}").status == 202
        assert c.get(f"{registry.url}/v2/{repo_name}/manifests/{digest}").status == 404


def test_shorthands_send_their_method(fault_server) -> None:
    with Client() as c:
        for name in ("get", "put", "post", "patch", "delete"):
            assert getattr(c, name)(fault_server.url_for("/echo")).json()["method"] == name.upper()
        assert c.head(fault_server.url_for("/echo")).status == 200
        assert c.request("OPTIONS", fault_server.url_for("/echo")).json()["method"] == "OPTIONS"
        assert c.send(Request("GET", fault_server.url_for("/echo"))).status == 200


def test_stream_context_manager_closes(fault_server) -> None:
    with Client() as c:
        with c.stream("GET", fault_server.url_for("/bytes?n=100000")) as r:
            assert r.is_streaming
            assert r.read() == pattern(100_000)
        with c.stream("GET", fault_server.url_for("/bytes?n=10000000")) as r:
            assert len(r._stream.read(10)) == 10
        assert c.engine.stats()["active"] == 0


def test_submit_forms_and_cancel(fault_server) -> None:
    with Client() as c:
        f1 = c.submit(Request("GET", fault_server.url_for("/bytes?n=7")))
        f2 = c.submit("POST", fault_server.url_for("/drain"), body=b"abc")
        assert isinstance(f1, concurrent.futures.Future)
        assert f1.result(timeout=10).content == pattern(7)
        assert f2.result(timeout=10).json()["length"] == 3
        done, _ = concurrent.futures.wait([c.submit("GET", fault_server.url_for("/bytes?n=1"))
                                          for _ in range(10)], timeout=10)
        assert len(done) == 10
        seen: list[Response] = []
        f3 = c.submit("GET", fault_server.url_for("/bytes?n=2"))
        f3.add_done_callback(lambda f: seen.append(f.result()))
        f3.result(timeout=10)
        assert seen and seen[0].content == pattern(2)
        with pytest.raises(TypeError):
            c.submit(Request("GET", fault_server.url), "extra")


def test_submit_from_many_threads_without_waiting(nginx_server) -> None:
    with Client() as c:
        results: list[int] = []
        lock = threading.Lock()

        def done(f: concurrent.futures.Future) -> None:
            with lock:
                results.append(f.result().status)

        def worker() -> None:
            for _ in range(50):
                c.submit("GET", nginx_server.small_url).add_done_callback(done)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        deadline = time.monotonic() + 30
        while len(results) < 400 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert results == [200] * 400


def test_sync_requests_from_many_threads(nginx_server) -> None:
    with Client() as c, concurrent.futures.ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda _: c.get(nginx_server.small_url).status, range(400)))
    assert statuses == [200] * 400


def test_map_order_errors_and_return_exceptions(fault_server) -> None:
    refused = "http://127.0.0.1:9/x"
    reqs = [Request("GET", fault_server.url_for("/bytes?n=5")), Request("GET", refused),
            Request("GET", fault_server.url_for("/bytes?n=6"))]
    with Client() as c:
        out = list(c.map(reqs, return_exceptions=True))
        assert out[0].content == pattern(5) and isinstance(out[1], ConnectError)
        assert out[2].content == pattern(6)
        results = c.map(reqs)
        assert next(results).status == 200
        with pytest.raises(ConnectError):
            next(results)
        assert list(c.map([])) == []
        with pytest.raises(ValueError):
            c.map(reqs, concurrency=0)


def test_map_abandoned_mid_way_cancels_in_flight(fault_server) -> None:
    with Client() as c:
        reqs = [Request("GET", fault_server.url_for("/bytes?n=1"))] + \
               [Request("GET", fault_server.url_for("/stall?after=0&seconds=10"))] * 4
        gen = c.map(reqs, concurrency=5)
        assert next(gen).status == 200
        gen.close()
        assert c.engine.stats()["active"] == 0
        t0 = time.monotonic()
        assert c.get(fault_server.url_for("/bytes?n=1")).status == 200
        assert time.monotonic() - t0 < 2


def test_client_default_timeout_applies(fault_server) -> None:
    from ocitransport import TimeoutError

    with Client(timeout=Timeout(total=0.3)) as c, pytest.raises(TimeoutError):
        c.get(fault_server.url_for("/delay?seconds=5"))


def test_context_manager_and_close(fault_server) -> None:
    with Client() as c:
        assert c.get(fault_server.url_for("/bytes?n=1")).status == 200
    assert c.closed
    with pytest.raises(ClientClosed):
        c.get(fault_server.url_for("/bytes?n=1"))
    with pytest.raises(ClientClosed):
        c.submit("GET", fault_server.url_for("/bytes?n=1"))


def test_user_agent(fault_server) -> None:
    with Client(user_agent="tester/1") as c:
        headers = dict(c.get(fault_server.url_for("/echo")).json()["headers"])
        assert headers["User-Agent"] == "tester/1"
        headers = dict(c.get(fault_server.url_for("/echo"), headers={"User-Agent": "mine"}).json()["headers"])
        assert headers["User-Agent"] == "mine"


def test_proxy_argument_is_used(fault_server) -> None:
    # The fault server answers a proxy-form request line like any other: it proves curl went there.
    with Client(proxy=fault_server.url) as c:
        r = c.get("http://registry.invalid/echo")
        assert r.status == 200 and r.json()["target"].startswith("http://registry.invalid/")
