"""What the registry layers cost per request: the whole transport stack vs the bare Client.

Stack: Bearer auth with a cached token -> scheme -> user agent -> logger (the ``ocitransport`` logger at
INFO, so the DEBUG lines are skipped) -> retry -> Client. Target: the layers add at most 20 % of client
CPU per small request. The server is nginx (tests/servers/nginx.py) on 127.0.0.1, which costs almost
nothing per request, so the client's own CPU time is what is measured (getrusage user+sys / N).

    python benchmarks/bench_transport.py [--requests 5000] [--concurrency 64] [--rounds 3] [--json]

Every round runs each variant once, in turn, so a load change on a shared machine hits them all
alike; the table shows medians over the rounds. ``--json`` prints the medians as one JSON object
(for comparing two checkouts: run each alternately and take the medians of both).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.servers.nginx import NginxServer

import ocitransport
from ocitransport import Request, authn, transport
from ocitransport.transport.simple import PRODUCT, Scheme, UserAgent


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def build_stack(client: ocitransport.RoundTripper, host: str, port: int) -> ocitransport.RoundTripper:
    challenge = transport.Challenge("bearer", {"realm": f"http://{host}:{port}/token", "service": "bench"},
                                    insecure=True)
    rt: ocitransport.RoundTripper = transport.new_logger(transport.new_retry(client))
    rt = Scheme(UserAgent(rt, "bench"), host, port, "http")
    token = transport.Token("t" * 600, expires_in=3600)  # a JWT-sized token, cached for the whole run
    return transport.from_token(f"{host}:{port}", authn.Anonymous, rt, challenge, token)


def measure_async(make: Callable[[], Awaitable[None]], n: int) -> tuple[float, float]:
    start_cpu, start = cpu(), time.perf_counter()
    asyncio.run(make())  # type: ignore[arg-type]
    return (cpu() - start_cpu) / n * 1e6, n / (time.perf_counter() - start)


def run(args: argparse.Namespace) -> None:
    logging.getLogger("ocitransport").setLevel(logging.INFO)
    with NginxServer() as nginx:
        host, port = "127.0.0.1", nginx.port
        url = f"http://{host}:{port}/v2/"
        n, conc = args.requests, args.concurrency
        results: dict[str, list[tuple[float, float]]] = {}

        def one_round() -> None:
            async def drive(rt_factory: Callable[[ocitransport.AsyncClient], ocitransport.RoundTripper]) -> None:
                async with ocitransport.AsyncClient() as ac:
                    rt = rt_factory(ac)
                    await asyncio.gather(*[rt.round_trip_async(Request("GET", url)) for _ in range(conc)])

                    async def worker(count: int) -> None:
                        for _ in range(count):
                            resp = await rt.round_trip_async(Request("GET", url))
                            assert resp.status == 200

                    t0, c0 = time.perf_counter(), cpu()
                    await asyncio.gather(*[worker(n // conc) for _ in range(conc)])
                    stats.append(((cpu() - c0) / (n // conc * conc) * 1e6,
                                  (n // conc * conc) / (time.perf_counter() - t0)))

            for label, factory in (("bare AsyncClient", lambda ac: ac),
                                   ("full stack (async)", lambda ac: build_stack(ac, host, port))):
                stats: list[tuple[float, float]] = []
                asyncio.run(drive(factory))
                results.setdefault(label, []).extend(stats)

            # "bare + same headers": the bare Client sending what the stack adds on the wire (a
            # 600-byte Authorization and the User-Agent), to tell the layers' own cost from what
            # the engine and libcurl spend on those headers.
            wire = [("Authorization", "Bearer " + "t" * 600), ("User-Agent", f"bench {PRODUCT}")]
            for label, factory, headers in (
                    ("bare Client (sync, 1 thread)", lambda c: c, None),
                    ("bare + same headers (sync)", lambda c: c, wire),
                    ("full stack (sync, 1 thread)", lambda c: build_stack(c, host, port), None)):
                with ocitransport.Client() as c:
                    rt = factory(c)
                    for _ in range(50):
                        rt.round_trip(Request("GET", url, headers))
                    m = max(n // 2, 200)
                    t0, c0 = time.perf_counter(), cpu()
                    for _ in range(m):
                        rt.round_trip(Request("GET", url, headers))
                    results.setdefault(label, []).append(((cpu() - c0) / m * 1e6, m / (time.perf_counter() - t0)))

        for _ in range(args.rounds):
            one_round()

    med = {k: (statistics.median(x for x, _ in v), statistics.median(y for _, y in v)) for k, v in results.items()}
    if args.json:
        print(json.dumps({k: {"cpu_us": us, "rps": rps} for k, (us, rps) in med.items()}))
        return
    print(f"# {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"compiled twins: {ocitransport.COMPILED}, nginx GET /v2/, {n} requests, concurrency {conc}, "
          f"median of {args.rounds}")
    print(f"{'variant':<32} {'CPU us/req':>11} {'req/s':>9} {'vs bare':>8}")
    for label, (us, rps) in med.items():
        base = med["bare AsyncClient" if "async" in label.lower() else "bare Client (sync, 1 thread)"][0]
        print(f"{label:<32} {us:>11.1f} {rps:>9.0f} {us / base:>7.2f}x")
    if "bare + same headers (sync)" in med:
        same = med["bare + same headers (sync)"][0]
        print(f"layers alone (sync): full stack / bare with the same headers = "
              f"{med['full stack (sync, 1 thread)'][0] / same:.2f}x")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=5000)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", action="store_true", help="print the medians as JSON")
    run(p.parse_args())
