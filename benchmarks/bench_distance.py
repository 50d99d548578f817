"""Distance benchmark: copying from a registry as it runs in production (HTTPS with HTTP/2, Bearer
tokens from a token service on its own port, blobs on S3 behind presigned redirects) put 0-150 ms away
by the link shaper (tests/servers/shaper.py), into a Basic-auth registry on S3; ocitransport vs
``skopeo copy``.

    python -m benchmarks.bench_distance [--rtt-ms 0,20,80,150] [--rounds 3] [--layers 3] [--kib 512]

Run from the repository root (it uses the test servers). Needs docker-registry and moto_server; skopeo
is optional. A table of median wall times per round-trip time, as markdown.
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
from pathlib import Path

from tests.servers import raw
from tests.servers.fixtures import ServerKeychain
from tests.servers.registry import RegistryServer
from tests.servers.s3 import S3Server
from tests.servers.shaper import LinkShaper

import ocitransport
from ocitransport import mirror
from ocitransport.authn import Basic


def _skopeo(src: str, dst: str, far: RegistryServer, near: RegistryServer, certs: Path) -> float:
    started = time.monotonic()
    subprocess.run(["skopeo", "copy", "--quiet", f"--src-cert-dir={certs}",
                    f"--src-creds={far.username}:{far.password}", "--dest-tls-verify=false",
                    f"--dest-creds={near.username}:{near.password}", f"docker://{src}", f"docker://{dst}"],
                   check=True, capture_output=True, timeout=300)
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rtt-ms", default="0,20,80,150", help="round-trip times to add, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--kib", type=int, default=512, help="size of each layer")
    parser.add_argument("--no-referrers", action="store_true", help="ocitransport without the referrers lookup")
    args = parser.parse_args(argv)
    skopeo = shutil.which("skopeo")
    rows = []
    with tempfile.TemporaryDirectory() as tmp, S3Server() as s3, \
            RegistryServer(s3=s3, auth="bearer", tls_enabled=True) as far, RegistryServer(s3=s3, auth="basic") as near:
        certs = Path(tmp)
        assert far.ca_file is not None
        shutil.copy(far.ca_file, certs / "ca.crt")
        layers = [os.urandom(args.kib << 10) for _ in range(args.layers)]
        raw.push_image(far, "bench/app", "v1", layers=layers)
        for rtt in (int(x) for x in args.rtt_ms.split(",")):
            ours, theirs = [], []
            with LinkShaper("127.0.0.1", far.port, delay=rtt / 2000) as link:
                keychain = ServerKeychain(far, near)
                keychain.by_host[link.host] = Basic(far.username, far.password)
                for i in range(args.rounds):
                    with ocitransport.Client(verify=str(far.ca_file)) as client:
                        started = time.monotonic()
                        report = mirror.copy(f"{link.host}/bench/app:v1", f"{near.host}/ours/r{rtt}-{i}:v1",
                                             client=client, keychain=keychain, referrers=not args.no_referrers)
                        ours.append(time.monotonic() - started)
                    assert report.ok, report.errors
                    if skopeo:
                        theirs.append(_skopeo(f"{link.host}/bench/app:v1", f"{near.host}/skopeo/r{rtt}-{i}:v1",
                                              far, near, certs))
            rows.append((rtt, statistics.median(ours), statistics.median(theirs) if theirs else None))
    print(f"\n{args.layers} layers x {args.kib} KiB, median of {args.rounds}\n")
    print("| RTT | ocitransport | skopeo copy |\n|---|---|---|")
    for rtt, ours_s, theirs_s in rows:
        print(f"| {rtt} ms | {ours_s:.2f} s | {f'{theirs_s:.2f} s' if theirs_s is not None else 'n/a'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
