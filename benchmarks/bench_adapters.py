"""Stock vs ocitransport adapters: client CPU per request and throughput, from one run.

    python -m benchmarks.bench_adapters [--requests 5000] [--threads 32] [--images 20] [--repeat 3]

Starts nginx (``tests/servers/nginx.py``, ``/small``: 512 bytes over plain HTTP) and an open registry
(``tests/servers/registry.py``), then measures:

* ``requests.Session``: N GETs of ``/small`` from a thread pool sharing one session, stock
  ``HTTPAdapter(pool_maxsize=threads)`` vs ``RequestsAdapter`` (plain mode);
* ``httpx.Client``: the same N GETs, sequentially and from the same thread pool, ``httpx.HTTPTransport``
  vs ``HTTPXTransport``;
* oras-py: every blob (config + 3 x 1 MiB layers) of ``--images`` images, manifest first, with oras'
  own session vs the same session with ``RequestsAdapter`` mounted.

Client CPU is ``getrusage(RUSAGE_SELF)`` user+system of this process (all threads; the servers are
other processes) divided by the number of requests; the best of ``--repeat`` runs is kept per cell.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import resource
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


def measure(run: Callable[[], int], repeat: int, meter: Meter | None = None) -> tuple[float, float, float]:
    """(best CPU us per request, best transport CPU us per request (NaN without a meter), best
    requests per second) over ``repeat`` runs."""
    best_cpu, best_transport, best_rate = float("inf"), float("inf"), 0.0
    for _ in range(repeat):
        if meter is not None:
            meter.host.clear()
        c0, t0 = _cpu(), time.perf_counter()
        n = run()
        c1, t1 = _cpu(), time.perf_counter()
        best_cpu = min(best_cpu, (c1 - c0) / n * 1e6)
        if meter is not None:
            best_transport = min(best_transport, (c1 - c0 - sum(meter.host)) / n * 1e6)
        best_rate = max(best_rate, n / (t1 - t0))
    return best_cpu, (best_transport if meter is not None else float("nan")), best_rate


def requests_cases(url: str, n: int, threads: int) -> dict[str, Callable[[], Any]]:
    import requests
    from requests.adapters import HTTPAdapter

    from ocitransport.adapters.requests import RequestsAdapter

    def session(ours: bool) -> requests.Session:
        s = requests.Session()
        adapter = RequestsAdapter() if ours else HTTPAdapter(pool_connections=4, pool_maxsize=threads)
        s.mount("http://", adapter)
        s.mount("https://", adapter)
        return s

    def make(ours: bool) -> tuple[Callable[[], int], Callable[[], None], Meter]:
        s = session(ours)
        meter = Meter()
        meter.wrap(s.get_adapter(url), "send", lambda r: r.content)
        pool = ThreadPoolExecutor(threads)

        def one(_: int) -> int:
            r = meter.request(lambda: s.get(url))
            assert r.status_code == 200 and len(r.content) == 512
            return 1

        def run() -> int:
            return sum(pool.map(one, range(n)))

        def close() -> None:
            pool.shutdown()
            s.close()

        return run, close, meter

    return {"stock": make(False), "ours": make(True)}  # type: ignore[dict-item]


def httpx_cases(url: str, n: int, threads: int) -> dict[str, Any]:
    import httpx

    from ocitransport.adapters.httpx import HTTPXTransport

    def make(ours: bool, threaded: bool) -> tuple[Callable[[], int], Callable[[], None], Meter]:
        limits = httpx.Limits(max_connections=threads, max_keepalive_connections=threads)
        transport = HTTPXTransport() if ours else httpx.HTTPTransport(limits=limits)
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

    return {"sequential": {"stock": make(False, False), "ours": make(True, False)},
            "threads": {"stock": make(False, True), "ours": make(True, True)}}


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
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    import ocitransport

    print(f"# bench_adapters: python {platform.python_version()}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs, ocitransport {ocitransport.__version__} "
          f"(compiled twins: {ocitransport.COMPILED}); {args.requests} GETs of 512 B, "
          f"{args.threads} threads, {args.images} images x (config + 3 x 1 MiB), best of {args.repeat}")
    rows: list[tuple[str, tuple[float, float, float], tuple[float, float, float]]] = []
    with NginxServer() as nginx, RegistryServer() as registry, tempfile.TemporaryDirectory() as tmp:
        url = nginx.small_url
        cells = {f"requests.Session, {args.threads} threads": requests_cases(url, args.requests, args.threads)}
        for mode, pair in httpx_cases(url, args.requests, args.threads).items():
            label = "httpx.Client, sequential" if mode == "sequential" else f"httpx.Client, {args.threads} threads"
            cells[label] = pair
        layers_per_image = 3
        images = [raw.push_image(registry, f"bench/img{i}", "v1",
                                 layers=[os.urandom(1 << 20) for _ in range(layers_per_image)])
                  for i in range(args.images)]
        cells["oras-py pull (manifest + 4 blobs/image)"] = oras_cases(registry, images, Path(tmp))
        for label, pair in cells.items():
            results = {}
            for side in ("stock", "ours"):
                run, close, meter = pair[side]
                try:
                    run()  # warm-up: connections, tokens, code paths
                    results[side] = measure(run, args.repeat, meter)
                finally:
                    close()
            rows.append((label, results["stock"], results["ours"]))

    print()
    header = (f"{'case':40} {'CPU us/req stock':>16} {'ours':>6} {'ratio':>6} | "
              f"{'transport us/req stock':>22} {'ours':>6} {'ratio':>6} | "
              f"{'req/s stock':>11} {'ours':>6} {'ratio':>6}")
    print(header)
    print("-" * len(header))
    for label, (s_cpu, s_tr, s_rate), (o_cpu, o_tr, o_rate) in rows:
        tr = (f"{s_tr:22.1f} {o_tr:6.1f} {s_tr / o_tr:5.2f}x" if not math.isnan(s_tr)
              else f"{'-':>22} {'-':>6} {'-':>6}")
        print(f"{label:40} {s_cpu:16.1f} {o_cpu:6.1f} {s_cpu / o_cpu:5.2f}x | {tr} | "
              f"{s_rate:11.0f} {o_rate:6.0f} {o_rate / s_rate:5.2f}x")
    print("\nratio = stock / ours for CPU (higher is better; target >= 2x), ours / stock for req/s.\n"
          "CPU: whole client process per request. transport: that minus the host library's own\n"
          "per-request work (Session/Client, hooks, env proxies, cookies), i.e. the part a transport\n"
          "can change; see Meter.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
