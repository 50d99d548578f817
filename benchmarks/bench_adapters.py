"""Stock vs ocitransport adapters: client CPU per request and throughput, from one run.

    python -m benchmarks.bench_adapters [--requests 5000] [--threads 32] [--images 20] [--repeat 5]

Starts nginx (``tests/servers/nginx.py``, ``/small``: 512 bytes over plain HTTP) and an open registry
(``tests/servers/registry.py``), then measures:

* ``requests.Session``: N GETs of ``/small``, sequentially and from a thread pool sharing one session,
  stock ``HTTPAdapter(pool_maxsize=threads)`` vs ``RequestsAdapter`` (plain mode);
* ``httpx.Client``: the same N GETs, sequentially and from the same thread pool, ``httpx.HTTPTransport``
  vs ``HTTPXTransport``;
* for every small-GET case, a **zero-cost** adapter/transport that answers at once with a canned
  response shaped like nginx's (same headers, same 512-byte body) without any I/O: what is left is
  the host library's own per-request work (``Session.request``: environment proxies, prepare, hooks,
  cookies; ``Client.send``: ``build_request``, auth, cookies, decoding). ``stock / zero`` is the best
  CPU ratio any transport could reach for that library;
* oras-py: every blob (config + 3 x 1 MiB layers) of ``--images`` images, manifest first, with oras'
  own session vs the same session with ``RequestsAdapter`` mounted.

Client CPU is ``getrusage(RUSAGE_SELF)`` user+system of this process (all threads; the servers are
other processes) divided by the number of requests. The sides of a case run in turn, ``--repeat``
times (stock, ours, zero, stock, ours, zero, ...), so a load change on a shared machine hits them
alike; cells are medians.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.servers import raw
from tests.servers.nginx import NginxServer
from tests.servers.registry import RegistryServer


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Meter:
    """Splits client CPU into the host library's share and the transport's.

    The transport's ``send``/``handle_request`` is wrapped (body read included) and timed with the
    calling thread's CPU clock; the host library's share is each request's thread CPU minus that.
    Transport CPU = process CPU - host share, so engine work on other threads counts as transport.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        self.host: list[float] = []

    def wrap(self, obj: Any, name: str, read: Callable[[Any], Any]) -> None:
        original = getattr(obj, name)
        local = self._local

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.thread_time()
            response = original(*args, **kwargs)
            read(response)
            local.inside = getattr(local, "inside", 0.0) + time.thread_time() - t0
            return response

        setattr(obj, name, timed)

    def request(self, call: Callable[[], Any]) -> Any:
        local = self._local
        inside0 = getattr(local, "inside", 0.0)
        t0 = time.thread_time()
        result = call()
        self.host.append(time.thread_time() - t0 - (getattr(local, "inside", 0.0) - inside0))
        return result


#: nginx's answer to ``GET /small`` (tests/servers/nginx.py), for the zero-cost transports.
SMALL_BODY = b"x" * 512
SMALL_HEADERS = [("Server", "nginx/1.22.1"), ("Date", "Thu, 01 Jan 2026 00:00:00 GMT"),
                 ("Content-Type", "application/octet-stream"), ("Content-Length", "512"),
                 ("Last-Modified", "Thu, 01 Jan 2026 00:00:00 GMT"), ("Connection", "keep-alive"),
                 ("ETag", '"6b08dc72-200"'), ("Accept-Ranges", "bytes")]


def zero_requests_adapter() -> Any:
    """A requests adapter that costs nothing: a canned, already-read response, no I/O."""
    import requests
    from requests.adapters import BaseAdapter
    from requests.structures import CaseInsensitiveDict

    class ZeroAdapter(BaseAdapter):
        def send(self, request: Any, stream: bool = False, timeout: Any = None, verify: Any = True,
                 cert: Any = None, proxies: Any = None) -> requests.Response:
            r = requests.Response()
            r.status_code = 200
            r.reason = "OK"
            r.headers = CaseInsensitiveDict(SMALL_HEADERS)
            r._content = SMALL_BODY
            r._content_consumed = True
            r.url = request.url
            r.request = request
            r.connection = self  # type: ignore[assignment]
            return r

        def close(self) -> None:
            pass

    return ZeroAdapter()


