"""Mirroring benchmarks: ocitransport vs skopeo (sync, a parallel copy loop) and oras-py, between local registries.

    python benchmarks/bench_mirror.py [--rounds 3] [--scenarios 1,2,3] [--images 50] [--layers 3] [--mib 1]
                                      [--jobs auto|N] [--repos 20] [--base-mib 64] [--big-mib 1024]
    python -m pytest benchmarks/bench_mirror.py -s        (the same, default sizes)
    python benchmarks/bench_mirror.py --rtt 0,20,50,100 [--mbps N] [--images 40] [--rounds 3]
                                      [--fixed-jobs 8,16,32,64]

``--rtt``: the distance sweep instead of the scenarios below (benchmarks/_far.py): the source put that
many ms away by the link shaper, TLS at both ends, ours vs skopeo sync, skopeo copy x8 and oras-py.

Scenarios, every ratio measured side by side in one run:

1. ``--images`` images x ``--layers`` layers x ``--mib`` MiB in one repository: ocitransport (library
   ``mirror_repository``; the CLI ``ocitransport mirror`` in a subprocess; the library with
   ``referrers=False`` and with ``jobs=16``, to show what those cost) vs ``skopeo sync`` vs
   ``xargs -P 8 skopeo copy`` vs oras-py (8 threads, blobs through files as oras does). Target: at most
   0.25x skopeo sync's wall time.
2. ``--repos`` repositories sharing one ``--base-mib`` MiB base layer (plus a 256 KiB layer each): bytes the
   client sent to the destination (a byte-counting relay in front of it) and wall time, vs skopeo sync.
3. One image with one ``--big-mib`` MiB layer: throughput vs ``skopeo copy``, our peak RSS (the copy runs
   in a child process; ``wait4``), and the files that appeared in its ``TMPDIR`` (an empty directory,
   polled). Chunked (default 64 MiB threshold) and monolithic (``chunk_threshold`` above the size).
4. The no-op re-sync of (1), right after each full run: target under 0.1x skopeo sync's time.

Each round starts a fresh destination registry for every run (so nothing one tool pushed can be mounted
or skipped by another), runs the tools in turn (ours, peer, ours, peer, ...), and checks every tag's
digest at the destination. Tables show medians over rounds, as markdown. ``registries CPU`` is the CPU
the source and destination ``docker-registry`` processes used during the run (``/proc``): on this 2-core
machine it bounds the wall time as much as the client does. Peers that are not installed are skipped.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._mirror_fixtures import (
    ByteCounter,
    Fleet,
    MiB,
    RequestLog,
    Run,
    TmpWatch,
    bare_protocol,
    digests,
    ensure_bytecode,
    load,
    oras_available,
    oras_copy,
    push_big,
    push_images,
    push_shared_base,
    python_startup,
    registry_cpu,
    run_child,
    skopeo_copy_loop,
    skopeo_sync_docker,
    skopeo_sync_yaml,
    timed,
)
from ocitransport.mirror import mirror_repositories, mirror_repository
from ocitransport.mirror._demo import LocalRegistry, registry_binary

REPO = "bench/app"
HUGE = 1 << 62  # a chunk threshold no blob reaches: every upload is one PUT

#: The child that runs our 1 GiB copy (so its peak RSS is its own).
_COPY_CHILD = """
import json, sys
from ocitransport.mirror import copy
r = copy(sys.argv[1], sys.argv[2], chunk_threshold=int(sys.argv[3]), chunk_size=int(sys.argv[4]))
print(json.dumps({"ok": r.ok, "bytes": r.bytes_transferred, "errors": r.errors}))
sys.exit(0 if r.ok else 1)
"""


def _median(runs: list[Run], attr: str) -> float:
    return statistics.median(float(getattr(r, attr)) for r in runs)


def _fmt_s(x: float) -> str:
    return f"{x:.2f} s"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _check(src: LocalRegistry, dst: LocalRegistry, src_repo: str, dst_repo: str, tags: list[str]) -> None:
    want, got = digests(src.host, src_repo, tags), digests(dst.host, dst_repo, tags)
    bad = [t for t in tags if got[t] != want[t]]
    if bad:
        raise AssertionError(f"{dst.host}/{dst_repo}: {len(bad)} tags missing or different, e.g. {bad[:3]}")


class Bench:
    def __init__(self, args: argparse.Namespace, fleet: Fleet, workdir: Path) -> None:
        self.args = args
        self.fleet = fleet
        self.workdir = workdir
        self.skopeo = shutil.which("skopeo") is not None
        self.oras = oras_available()
        self.out: list[str] = []

    def say(self, text: str = "") -> None:
        print(text, flush=True)
        self.out.append(text)

    # -- (1) and (4) ------------------------------------------------------------------------------

    def many_small(self) -> None:
        a = self.args
        src = self.fleet.start("src-small")
        t0 = time.perf_counter()
        tags = push_images(src.host, REPO, a.images, a.layers, int(a.mib * MiB))
        total_mib = a.images * a.layers * a.mib
        self.say(f"(1) source: {a.images} images x {a.layers} layers x {a.mib:g} MiB ({total_mib:g} MiB) "
                 f"pushed in {time.perf_counter() - t0:.1f} s")

        def library(**kw: Any) -> Callable[[LocalRegistry], Run]:
            def run(dst: LocalRegistry) -> Run:
                before = registry_cpu([src, dst])
                wall, cpu, report = timed(lambda: mirror_repository(
                    f"{src.host}/{REPO}", f"{dst.host}/{REPO}", jobs=kw.get("jobs", a.jobs), **{
                        k: v for k, v in kw.items() if k != "jobs"}))
                assert report.ok and report.images_copied == a.images, report.summary()
                return Run(wall, cpu, registry_cpu([src, dst]) - before)
            return run

        def noop(dst: LocalRegistry) -> Run:
            before = registry_cpu([src, dst])
            wall, cpu, report = timed(lambda: mirror_repository(f"{src.host}/{REPO}", f"{dst.host}/{REPO}",
                                                                jobs=a.jobs))
            assert report.ok and report.images_skipped == a.images, report.summary()
            return Run(wall, cpu, registry_cpu([src, dst]) - before)

        def cli(dst: LocalRegistry) -> Run:
            before = registry_cpu([src, dst])
            wall, cpu, rss, _ = run_child([sys.executable, "-m", "ocitransport", "mirror", "--quiet", "--jobs",
                                           str(a.jobs), f"{src.host}/{REPO}", f"{dst.host}/{REPO}"])
            return Run(wall, cpu, registry_cpu([src, dst]) - before, rss)

        def cli_noop(dst: LocalRegistry) -> Run:
            return cli(dst)

        def skopeo_sync(dst: LocalRegistry) -> Run:
            before = registry_cpu([src, dst])
            run = skopeo_sync_docker(src.host, REPO, dst.host, "bench", self.workdir)
            run.registry_cpu = registry_cpu([src, dst]) - before
            return run

        def skopeo_loop(dst: LocalRegistry) -> Run:
            before = registry_cpu([src, dst])
            run = skopeo_copy_loop([(f"{src.host}/{REPO}:{t}", f"{dst.host}/{REPO}:{t}") for t in tags],
                                   self.workdir, parallel=8)
            run.registry_cpu = registry_cpu([src, dst]) - before
            return run

        def oras(dst: LocalRegistry) -> Run:
            before = registry_cpu([src, dst])
            wall, cpu, _ = timed(lambda: oras_copy(src.host, dst.host, REPO, tags, self.workdir, parallel=8))
            return Run(wall, cpu, registry_cpu([src, dst]) - before)

        def floor(dst: LocalRegistry) -> Run:
            before = registry_cpu([src, dst])
            wall, cpu, _ = timed(lambda: bare_protocol(src.host, dst.host, REPO, tags, parallel=8))
            return Run(wall, cpu, registry_cpu([src, dst]) - before)

        # name -> (full run, its no-op re-sync or None)
        tools: dict[str, tuple[Callable[[LocalRegistry], Run], Callable[[LocalRegistry], Run] | None]] = {
            f"ocitransport library (jobs={a.jobs})": (library(), noop),
            "ocitransport library, jobs=8": (library(jobs=8), None),
            "ocitransport CLI subprocess": (cli, cli_noop),
        }
        if self.skopeo:
            tools["skopeo sync"] = (skopeo_sync, skopeo_sync)
            tools["skopeo copy, xargs -P 8"] = (skopeo_loop, None)
        tools["ocitransport library, referrers=False"] = (library(referrers=False), None)
        tools["ocitransport library, jobs=16"] = (library(jobs=16), None)
        if self.oras:
            tools["oras-py, 8 threads"] = (oras, None)
        tools["yardstick: bare GET/POST/PUT, no checks, 8 threads"] = (floor, None)
        full: dict[str, list[Run]] = {k: [] for k in tools}
        again: dict[str, list[Run]] = {k: [] for k, (_, n) in tools.items() if n is not None}
        for rnd in range(a.rounds):
            for name, (run_full, run_noop) in tools.items():
                with self.fleet.destination("dst-small") as dst:
                    full[name].append(run_full(dst))
                    dst_repo = "bench/app"
                    _check(src, dst, REPO, dst_repo, tags)
                    if run_noop is not None:
                        again[name].append(run_noop(dst))
            print(f"  (1) round {rnd + 1}/{a.rounds} done, load {load()}", flush=True)
        with self.fleet.destination("dst-small") as dst, RequestLog() as counting:
            report = mirror_repository(f"{src.host}/{REPO}", f"{dst.host}/{REPO}", jobs=a.jobs, client=counting)
            assert report.ok, report.summary()
            requests = counting.kinds({src.host: "source", dst.host: "destination"})
        self.fleet.drop(src)
        startup = python_startup()

        sync_name = "skopeo sync"
        base = _median(full[sync_name], "wall") if sync_name in full else None
        rows = []
        for name, runs in full.items():
            wall = _median(runs, "wall")
            rows.append([name, _fmt_s(wall), f"{wall / base:.2f}x" if base else "-",
                         f"{total_mib / wall:.0f}", _fmt_s(_median(runs, "cpu")),
                         _fmt_s(_median(runs, "registry_cpu"))])
        self.say()
        self.say(f"**(1) {a.images} images x {a.layers} layers x {a.mib:g} MiB, one repository** "
                 f"(median of {a.rounds}; target <= 0.25x skopeo sync)")
        self.say()
        self.say(_table(["tool", "wall", "vs skopeo sync", "MiB/s", "client CPU", "registries CPU"], rows))
        self.say()
        self.say(f"Python start-up + `import ocitransport.cli` (paid by every CLI run): {startup:.2f} s")
        self.say()
        self.say(f"ocitransport's requests for the {a.images} images ({sum(requests.values()) / a.images:.1f} per "
                 "image): " + ", ".join(f"{k} {v}" for k, v in requests.items()))
        base = _median(again[sync_name], "wall") if sync_name in again else None
        rows = []
        for name, runs in again.items():
            wall = _median(runs, "wall")
            rows.append([name, _fmt_s(wall), f"{wall / base:.2f}x" if base else "-",
                         _fmt_s(_median(runs, "cpu")), _fmt_s(_median(runs, "registry_cpu"))])
        self.say()
        self.say(f"**(4) no-op re-sync of (1)** (median of {a.rounds}; target < 0.1x skopeo sync)")
        self.say()
        self.say(_table(["tool", "wall", "vs skopeo sync", "client CPU", "registries CPU"], rows))

    # -- (2) --------------------------------------------------------------------------------------

    def shared_base(self) -> None:
        a = self.args
        src = self.fleet.start("src-shared")
        repos = [f"base/r{i:02d}" for i in range(a.repos)]
        push_shared_base(src.host, repos, int(a.base_mib * MiB), 256 << 10)
        ideal = a.base_mib + a.repos * 0.25

        def ours(dst: LocalRegistry, relay: ByteCounter) -> Run:
            before = registry_cpu([src, dst])
            wall, cpu, report = timed(lambda: mirror_repositories(
                [(f"{src.host}/{r}", f"{relay.host}/mirror/{r}") for r in repos], jobs=a.jobs))
            assert report.ok and report.images_copied == a.repos, report.summary()
            run = Run(wall, cpu, registry_cpu([src, dst]) - before)
            run.extra = {"mounted": report.blobs_mounted, "transferred": report.blobs_transferred}
            return run

        def skopeo(dst: LocalRegistry, relay: ByteCounter) -> Run:
            before = registry_cpu([src, dst])
            # skopeo sync puts each repository under DESTINATION/<its last path component>
            run = skopeo_sync_yaml(src.host, repos, relay.host, "mirror/base", self.workdir)
            run.registry_cpu = registry_cpu([src, dst]) - before
            return run

        tools: dict[str, Callable[[LocalRegistry, ByteCounter], Run]] = {"ocitransport library": ours}
        if self.skopeo:
            tools["skopeo sync (YAML, all repos)"] = skopeo
        results: dict[str, list[Run]] = {k: [] for k in tools}
        for rnd in range(a.rounds):
            for name, fn in tools.items():
                with self.fleet.destination("dst-shared") as dst:
                    relay = ByteCounter(dst.port)
                    try:
                        run = fn(dst, relay)
                        run.bytes_up = relay.bytes_up
                    finally:
                        relay.close()
                    for r in repos:
                        _check(src, dst, r, f"mirror/{r}", ["latest"])
                    results[name].append(run)
            print(f"  (2) round {rnd + 1}/{a.rounds} done, load {load()}", flush=True)
        self.fleet.drop(src)
        rows = []
        for name, runs in results.items():
            up = _median(runs, "bytes_up") / MiB
            rows.append([name, f"{up:.1f} MiB", f"{up / ideal:.2f}x", _fmt_s(_median(runs, "wall")),
                         _fmt_s(_median(runs, "cpu"))])
        self.say()
        self.say(f"**(2) {a.repos} repositories sharing one {a.base_mib:g} MiB base layer** (+ 256 KiB each; "
                 f"bytes sent to the destination, counted on the wire; median of {a.rounds}; "
                 f"the least possible is {ideal:g} MiB)")
        self.say()
        self.say(_table(["tool", "uploaded", "vs least possible", "wall", "client CPU"], rows))
        if results["ocitransport library"][0].extra:
            ex = results["ocitransport library"][0].extra
            self.say()
            self.say(f"ocitransport: {ex['transferred']} blobs uploaded, {ex['mounted']} mounted per run.")

    # -- (3) --------------------------------------------------------------------------------------

    def big_layer(self) -> None:
        a = self.args
        src = self.fleet.start("src-big")
        t0 = time.perf_counter()
        push_big(src.host, "big/one", "latest", int(a.big_mib * MiB))
        self.say()
        self.say(f"(3) source: one {a.big_mib:g} MiB layer pushed in {time.perf_counter() - t0:.1f} s")

        def ours(threshold: int, chunk: int = 16 * MiB) -> Callable[[LocalRegistry], Run]:
            def run(dst: LocalRegistry) -> Run:
                tmp = Path(tempfile.mkdtemp(prefix="tmpdir-", dir=self.workdir))
                env = {**os.environ, "TMPDIR": str(tmp)}
                before = registry_cpu([src, dst])
                with TmpWatch(tmp) as watch:
                    wall, cpu, rss, _ = run_child([sys.executable, "-c", _COPY_CHILD, f"{src.host}/big/one:latest",
                                                   f"{dst.host}/big/one:latest", str(threshold), str(chunk)],
                                                  env=env,
                                                  capture=True)
                result = Run(wall, cpu, registry_cpu([src, dst]) - before, rss)
                result.extra["temp files"] = len(watch.seen)
                shutil.rmtree(tmp, ignore_errors=True)
                return result
            return run

        def skopeo(dst: LocalRegistry) -> Run:
            tmp = Path(tempfile.mkdtemp(prefix="tmpdir-", dir=self.workdir))
            env = {**os.environ, "TMPDIR": str(tmp), "XDG_RUNTIME_DIR": str(self.workdir),
                   "HOME": str(self.workdir)}
            before = registry_cpu([src, dst])
            with TmpWatch(tmp) as watch:
                wall, cpu, rss, _ = run_child(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                                               "--dest-tls-verify=false", "--preserve-digests",
                                               f"docker://{src.host}/big/one:latest",
                                               f"docker://{dst.host}/big/one:latest"], env=env)
            result = Run(wall, cpu, registry_cpu([src, dst]) - before, rss)
            result.extra["temp files"] = len(watch.seen)
            shutil.rmtree(tmp, ignore_errors=True)
            return result

        tools: dict[str, Callable[[LocalRegistry], Run]] = {
            "ocitransport copy, chunked (16 MiB PATCHes)": ours(64 * MiB),
        }
        if self.skopeo:
            tools["skopeo copy"] = skopeo
        tools["ocitransport copy, monolithic PUT"] = ours(HUGE)
        tools["ocitransport copy, chunked, 64 MiB PATCHes"] = ours(64 * MiB, 64 * MiB)
        results: dict[str, list[Run]] = {k: [] for k in tools}
        for rnd in range(a.rounds):
            for name, fn in tools.items():
                with self.fleet.destination("dst-big") as dst:
                    results[name].append(fn(dst))
                    _check(src, dst, "big/one", "big/one", ["latest"])
            print(f"  (3) round {rnd + 1}/{a.rounds} done, load {load()}", flush=True)
        self.fleet.drop(src)
        base = _median(results["skopeo copy"], "wall") if "skopeo copy" in results else None
        rows = []
        for name, runs in results.items():
            wall = _median(runs, "wall")
            rows.append([name, _fmt_s(wall), f"{a.big_mib / wall:.0f}",
                         f"{base / wall:.2f}x" if base else "-",
                         f"{_median(runs, 'max_rss') / MiB:.0f} MiB", _fmt_s(_median(runs, "cpu")),
                         _fmt_s(_median(runs, "registry_cpu")), str(max(r.extra['temp files'] for r in runs))])
        self.say()
        self.say(f"**(3) one image with a {a.big_mib:g} MiB layer** (median of {a.rounds}; targets: "
                 "throughput >= skopeo copy, peak RSS < 100 MiB, no temp files)")
        self.say()
        self.say(_table(["tool", "wall", "MiB/s", "throughput vs skopeo", "peak RSS", "client CPU",
                         "registries CPU", "files in TMPDIR"], rows))
        self.say()
        self.say("Wall times are whole processes: ours include Python's start-up and imports (see (1)).")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default="1,2,3", help="which of 1 (and 4), 2, 3 to run (default all)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--mib", type=float, default=1.0)
    parser.add_argument("--jobs", type=lambda v: v if v == "auto" else int(v), default="auto",
                        help="ours: a number, or auto (the default)")
    parser.add_argument("--repos", type=int, default=20)
    parser.add_argument("--base-mib", type=float, default=64)
    parser.add_argument("--big-mib", type=float, default=1024)
    parser.add_argument("--rtt", default="", help="round-trip times (ms, comma-separated) of the distance sweep")
    parser.add_argument("--mbps", type=float, default=0, help="per-connection rate cap of the sweep (Mbit/s)")
    parser.add_argument("--fixed-jobs", default="8,16,32,64", help="fixed --jobs values the sweep also runs")
    parser.add_argument("--big", action="store_true",
                        help="with --rtt: one --big-mib layer from the last RTT behind --big-cap MiB/s per connection")
    parser.add_argument("--big-cap", type=float, default=20, help="per-connection cap of --big (MiB/s)")
    parser.add_argument("--no-sweep", action="store_true", help="with --rtt --big: only the big layer")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    binary = registry_binary()
    if binary is None:
        print("needs docker-registry (apt-get install docker-registry)", file=sys.stderr)
        return 1
    ensure_bytecode()  # CLI runs start as an installed package would
    if args.rtt:
        from benchmarks._far import run_big, run_far

        out: list[str] = []

        def say(text: str = "") -> None:
            print(text, flush=True)
            out.append(text)

        say(f"load at start: {load()}; {os.cpu_count()} CPUs")
        if not args.no_sweep:
            run_far(args, say)
        if args.big:
            run_big(args, say)
        say(f"load at end: {load()}")
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="bench-mirror-"))
    fleet = Fleet(binary, workdir)
    bench = Bench(args, fleet, workdir)
    uptime = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    bench.say(f"load at start: {uptime}; {os.cpu_count()} CPUs; skopeo: "
              f"{'yes' if bench.skopeo else 'not installed'}; oras-py: {'yes' if bench.oras else 'not installed'}")
    try:
        wanted = set(args.scenarios.split(","))
        if "1" in wanted or "4" in wanted:
            bench.many_small()
        if "2" in wanted:
            bench.shared_base()
        if "3" in wanted:
            bench.big_layer()
    finally:
        fleet.close()
        shutil.rmtree(workdir, ignore_errors=True)
    bench.say()
    bench.say(f"load at end: {load()}")
    return 0


def test_mirror_benchmarks() -> None:
    """``python -m pytest benchmarks/bench_mirror.py -s``: every scenario at the default sizes
    (``BENCH_MIRROR_ARGS`` may hold other options, e.g. ``--rounds 1 --big-mib 256``)."""
    import pytest

    if registry_binary() is None:
        pytest.skip("docker-registry is not installed")
    assert main(os.environ.get("BENCH_MIRROR_ARGS", "").split()) == 0


if __name__ == "__main__":
    sys.exit(main())
