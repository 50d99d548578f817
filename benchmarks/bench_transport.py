"""What the registry layers cost per request: the whole transport stack vs the bare Client.

Stack: Bearer auth with a cached token -> scheme -> user agent -> logger (the ``ocitransport`` logger at
INFO, so the DEBUG lines are skipped) -> retry -> Client. Target: the layers add at most 20 % of client
CPU per small request. The server is nginx (tests/servers/nginx.py) on 127.0.0.1, which costs almost
nothing per request, so the client's own CPU time is what is measured (getrusage user+sys / N).

    python benchmarks/bench_transport.py [--requests 5000] [--concurrency 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
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

import ocitransport  # noqa: E402
from ocitransport import Request, authn, transport  # noqa: E402
from ocitransport.transport.simple import Scheme, UserAgent  # noqa: E402
from tests.servers.nginx import NginxServer  # noqa: E402


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

            for label, factory in (("bare Client (sync, 1 thread)", lambda c: c),
                                   ("full stack (sync, 1 thread)", lambda c: build_stack(c, host, port))):
                with ocitransport.Client() as c:
                    rt = factory(c)
                    for _ in range(50):
                        rt.round_trip(Request("GET", url))
                    m = max(n // 5, 200)
                    t0, c0 = time.perf_counter(), cpu()
                    for _ in range(m):
                        rt.round_trip(Request("GET", url))
                    results.setdefault(label, []).append(((cpu() - c0) / m * 1e6, m / (time.perf_counter() - t0)))

        for _ in range(args.rounds):
            one_round()

    print(f"# {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"compiled twins: {ocitransport.COMPILED}, nginx GET /v2/, {n} requests, concurrency {conc}, "
          f"median of {args.rounds}")
    med = {k: (statistics.median(x for x, _ in v), statistics.median(y for _, y in v)) for k, v in results.items()}
    print(f"{'variant':<32} {'CPU us/req':>11} {'req/s':>9} {'vs bare':>8}")
    for label, (us, rps) in med.items():
        base = med["bare AsyncClient" if "async" in label.lower() else "bare Client (sync, 1 thread)"][0]
        print(f"{label:<32} {us:>11.1f} {rps:>9.0f} {us / base:>7.2f}x")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=5000)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    run(p.parse_args())