def zero_httpx_transport() -> Any:
    """An httpx transport that costs nothing: a canned response, no I/O."""
    import httpx

    class ZeroTransport(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, headers=SMALL_HEADERS, content=SMALL_BODY)

    return ZeroTransport()


def measure_once(run: Callable[[], int], meter: Meter | None = None) -> tuple[float, float, float]:
    """(CPU us per request, transport CPU us per request (NaN without a meter), requests per second)."""
    if meter is not None:
        meter.host.clear()
    c0, t0 = _cpu(), time.perf_counter()
    n = run()
    c1, t1 = _cpu(), time.perf_counter()
    transport = (c1 - c0 - sum(meter.host)) / n * 1e6 if meter is not None else float("nan")
    return (c1 - c0) / n * 1e6, transport, n / (t1 - t0)


def requests_cases(url: str, n: int, threads: int) -> dict[str, dict[str, Any]]:
    import requests
    from requests.adapters import HTTPAdapter

    from ocitransport.adapters.requests import RequestsAdapter

    def make(side: str, threaded: bool) -> tuple[Callable[[], int], Callable[[], None], Meter]:
        s = requests.Session()
        if side == "ours":
            adapter: Any = RequestsAdapter()
        elif side == "zero":
            adapter = zero_requests_adapter()
        else:
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=threads)
        s.mount("http://", adapter)
        s.mount("https://", adapter)
        meter = Meter()
        meter.wrap(s.get_adapter(url), "send", lambda r: r.content)
        pool = ThreadPoolExecutor(threads) if threaded else None

        def one(_: int) -> int:
            r = meter.request(lambda: s.get(url))
            assert r.status_code == 200 and len(r.content) == 512
            return 1

        def run() -> int:
            if pool is not None:
                return sum(pool.map(one, range(n)))
            return sum(one(i) for i in range(n))

        def close() -> None:
            if pool is not None:
                pool.shutdown()
            s.close()

        return run, close, meter

    return {mode: {side: make(side, mode == "threads") for side in ("stock", "ours", "zero")}
            for mode in ("sequential", "threads")}


def httpx_cases(url: str, n: int, threads: int) -> dict[str, Any]:
    import httpx

    from ocitransport.adapters.httpx import HTTPXTransport

    def make(side: str, threaded: bool) -> tuple[Callable[[], int], Callable[[], None], Meter]:
        limits = httpx.Limits(max_connections=threads, max_keepalive_connections=threads)
        if side == "ours":
            transport: Any = HTTPXTransport()
        elif side == "zero":
            transport = zero_httpx_transport()
        else:
            transport = httpx.HTTPTransport(limits=limits)
        meter = Meter()
        meter.wrap(transport, "handle_request", lambda r: r.read())
        client = httpx.Client(transport=transport)
        pool = ThreadPoolExecutor(threads) if threaded else None

        def one(_: int) -> int:
            r = meter.request(lambda: client.get(url))
            assert r.status_code == 200 and len(r.content) == 512
            return 1

        def run() -> int:
            if pool is not None:
                return sum(pool.map(one, range(n)))
            return sum(one(i) for i in range(n))

        def close() -> None:
            if pool is not None:
                pool.shutdown()
            client.close()

        return run, close, meter

    return {mode: {side: make(side, mode == "threads") for side in ("stock", "ours", "zero")}
            for mode in ("sequential", "threads")}


