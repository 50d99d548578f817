"""Engine throughput: client CPU per small request and big-body throughput, ours against the limit and peers.

Standalone (``python benchmarks/bench_engine.py [--requests 5000] [--concurrency 64] [--repeat 3]
[--big-mib 256] [--only raw,map,...]``). Starts nginx (tests/servers/nginx.py) on 127.0.0.1, which
costs almost nothing per request, so the numbers are the client's: CPU time of this process
(getrusage user+sys) per request, and requests/s. Every variant runs in this one process, one after
the other, warm (connections opened before the timed region); the median of ``--repeat`` runs.

Variants (GET and HEAD of ``/small``, 512 bytes):
  raw       a CurlMulti perform/select loop written as tightly as possible: the limit
  raw1      the same loop with one request in flight: the limit for ``request``
  request   ocitransport Client.request from one thread, one request after another
  map       ocitransport Client.map(concurrency=C)
  submit    ocitransport Client.submit futures, C in flight (results awaited in order)
  async     ocitransport AsyncClient, C tasks
  threads   ocitransport Client.request from a ThreadPoolExecutor(C)
  requests  requests.Session in a ThreadPoolExecutor(C)
  httpx     httpx.Client in a ThreadPoolExecutor(C)
  httpx-async  httpx.AsyncClient, C tasks

Then a ``--big-mib`` download of ``/big``: Client (buffered into a sink) against ``curl -o /dev/null``,
over HTTP (and HTTPS when the nginx helper offers TLS), with the peak RSS growth of the Client download.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

import pycurl
from tests.servers.nginx import NginxServer


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def rss_mib() -> float:
    """Current RSS in MiB (from /proc; ru_maxrss only ever grows)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# ------------------------------------------------------------------------------------------------ variants

def run_raw(url: str, method: str, n: int, conc: int) -> None:
    """The limit: handles reused, HEADERFUNCTION=list.append, body into a list, perform + select."""
    multi = pycurl.CurlMulti()
    multi.setopt(pycurl.M_MAX_HOST_CONNECTIONS, conc)
    handles = []
    for _ in range(min(conc, n)):
        c = pycurl.Curl()
        c.setopt(pycurl.URL, url)
        c.setopt(pycurl.NOSIGNAL, 1)
        if method == "HEAD":
            c.setopt(pycurl.NOBODY, 1)
        c.lines = []
        c.body = []
        c.setopt(pycurl.HEADERFUNCTION, c.lines.append)
        c.setopt(pycurl.WRITEFUNCTION, c.body.append)
        handles.append(c)
    started = 0
    done = 0
    for c in handles:
        multi.add_handle(c)
        started += 1
    while done < n:
        multi.perform()
        while True:
            q, ok, err = multi.info_read()
            for c in ok:
                multi.remove_handle(c)
                c.getinfo(pycurl.RESPONSE_CODE)
                c.lines.clear()
                c.body.clear()
                done += 1
                if started < n:
                    multi.add_handle(c)
                    started += 1
            if err:
                raise RuntimeError(err)
            if not q:
                break
        if done >= n:
            break
        t = multi.timeout()
        if t != 0:
            multi.select(1.0 if t < 0 else t / 1000)
    for c in handles:
        c.close()
    multi.close()


def ours(kind: str) -> Callable[..., Any]:
    from ocitransport import AsyncClient, Client, Request

    def make_requests(url: str, method: str, n: int) -> list[Request]:
        return [Request(method, url) for _ in range(n)]

    def run_map(client: Client, url: str, method: str, n: int, conc: int) -> None:
        for r in client.map(make_requests(url, method, n), concurrency=conc):
            assert r.status == 200

    def run_submit(client: Client, url: str, method: str, n: int, conc: int) -> None:
        window: list[Any] = []
        reqs = make_requests(url, method, n)
        i = 0
        for req in reqs:
            window.append(client.submit(req))
            if len(window) >= conc:
                window[i].result()
                i += 1
                if i > 4096:
                    del window[:i]
                    i = 0
        for f in window[i:]:
            f.result()

    def run_request(client: Client, url: str, method: str, n: int, conc: int) -> None:
        for _ in range(n):
            r = client.request(method, url)
            assert r.status == 200

    def run_threads(client: Client, url: str, method: str, n: int, conc: int) -> None:
        with concurrent.futures.ThreadPoolExecutor(conc) as pool:
            for r in pool.map(lambda _: client.request(method, url), range(n)):
                assert r.status == 200

    def run_async(client: AsyncClient, url: str, method: str, n: int, conc: int) -> None:
        async def main() -> None:
            per = n // conc

            async def worker(k: int) -> None:
                for _ in range(k):
                    r = await client.request(method, url)
                    assert r.status == 200

            await asyncio.gather(*(worker(per + (1 if i < n % conc else 0)) for i in range(conc)))

        asyncio.run(main())

    table = {"map": (Client, run_map), "submit": (Client, run_submit), "threads": (Client, run_threads),
             "async": (AsyncClient, run_async), "request": (Client, run_request)}
    return table[kind]  # type: ignore[return-value]


