"""``bench_mirror.py --rtt MS[,MS...] [--mbps N]``: mirroring from a source registry put far away by the
link shaper (tests/servers/shaper.py), TLS (HTTP/2 offered) at both ends; ours vs skopeo sync, skopeo
copy x8 and oras-py, interleaved, medians.

Every round, at every round-trip time, each tool copies ``--images`` images x ``--layers`` x ``--mib``
MiB into a fresh destination registry; the runs of one round go in turn (ours, skopeo sync, ...), then
the no-op re-sync of ours and of skopeo sync into the destination just filled. ``0`` ms is the source
without the shaper (loopback). ``ours, --jobs N`` rows pin the concurrency, to show how far ``auto``
(the default) ends from the best fixed value.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from tests.servers import raw
from tests.servers.registry import RegistryServer
from tests.servers.shaper import LinkShaper

from benchmarks._mirror_fixtures import ACCEPT, MiB, load, skopeo_env
from ocitransport.client import Client
from ocitransport.mirror import mirror_repository

REPO = "bench/app"


@contextmanager
def _registry() -> Iterator[RegistryServer]:
    server = RegistryServer(tls_enabled=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _certs(workdir: Path, name: str, *servers: RegistryServer) -> Path:
    """A directory with ``ca.crt`` (skopeo's cert dir) holding the CAs of ``servers``; also a bundle."""
    d = workdir / f"{name}-{time.monotonic_ns()}"
    d.mkdir()
    (d / "ca.crt").write_bytes(b"".join(Path(str(s.ca_file)).read_bytes() for s in servers))
    return d


def _skopeo(cmd: list[str], workdir: Path) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, timeout=900, env=skopeo_env(workdir))
    return time.perf_counter() - started


def _oras(src_host: str, src_ca: str, dst_host: str, dst_ca: str, tags: list[str], workdir: Path,
          parallel: int = 8) -> float:
    """oras-py, 8 threads, as ``_mirror_fixtures.oras_copy`` but over HTTPS with each side's CA."""
    import oras.provider

    local = threading.local()
    scratch = workdir / f"oras-{time.monotonic_ns()}"
    scratch.mkdir()

    def one(tag: str) -> None:
        if not hasattr(local, "pair"):
            local.pair = (oras.provider.Registry(src_host, tls_verify=src_ca),
                          oras.provider.Registry(dst_host, tls_verify=dst_ca))
        src, dst = local.pair
        r = src.do_request(f"https://{src_host}/v2/{REPO}/manifests/{tag}", "GET", headers={"Accept": ACCEPT})
        assert r.status_code == 200, r.status_code
        body, media_type = r.content, r.headers["Content-Type"]
        manifest = json.loads(body)
        scontainer = src.get_container(f"{src_host}/{REPO}:{tag}")
        dcontainer = dst.get_container(f"{dst_host}/{REPO}:{tag}")
        for blob in [manifest["config"], *manifest["layers"]]:
            path = scratch / f"{blob['digest'].replace(':', '-')}-{threading.get_ident()}"
            src.download_blob(scontainer, blob["digest"], str(path))
            up = dst.upload_blob(str(path), dcontainer, blob)
            assert up.status_code in (200, 201), up.status_code
            path.unlink()
        put = dst.do_request(f"https://{dst_host}/v2/{REPO}/manifests/{tag}", "PUT", data=body,
                             headers={"Content-Type": media_type})
        assert put.status_code == 201, put.status_code

    started = time.perf_counter()
    try:
        with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
            list(pool.map(one, tags))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return time.perf_counter() - started


def _check(dst: RegistryServer, ca: Path, tags: list[str], want: dict[str, str]) -> None:
    with Client(verify=str(ca / "ca.crt")) as client:
        for tag in tags:
            r = client.request("HEAD", f"https://{dst.host}/v2/{REPO}/manifests/{tag}", headers={"Accept": ACCEPT})
            got = r.headers.get("docker-content-digest")
            assert got == want[tag], (dst.host, tag, got, want[tag])