def oras_cases(registry: RegistryServer, images: list[raw.PushedImage], workdir: Path) -> dict[str, Any]:
    import oras.client

    from ocitransport.adapters.requests import RequestsAdapter

    def make(ours: bool) -> tuple[Callable[[], int], Callable[[], None], None]:
        client = oras.client.OrasClient(hostname=registry.host, insecure=True)
        adapter = RequestsAdapter() if ours else None
        if adapter is not None:
            client.session.mount("http://", adapter)
            client.session.mount("https://", adapter)

        def run() -> int:
            count = 0
            for image in images:
                ref = f"{registry.host}/{image.repo}:{image.tag}"
                manifest = client.get_manifest(ref)
                count += 1
                for desc in [manifest["config"], *manifest["layers"]]:
                    out = workdir / desc["digest"].replace(":", "_")
                    client.download_blob(ref, desc["digest"], str(out))
                    assert out.stat().st_size == desc["size"]
                    out.unlink()
                    count += 1
            return count

        def close() -> None:
            client.session.close()
            if adapter is not None:
                adapter.close()

        return run, close, None

    return {"stock": make(False), "ours": make(True)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    import ocitransport

    print(f"# bench_adapters: python {platform.python_version()}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs, ocitransport {ocitransport.__version__} "
          f"(compiled twins: {ocitransport.COMPILED}); {args.requests} GETs of 512 B, "
          f"{args.threads} threads, {args.images} images x (config + 3 x 1 MiB), median of {args.repeat}")
    Cell = tuple[float, float, float]
    rows: list[tuple[str, Cell, Cell, Cell | None]] = []
    with NginxServer() as nginx, RegistryServer() as registry, tempfile.TemporaryDirectory() as tmp:
        url = nginx.small_url
        cells: dict[str, dict[str, Any]] = {}
        for mode, sides in requests_cases(url, args.requests, args.threads).items():
            cells["requests.Session, " + (mode if mode == "sequential" else f"{args.threads} threads")] = sides
        for mode, sides in httpx_cases(url, args.requests, args.threads).items():
            cells["httpx.Client, " + (mode if mode == "sequential" else f"{args.threads} threads")] = sides
        layers_per_image = 3
        images = [raw.push_image(registry, f"bench/img{i}", "v1",
                                 layers=[os.urandom(1 << 20) for _ in range(layers_per_image)])
                  for i in range(args.images)]
        cells["oras-py pull (manifest + 4 blobs/image)"] = oras_cases(registry, images, Path(tmp))
        for label, sides in cells.items():
            runs: dict[str, list[Cell]] = {side: [] for side in sides}
            try:
                for run, _close, _meter in sides.values():
                    run()  # warm-up: connections, tokens, code paths
                for _ in range(args.repeat):
                    for side, (run, _close, meter) in sides.items():
                        runs[side].append(measure_once(run, meter))
            finally:
                for _run, close, _meter in sides.values():
                    close()
            med = {side: tuple(statistics.median(r[i] for r in cell) for i in range(3))
                   for side, cell in runs.items()}
            rows.append((label, med["stock"], med["ours"], med.get("zero")))  # type: ignore[arg-type]

    print()
    header = (f"{'case':40} {'CPU us/req stock':>16} {'ours':>6} {'zero':>6} {'stock/ours':>10} "
              f"{'stock/zero':>10} | {'transport us/req stock':>22} {'ours':>6} | "
              f"{'req/s stock':>11} {'ours':>6} {'ratio':>6}")
    print(header)
    print("-" * len(header))
    for label, (s_cpu, s_tr, s_rate), (o_cpu, o_tr, o_rate), zero in rows:
        z_cpu = f"{zero[0]:6.1f}" if zero else f"{'-':>6}"
        bound = f"{s_cpu / zero[0]:9.2f}x" if zero else f"{'-':>10}"
        tr = (f"{s_tr:22.1f} {o_tr:6.1f}" if not math.isnan(s_tr) else f"{'-':>22} {'-':>6}")
        print(f"{label:40} {s_cpu:16.1f} {o_cpu:6.1f} {z_cpu} {s_cpu / o_cpu:9.2f}x {bound} | {tr} | "
              f"{s_rate:11.0f} {o_rate:6.0f} {o_rate / s_rate:5.2f}x")
    print("\nstock/ours: client CPU per request, stock over ours (higher is better; target >= 2x).\n"
          "stock/zero: the same with a transport that costs nothing (canned response, no I/O): the best\n"
          "ratio any transport can reach, the rest being the host library's own per-request work.\n"
          "transport: CPU minus the host library's share measured around the adapter (see Meter).\n"
          f"Medians of {args.repeat} runs per side, the sides run in turn.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