def run_requests(session: Any, url: str, method: str, n: int, conc: int, pool: Any) -> None:
    for r in pool.map(lambda _: session.request(method, url), range(n)):
        assert r.status_code == 200


def run_httpx_async(url: str, method: str, n: int, conc: int) -> None:
    import httpx

    async def main() -> None:
        limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
        async with httpx.AsyncClient(limits=limits) as client:
            await client.request(method, url)
            per = n // conc

            async def worker(k: int) -> None:
                for _ in range(k):
                    r = await client.request(method, url)
                    assert r.status_code == 200

            t0, c0 = time.perf_counter(), cpu()
            await asyncio.gather(*(worker(per + (1 if i < n % conc else 0)) for i in range(conc)))
            RESULT.append((time.perf_counter() - t0, cpu() - c0))

    asyncio.run(main())


RESULT: list[tuple[float, float]] = []
RAW1 = "raw pycurl loop, 1 in flight"


def measure(fn: Callable[[], None]) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), cpu()
    fn()
    return time.perf_counter() - t0, cpu() - c0


def bench_small(server: NginxServer, n: int, conc: int, repeat: int, only: set[str]) -> list[list[str]]:
    url = server.small_url
    rows: dict[tuple[str, str], tuple[float, float]] = {}
    for method in ("HEAD", "GET"):
        variants: list[tuple[str, Callable[[], tuple[float, float]]]] = []
        variants.append(("raw pycurl CurlMulti loop",
                         lambda method=method: measure(lambda: run_raw(url, method, n, conc))))
        if not only or "request" in only or "raw1" in only:
            variants.append((RAW1, lambda method=method: measure(lambda: run_raw(url, method, n, 1))))
        for kind, label in (("request", "ocitransport Client.request, 1 thread"),
                            ("map", "ocitransport Client.map"), ("submit", "ocitransport Client.submit"),
                            ("async", "ocitransport AsyncClient (tasks)"),
                            ("threads", "ocitransport Client in threads")):
            if only and kind not in only:
                continue
            cls, fn = ours(kind)

            def go(cls: Any = cls, fn: Any = fn, method: str = method) -> tuple[float, float]:
                client = cls(max_connections=conc, max_connections_per_host=conc)
                try:
                    fn(client, url, method, min(n, 2 * conc), conc)  # warm: open the connections
                    return measure(lambda: fn(client, url, method, n, conc))
                finally:
                    client.close()

            variants.append((label, go))
        if not only or "requests" in only:
            def go_requests(method: str = method) -> tuple[float, float]:
                import requests
                from requests.adapters import HTTPAdapter

                s = requests.Session()
                s.mount("http://", HTTPAdapter(pool_connections=conc, pool_maxsize=conc))
                nn = min(n, 2000)
                with concurrent.futures.ThreadPoolExecutor(conc) as pool:
                    run_requests(s, url, method, conc * 2, conc, pool)
                    wall, used = measure(lambda: run_requests(s, url, method, nn, conc, pool))
                s.close()
                return wall * n / nn, used * n / nn
            variants.append(("requests.Session, 64 threads", go_requests))
        if not only or "httpx" in only:
            def go_httpx(method: str = method) -> tuple[float, float]:
                import httpx

                limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
                nn = min(n, 1000)
                with httpx.Client(limits=limits) as c, concurrent.futures.ThreadPoolExecutor(conc) as pool:
                    list(pool.map(lambda _: c.request(method, url), range(conc * 2)))
                    wall, used = measure(lambda: list(pool.map(lambda _: c.request(method, url), range(nn))))
                return wall * n / nn, used * n / nn
            variants.append(("httpx.Client, 64 threads", go_httpx))
        if not only or "httpx-async" in only:
            def go_httpx_async(method: str = method) -> tuple[float, float]:
                RESULT.clear()
                nn = min(n, 1000)
                run_httpx_async(url, method, nn, conc)
                wall, used = RESULT[0]
                return wall * n / nn, used * n / nn
            variants.append(("httpx.AsyncClient, 64 tasks", go_httpx_async))
        # Round-robin: every round runs each variant once, so a change in machine load (other
        # processes on a shared box) hits all of them alike; the ratio to raw is taken per round.
        runs: dict[str, list[tuple[float, float]]] = {label: [] for label, _ in variants}
        for _ in range(repeat):
            for label, fn in variants:
                runs[label].append(fn())
        for label, _ in variants:
            # One request at a time is compared with the raw loop at one in flight, the rest with C.
            base = RAW1 if label in (RAW1, "ocitransport Client.request, 1 thread") else "raw pycurl CurlMulti loop"
            raw_runs = runs[base]
            wall = statistics.median(r[0] for r in runs[label])
            used = statistics.median(r[1] for r in runs[label])
            ratio = statistics.median(r[1] / b[1] for r, b in zip(runs[label], raw_runs))
            rows[(method, label)] = (wall, used, ratio)
            print(f"  {method:4} {label:38} {used / n * 1e6:9.1f} us/req  {n / wall:9.0f} req/s  "
                  f"{ratio:6.2f}x raw", flush=True)
    out = []
    for (method, label), (wall, used, ratio) in rows.items():
        out.append([method, label, f"{used / n * 1e6:.1f}", f"{n / wall:,.0f}", f"{ratio:.2f}x"])
    return out


