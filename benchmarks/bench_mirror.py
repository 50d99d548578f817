"""Mirroring benchmark: ocitransport's library mirror vs ``skopeo sync``, between local registries.

Standalone: ``python benchmarks/bench_mirror.py [--images 50] [--layers 3] [--mib 1] [--jobs 8]``.
Starts three ``docker-registry`` instances on loopback (a source, one destination per tool), pushes
IMAGES x LAYERS x MIB random layers (one repository, one tag per image), then times for each tool a
full mirror of the repository and a no-op re-sync, and prints the table side by side.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ocitransport.client import Client
from ocitransport.mirror import mirror_repository
from ocitransport.mirror._demo import LocalRegistry, _push_image, registry_binary

REPO = "bench/app"


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _skopeo(src_host: str, dst_host: str, workdir: Path) -> tuple[float, float]:
    cmd = ["skopeo", "sync", "--src", "docker", "--dest", "docker", "--src-tls-verify=false",
           "--dest-tls-verify=false", "--preserve-digests", f"{src_host}/{REPO}", f"{dst_host}/bench"]
    env = {**os.environ, "XDG_RUNTIME_DIR": str(workdir), "HOME": str(workdir)}
    start, cpu = time.perf_counter(), _cpu(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, timeout=600)
    return time.perf_counter() - start, _cpu(resource.RUSAGE_CHILDREN) - cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--mib", type=float, default=1.0)
    parser.add_argument("--jobs", type=int, default=8)
    args = parser.parse_args()
    binary = registry_binary()
    if binary is None or shutil.which("skopeo") is None:
        print("needs docker-registry and skopeo installed", file=sys.stderr)
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="bench-mirror-"))
    registries = []
    try:
        src, dst_ours, dst_skopeo = (LocalRegistry(binary, workdir, n).start()
                                     for n in ("src", "dst-ocitransport", "dst-skopeo"))
        registries += [src, dst_ours, dst_skopeo]
        size = int(args.mib * (1 << 20))
        t0 = time.perf_counter()
        with Client() as client:
            for i in range(args.images):
                _push_image(client, src.host, REPO, f"t{i:04d}", [os.urandom(size) for _ in range(args.layers)],
                            "amd64")
        print(f"source: {args.images} images x {args.layers} layers x {args.mib:g} MiB "
              f"({args.images * args.layers * args.mib:g} MiB) pushed in {time.perf_counter() - t0:.1f} s")

        def ours() -> tuple[float, float, object]:
            start, cpu = time.perf_counter(), _cpu(resource.RUSAGE_SELF)
            report = mirror_repository(f"{src.host}/{REPO}", f"{dst_ours.host}/{REPO}", jobs=args.jobs)
            elapsed = time.perf_counter() - start
            assert report.ok, report.errors
            return elapsed, _cpu(resource.RUSAGE_SELF) - cpu, report

        full_ours, full_ours_cpu, r1 = ours()
        noop_ours, noop_ours_cpu, r2 = ours()
        assert r1.images_copied == args.images and r2.images_skipped == args.images  # type: ignore[attr-defined]
        full_skopeo, full_skopeo_cpu = _skopeo(src.host, dst_skopeo.host, workdir)
        noop_skopeo, noop_skopeo_cpu = _skopeo(src.host, dst_skopeo.host, workdir)

        print()
        print(f"{'run':<16}{'ocitransport':>14}{'skopeo sync':>13}{'ratio':>8}   "
              f"{'client CPU: ours':>17}{'skopeo':>9}")
        rows = (("full mirror", full_ours, full_skopeo, full_ours_cpu, full_skopeo_cpu),
                ("no-op re-sync", noop_ours, noop_skopeo, noop_ours_cpu, noop_skopeo_cpu))
        for name, a, b, ca, cb in rows:
            print(f"{name:<16}{a:>13.2f}s{b:>12.2f}s{b / a:>7.1f}x   {ca:>16.2f}s{cb:>8.2f}s")
        mib = args.images * args.layers * args.mib
        print(f"\nocitransport full mirror: {mib / full_ours:.0f} MiB/s, jobs={args.jobs}; skopeo: "
              f"{mib / full_skopeo:.0f} MiB/s (skopeo sync copies images one after another)")
    finally:
        for registry in reversed(registries):
            registry.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