def run_far(args: Any, say: Callable[[str], None]) -> None:
    """The sweep (see the module docstring); prints a markdown table per round-trip time and one summary."""
    rtts = [float(x) for x in str(args.rtt).split(",")]
    rate = int(args.mbps * 125_000) if args.mbps else 0
    skopeo = shutil.which("skopeo") is not None
    try:
        import oras.provider  # noqa: F401
        has_oras = True
    except ImportError:
        has_oras = False
    fixed = [int(j) for j in str(args.fixed_jobs).split(",") if j]
    workdir = Path(tempfile.mkdtemp(prefix="bench-far-"))
    summary: list[list[str]] = []
    try:
        with _registry() as src:
            started = time.perf_counter()
            size = int(args.mib * MiB)
            tags = [f"t{i:04d}" for i in range(args.images)]
            want: dict[str, str] = {}
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                pushed = pool.map(lambda t: (t, raw.push_image(src, REPO, t, layers=[
                    os.urandom(size) for _ in range(args.layers)])), tags)
                for tag, image in pushed:
                    want[tag] = image.digest
            say(f"source: {args.images} images x {args.layers} x {args.mib:g} MiB, HTTPS (HTTP/2 offered), "
                f"pushed in {time.perf_counter() - started:.1f} s; destination: a fresh HTTPS registry per run; "
                f"rate cap: {f'{args.mbps:g} Mbit/s per connection' if rate else 'none'}; load {load()}")
            for rtt in rtts:
                shaper = LinkShaper("127.0.0.1", src.port, delay=rtt / 2000, rate=rate) if rtt or rate else None
                with shaper if shaper is not None else nullcontext():
                    host = shaper.host if shaper is not None else src.host
                    summary.append(_one_rtt(args, say, rtt, src, host, tags, want, workdir, skopeo, has_oras, fixed))
        say("")
        say(f"**Sweep: {args.images} images x {args.layers} x {args.mib:g} MiB from a source RTT ms away, "
            f"TLS at both ends** (median of {args.rounds}; wall seconds; x = vs skopeo sync)")
        say("")
        headers = ["RTT", "ocitransport (auto)", "chose", "best fixed --jobs", "skopeo sync", "skopeo copy x8",
                   "oras-py x8", "no-op: ours", "no-op: skopeo sync"]
        say("| " + " | ".join(headers) + " |")
        say("|" + "---|" * len(headers))
        for row in summary:
            say("| " + " | ".join(row) + " |")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _one_rtt(args: Any, say: Callable[[str], None], rtt: float, src: RegistryServer, host: str, tags: list[str],
             want: dict[str, str], workdir: Path, skopeo: bool, has_oras: bool, fixed: list[int]) -> list[str]:
    times: dict[str, list[float]] = {}
    noop: dict[str, list[float]] = {}
    chose: list[str] = []
    conns: list[str] = []

    def ours(jobs: Any) -> Callable[[RegistryServer, Path], float]:
        def run(dst: RegistryServer, certs: Path) -> float:
            with Client(verify=str(certs / "ca.crt")) as client:
                started = time.perf_counter()
                report = mirror_repository(f"{host}/{REPO}", f"{dst.host}/{REPO}", client=client, jobs=jobs)
                wall = time.perf_counter() - started
            assert report.ok and report.images_copied == len(tags), report.summary()
            if jobs == "auto":
                chose.append(report.concurrency)
                conns.append(", ".join(f"{'src' if r == host else 'dst'} {c['connections']} conn / "
                                       f"{c['tls_handshakes']} TLS" for r, c in report.connections.items()))
                with Client(verify=str(certs / "ca.crt")) as client:
                    started = time.perf_counter()
                    again = mirror_repository(f"{host}/{REPO}", f"{dst.host}/{REPO}", client=client)
                    noop.setdefault("ours", []).append(time.perf_counter() - started)
                assert again.ok and again.images_skipped == len(tags), again.summary()
            return wall
        return run

    def skopeo_sync(dst: RegistryServer, certs: Path) -> float:
        cmd = ["skopeo", "sync", "--src", "docker", "--dest", "docker", f"--src-cert-dir={certs}",
               f"--dest-cert-dir={certs}", "--preserve-digests", f"{host}/{REPO}", f"{dst.host}/bench"]
        wall = _skopeo(cmd, workdir)
        noop.setdefault("skopeo sync", []).append(_skopeo(cmd, workdir))
        return wall

    def skopeo_copy(dst: RegistryServer, certs: Path) -> float:
        listing = workdir / f"pairs-{time.monotonic_ns()}.txt"
        listing.write_text("".join(f"docker://{host}/{REPO}:{t}\ndocker://{dst.host}/{REPO}:{t}\n" for t in tags))
        return _skopeo(["xargs", "-a", str(listing), "-P", "8", "-n", "2", "skopeo", "copy", "--quiet",
                        f"--src-cert-dir={certs}", f"--dest-cert-dir={certs}", "--preserve-digests"], workdir)

    def oras(dst: RegistryServer, certs: Path) -> float:
        return _oras(host, str(certs / "ca.crt"), dst.host, str(certs / "ca.crt"), tags, workdir)

    tools: dict[str, Callable[[RegistryServer, Path], float]] = {"ocitransport (auto)": ours("auto")}
    if skopeo:
        tools["skopeo sync"] = skopeo_sync
        tools["skopeo copy x8"] = skopeo_copy
    if has_oras:
        tools["oras-py x8"] = oras
    for j in fixed:
        tools[f"ocitransport --jobs {j}"] = ours(j)
    for rnd in range(args.rounds):
        for name, tool in tools.items():
            with _registry() as dst:
                certs = _certs(workdir, "certs", src, dst)
                times.setdefault(name, []).append(tool(dst, certs))
                _check(dst, certs, tags, want)
        print(f"  {rtt:g} ms: round {rnd + 1}/{args.rounds} done, load {load()}", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    nmed = {k: statistics.median(v) for k, v in noop.items()}
    base = med.get("skopeo sync")
    nbase = nmed.get("skopeo sync")

    def cell(v: float | None, b: float | None) -> str:
        if v is None:
            return "-"
        return f"{v:.2f} ({v / b:.2f}x)" if b else f"{v:.2f}"

    say("")
    say(f"**RTT {rtt:g} ms** (median of {args.rounds}, wall seconds; x = vs skopeo sync)")
    say("")
    say("| tool | wall | no-op re-sync |\n|---|---|---|")
    for name, v in med.items():
        noop = "-"
        if name in ("skopeo sync", "ocitransport (auto)"):
            noop = cell(nmed.get("skopeo sync" if name == "skopeo sync" else "ours"), nbase)
        say(f"| {name} | {cell(v, base)} | {noop} |")
    say(f"auto chose: {'; '.join(chose)}")
    say(f"connections (auto runs): {'; '.join(conns)}")
    best = min((v, k) for k, v in med.items() if k.startswith("ocitransport --jobs")) if fixed else None
    return [f"{rtt:g} ms", cell(med["ocitransport (auto)"], base), chose[-1] if chose else "-",
            f"{best[0]:.2f} ({best[1].rsplit(' ', 1)[1]})" if best else "-",
            cell(base, base), cell(med.get("skopeo copy x8"), base), cell(med.get("oras-py x8"), base),
            cell(nmed.get("ours"), nbase), cell(nbase, nbase)]


__all__ = ["run_far"]


_BIG_CHILD = """
import json, sys
from ocitransport.mirror import copy
r = copy(sys.argv[1], sys.argv[2])
print(json.dumps({"ok": r.ok, "bytes": r.bytes_transferred, "errors": r.errors, "connections": r.connections}))
sys.exit(0 if r.ok else 1)
"""


def run_big(args: Any, say: Callable[[str], None]) -> None:
    """One ``--big-mib`` MiB layer from a source ``--rtt`` ms away behind a ``--big-cap`` MiB/s
    per-connection cap (plain HTTP/1.1 registries: every ranged GET is a connection of its own, as to an
    object store or CDN); ours (a child process: its peak RSS) vs ``skopeo copy``, ``--rounds`` rounds."""
    from benchmarks._mirror_fixtures import Fleet, push_big, run_child
    from ocitransport.mirror._demo import registry_binary

    rtt = float(str(args.rtt).split(",")[-1])
    cap = int(args.big_cap * MiB)
    size = int(args.big_mib * MiB)
    binary = registry_binary()
    assert binary is not None
    workdir = Path(tempfile.mkdtemp(prefix="bench-big-"))
    fleet = Fleet(binary, workdir)
    ours: list[tuple[float, int]] = []
    theirs: list[float] = []
    try:
        src = fleet.start("big-src")
        started = time.perf_counter()
        push_big(src.host, "big/app", "v1", size)
        say(f"(big) one {args.big_mib:g} MiB layer pushed in {time.perf_counter() - started:.1f} s; source "
            f"{rtt:g} ms away, {args.big_cap:g} MiB/s per connection; load {load()}")
        with LinkShaper("127.0.0.1", src.port, delay=rtt / 2000, rate=cap) as link:
            for _ in range(args.rounds):
                with fleet.destination("big-dst") as dst:
                    wall, _, rss, out = run_child([sys.executable, "-c", _BIG_CHILD, f"{link.host}/big/app:v1",
                                                   f"{dst.host}/big/app:v1"], capture=True)
                    ours.append((wall, rss))
                    print(f"  ours: {wall:.1f} s, peak RSS {rss / MiB:.0f} MiB {out.strip()[:200]}", flush=True)
                if shutil.which("skopeo"):
                    with fleet.destination("big-dst") as dst:
                        theirs.append(_skopeo(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                                               "--dest-tls-verify=false", f"docker://{link.host}/big/app:v1",
                                               f"docker://{dst.host}/big/app:v1"], workdir))
                        print(f"  skopeo copy: {theirs[-1]:.1f} s", flush=True)
    finally:
        fleet.close()
        shutil.rmtree(workdir, ignore_errors=True)
    wall = statistics.median(w for w, _ in ours)
    rss = max(r for _, r in ours)
    say("")
    say(f"**One {args.big_mib:g} MiB layer, source {rtt:g} ms away, {args.big_cap:g} MiB/s per connection** "
        f"(median of {args.rounds})")
    say("")
    say("| tool | wall | MiB/s | vs skopeo copy | peak RSS |\n|---|---|---|---|---|")
    base = statistics.median(theirs) if theirs else None
    say(f"| ocitransport (ranged parts) | {wall:.1f} s | {args.big_mib / wall:.0f} | "
        f"{f'{base / wall:.1f}x' if base else '-'} | {rss / MiB:.0f} MiB |")
    if base:
        say(f"| skopeo copy | {base:.1f} s | {args.big_mib / base:.0f} | 1.0x | - |")


__all__ += ["run_big"]