def bench_big(big_mib: int, tls_ok: bool) -> list[list[str]]:
    from ocitransport import Client

    rows = []
    configs: list[tuple[str, dict[str, Any]]] = [("HTTP/1.1", {"big_mib": big_mib})]
    if tls_ok:
        configs.append(("HTTPS h1", {"big_mib": big_mib, "tls_enabled": True}))
        configs.append(("HTTPS h2", {"big_mib": big_mib, "http2": True}))
    for label, opts in configs:
        with NginxServer(**opts) as server:
            size = server.big_size
            ca = str(server.ca_file) if server.ca_file else None
            curl = shutil.which("curl")
            curl_rate = None
            if curl:
                args = [curl, "-s", "-o", "/dev/null", "-w", "%{speed_download}"]
                if ca:
                    args += ["--cacert", ca]
                args += ["--http2"] if "h2" in label else ["--http1.1"]
                speeds = [float(subprocess.run([*args, server.big_url], capture_output=True, text=True,
                                               check=True).stdout) for _ in range(3)]
                curl_rate = statistics.median(speeds) / 2**20
            client = Client(verify=ca or True, http2="h2" in label)
            client.get(server.small_url)
            rates = []
            peak = 0.0
            for _ in range(3):
                base = rss_mib()
                seen = [base]
                stop = threading.Event()

                def sample(stop: threading.Event = stop, seen: list[float] = seen) -> None:
                    while not stop.wait(0.01):
                        seen.append(rss_mib())

                sampler = threading.Thread(target=sample, daemon=True)
                sampler.start()
                written = 0

                def sink(data: bytes) -> None:
                    nonlocal written
                    written += len(data)

                t0 = time.perf_counter()
                r = client.get(server.big_url, extensions={"sink": sink})
                wall = time.perf_counter() - t0
                stop.set()
                sampler.join()
                assert r.status == 200 and written == size, (r.status, written)
                rates.append(size / wall / 2**20)
                peak = max(peak, max(seen) - base)
            # streaming read as a consumer would (bounded by the back-pressure buffer)
            base = rss_mib()
            stream_peak = 0.0
            t0 = time.perf_counter()
            got = 0
            with client.stream("GET", server.big_url) as resp:
                for chunk in resp.iter_bytes():
                    got += len(chunk)
                    if got % (16 << 20) < len(chunk):
                        stream_peak = max(stream_peak, rss_mib() - base)
            stream_rate = size / (time.perf_counter() - t0) / 2**20
            assert got == size
            peak = max(peak, stream_peak)
            client.close()
            rows.append([label, f"{big_mib} MiB", f"{statistics.median(rates):,.0f}", f"{stream_rate:,.0f}",
                         "-" if curl_rate is None else f"{curl_rate:,.0f}", f"{peak:.1f}"])
            print(f"  {label}: sink {statistics.median(rates):,.0f} MiB/s, stream {stream_rate:,.0f} MiB/s, "
                  f"curl {curl_rate or 0:,.0f} MiB/s, RSS growth {peak:.1f} MiB", flush=True)
    return rows


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(str(c).rjust(w) if i >= 2 else str(c).ljust(w)
                              for i, (c, w) in enumerate(zip(r, widths))) + " |" for r in rows]
    return "\n".join([line, sep, *body])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--big-mib", type=int, default=256)
    parser.add_argument("--only", default="", help="comma-separated: request,map,submit,async,threads,requests,"
                                                   "httpx,httpx-async,big (raw always runs)")
    args = parser.parse_args(argv)
    only = {x for x in args.only.split(",") if x}
    import ocitransport

    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"pycurl: {pycurl.version}")
    print(f"ocitransport {ocitransport.__version__} (compiled twins: {ocitransport.COMPILED})")
    print(f"settings: {args.requests} requests, concurrency {args.concurrency}, median of {args.repeat} "
          f"round-robin rounds, nginx on 127.0.0.1 (/small = 512 B), CPU = getrusage user+sys of this "
          f"process; load average at start {os.getloadavg()[0]:.2f}")
    with NginxServer(workers=1) as server:
        rows = bench_small(server, args.requests, args.concurrency, args.repeat, only)
    print()
    print(table(["method", "client", "CPU us/req", "req/s", "CPU vs raw"], rows))
    if args.big_mib and (not only or "big" in only):
        print()
        tls_ok = True
        big = bench_big(args.big_mib, tls_ok)
        print()
        print(table(["transport", "size", "Client sink MiB/s", "Client stream MiB/s", "curl MiB/s",
                     "Client peak RSS growth MiB"], big))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
