"""The asyncio facade: same engine, awaited without blocking the caller's loop."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from ocitransport import (
    AsyncClient,
    ClientClosed,
    ConnectError,
    ReadError,
    Request,
    Timeout,
    TimeoutError,
    TLSError,
)
from tests.servers import raw
from tests.servers.faults import pattern

MiB = 1 << 20


def run(coro_fn: Callable[[], Awaitable[Any]], limit: float = 60) -> Any:
    return asyncio.run(asyncio.wait_for(coro_fn(), limit))


def test_registry_round_trip(registry, repo_name) -> None:
    data = os.urandom(200_000)
    digest = raw.sha256_digest(data)

    async def main() -> None:
        async with AsyncClient() as c:
            r = await c.post(f"{registry.url}/v2/{repo_name}/blobs/uploads/")
            assert r.status == 202
            location = r.headers["Location"]
            if location.startswith("/"):
                location = registry.url + location
            r = await c.put(location + ("&" if "?" in location else "?") + "digest=" + digest, body=data)
            assert r.status == 201, r.text
            h = await c.head(f"{registry.url}/v2/{repo_name}/blobs/{digest}")
            assert h.status == 200 and int(h.headers["Content-Length"]) == len(data)
            g = await c.get(f"{registry.url}/v2/{repo_name}/blobs/{digest}")
            assert g.content == data
            d = await c.delete(f"{registry.url}/v2/{repo_name}/blobs/{digest}")
            assert d.status == 202

    run(main)
    assert not raw.blob_exists(registry, repo_name, digest)


def test_many_concurrent_tasks_do_not_block_the_loop(fault_server) -> None:
    async def main() -> None:
        ticks = 0
        stop = False

        async def ticker() -> None:
            nonlocal ticks
            while not stop:
                ticks += 1
                await asyncio.sleep(0.005)

        async with AsyncClient(max_connections_per_host=8) as c:
            tick_task = asyncio.ensure_future(ticker())
            slow = asyncio.ensure_future(c.get(fault_server.url_for("/delay?seconds=0.5")))
            results = await asyncio.gather(*(c.get(fault_server.url_for(f"/bytes?n={i}")) for i in range(300)))
            await slow
            stop = True
            await tick_task
        assert [len(r.content) for r in results] == list(range(300))
        assert ticks >= 20  # the loop kept running while requests were in flight
        assert fault_server.peak_connections <= 8

    run(main)


def test_errors_map_the_same(fault_server) -> None:
    async def main() -> None:
        async with AsyncClient() as c:
            with pytest.raises(ConnectError):
                await c.get("http://127.0.0.1:9/")
            with pytest.raises(ReadError):
                await c.get(fault_server.url_for("/truncate?length=100&send=1"))
            with pytest.raises(TimeoutError):
                await c.get(fault_server.url_for("/stall?after=0&seconds=10"), timeout=Timeout(stall=1))

    run(main)


def test_tls_http2(tls_registry) -> None:
    async def main() -> None:
        async with AsyncClient(verify=str(tls_registry.ca_file)) as c:
            rs = await asyncio.gather(*(c.get(tls_registry.url + "/v2/") for _ in range(10)))
            assert {r.http_version for r in rs} == {"HTTP/2"}
        async with AsyncClient() as c:
            with pytest.raises(TLSError):
                await c.get(tls_registry.url + "/v2/")

    run(main)


def test_streaming_download_and_async_iterator_upload(fault_server) -> None:
    n = 32 * MiB
    block = os.urandom(MiB)

    async def source() -> AsyncIterator[bytes]:
        for _ in range(n // MiB):
            await asyncio.sleep(0)
            yield block

    async def main() -> None:
        async with AsyncClient() as c:
            digest = hashlib.sha256()
            total = 0
            async with c.stream("GET", fault_server.url_for(f"/bytes?n={n}&chunked=1")) as r:
                async for chunk in r.aiter_bytes():
                    digest.update(chunk)
                    total += len(chunk)
            assert total == n and digest.hexdigest() == hashlib.sha256(pattern(n)).hexdigest()
            r = await c.put(fault_server.url_for("/drain"), body=source(), extensions={"sha256_upload": True})
            expected = hashlib.sha256(block * (n // MiB)).hexdigest()
            assert r.json() == {"length": n, "sha256": expected}
            assert r.extensions["sha256_upload"] == expected

    run(main)


def test_failing_async_body_source_is_reraised(fault_server) -> None:
    class Boom(Exception):
        pass

    async def source() -> AsyncIterator[bytes]:
        yield b"a" * 1000
        await asyncio.sleep(0.05)
        raise Boom("source failed")

    async def main() -> None:
        async with AsyncClient() as c:
            with pytest.raises(Boom):
                await c.put(fault_server.url_for("/drain"), body=source())
            assert (await c.get(fault_server.url_for("/bytes?n=3"))).content == pattern(3)

    run(main)


def test_cancelling_the_task_cancels_the_transfer(fault_server) -> None:
    async def main() -> None:
        async with AsyncClient(max_connections=1) as c:
            task = asyncio.ensure_future(c.get(fault_server.url_for("/stall?after=0&seconds=10")))
            for _ in range(200):
                if c.engine.stats()["active"] == 1:
                    break
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            t0 = time.monotonic()
            assert (await c.get(fault_server.url_for("/bytes?n=4"))).content == pattern(4)
            assert time.monotonic() - t0 < 2
            for _ in range(100):
                if c.engine.stats()["active"] == 0:
                    break
                await asyncio.sleep(0.01)
            assert c.engine.stats()["active"] == 0

    run(main)


def test_map_and_submit(fault_server) -> None:
    async def main() -> None:
        async with AsyncClient() as c:
            reqs = [Request("GET", fault_server.url_for(f"/bytes?n={i + 1}")) for i in range(50)]
            sizes = [len(r.content) async for r in c.map(reqs, concurrency=8)]
            assert sizes == list(range(1, 51))
            out = [r async for r in c.map([Request("GET", "http://127.0.0.1:9/")], return_exceptions=True)]
            assert isinstance(out[0], ConnectError)
            task = c.submit("GET", fault_server.url_for("/bytes?n=2"))
            assert (await task).content == pattern(2)

    run(main)


def test_aclose_fails_pending_requests(fault_server) -> None:
    async def main() -> None:
        c = AsyncClient()
        tasks = [asyncio.ensure_future(c.get(fault_server.url_for("/stall?after=0&seconds=10")))
                 for _ in range(3)]
        await asyncio.sleep(0.2)
        t0 = time.monotonic()
        await c.aclose()
        await c.aclose()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, ClientClosed) for r in results), results
        assert time.monotonic() - t0 < 3
        with pytest.raises(ClientClosed):
            await c.get(fault_server.url_for("/bytes?n=1"))

    run(main)


def test_two_event_loops_share_one_client(nginx_server) -> None:
    c = AsyncClient()
    statuses: list[int] = []

    def in_thread() -> None:
        async def main() -> None:
            rs = await asyncio.gather(*(c.get(nginx_server.small_url) for _ in range(50)))
            statuses.extend(r.status for r in rs)

        asyncio.run(main())

    threads = [threading.Thread(target=in_thread) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    c.close()
    assert statuses == [200] * 150
