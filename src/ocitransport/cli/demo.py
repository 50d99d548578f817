"""``ocitransport demo``: two throw-away registries on loopback, sample images, a mirror, a check.

Needs Debian's ``docker-registry`` (the CNCF distribution registry). Everything listens on 127.0.0.1
and lives in a temporary directory removed at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ..mirror.manifests import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST

REGISTRY_CANDIDATES = ("/usr/bin/docker-registry", "docker-registry", "registry")


def registry_binary() -> str | None:
    """The distribution registry executable, or ``None``."""
    for name in REGISTRY_CANDIDATES:
        found = name if os.path.isabs(name) and os.access(name, os.X_OK) else shutil.which(name)
        if found:
            return found
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalRegistry:
    """One ``docker-registry serve`` on ``127.0.0.1:<free port>`` with storage in a temporary directory."""

    def __init__(self, binary: str, workdir: Path, name: str) -> None:
        self.binary = binary
        self.dir = workdir / name
        self.port = _free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> LocalRegistry:
        self.dir.mkdir(parents=True)
        config = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.dir / "storage")}, "delete": {"enabled": True}},
            "http": {"addr": self.host, "secret": secrets.token_hex(16)},
            "health": {"storagedriver": {"enabled": False}},
        }
        config_file = self.dir / "config.yml"
        config_file.write_text(json.dumps(config))  # JSON is YAML
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        log = open(self.dir / "registry.log", "wb")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen([self.binary, "serve", str(config_file)], stdout=log,
                                        stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        import http.client

        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                conn.request("GET", "/v2/")
                if conn.getresponse().status in (200, 401):
                    conn.close()
                    return self
                conn.close()
            except OSError:
                time.sleep(0.05)
        self.stop()
        tail = (self.dir / "registry.log").read_text(errors="replace")[-500:]
        raise RuntimeError(f"docker-registry on {self.host} did not start: {tail}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _push_blob(client: Any, host: str, repo: str, data: bytes) -> dict[str, Any]:
    digest = _digest(data)
    base = f"http://{host}/v2/{repo}/blobs/"
    if client.head(base + digest).status == 200:
        return {"digest": digest, "size": len(data)}
    started = client.post(base + "uploads/", body=b"")
    assert started.status == 202, started.status
    location = started.headers["Location"]
    if location.startswith("/"):
        location = f"http://{host}{location}"
    sep = "&" if "?" in location else "?"
    done = client.put(f"{location}{sep}digest={digest}", body=data,
                      headers={"Content-Type": "application/octet-stream"})
    assert done.status == 201, (done.status, done.content[:200])
    return {"digest": digest, "size": len(data)}


def _push_manifest(client: Any, host: str, repo: str, ref: str, value: dict[str, Any],
                   media_type: str) -> dict[str, Any]:
    raw = json.dumps(value, indent=2).encode()
    response = client.put(f"http://{host}/v2/{repo}/manifests/{ref}", body=raw,
                          headers={"Content-Type": media_type})
    assert response.status == 201, (response.status, response.content[:300])
    return {"mediaType": media_type, "digest": _digest(raw), "size": len(raw)}


def _push_image(client: Any, host: str, repo: str, ref: str, layers: list[bytes], arch: str,
                media_type: str = OCI_MANIFEST) -> dict[str, Any]:
    oci = media_type == OCI_MANIFEST
    descs = [_push_blob(client, host, repo, layer) for layer in layers]
    config = json.dumps({"architecture": arch, "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in descs]}}).encode()
    cdesc = _push_blob(client, host, repo, config)
    layer_type = "application/vnd.oci.image.layer.v1.tar+gzip" if oci else \
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    manifest = {"schemaVersion": 2, "mediaType": media_type,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json" if oci else
                           "application/vnd.docker.container.image.v1+json", **cdesc},
                "layers": [{"mediaType": layer_type, **d} for d in descs]}
    return _push_manifest(client, host, repo, ref, manifest, media_type)


def generate(client: Any, host: str, images: int) -> list[str]:
    """Sample content in ``host``: repositories ``demo/app`` (multi-arch indexes and single images,
    OCI and Docker types) and ``demo/tools`` sharing a base layer. Returns the repository names."""
    base = os.urandom(2 << 20)  # the shared "base image" layer
    for i in range(images):
        tag = f"v{i + 1}"
        if i % 2 == 0:
            children = []
            for arch in ("amd64", "arm64"):
                desc = _push_image(client, host, "demo/app", f"{tag}-{arch}",
                                   [base, os.urandom(256 << 10)], arch)
                children.append({**desc, "platform": {"os": "linux", "architecture": arch}})
            _push_manifest(client, host, "demo/app", tag, {"schemaVersion": 2, "mediaType": OCI_INDEX,
                                                           "manifests": children}, OCI_INDEX)
        else:
            _push_image(client, host, "demo/app", tag, [base, os.urandom(512 << 10)], "amd64", DOCKER_MANIFEST)
    _push_image(client, host, "demo/tools", "latest", [base, os.urandom(128 << 10)], "amd64")
    return ["demo/app", "demo/tools"]


def run_demo(*, images: int = 4, jobs: int = 8) -> int:
    """The ``demo`` subcommand; returns an exit status."""
    from ..client import Client
    from ..mirror import mirror_repositories
    from .progress import LineProgress, RichProgress

    binary = registry_binary()
    if binary is None:
        print("ocitransport: error: the demo needs the CNCF distribution registry "
              "(`apt-get install docker-registry` on Debian/Ubuntu); docker-registry not found", file=sys.stderr)
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="ocitransport-demo-"))
    started: list[LocalRegistry] = []
    try:
        src = LocalRegistry(binary, workdir, "source").start()
        started.append(src)
        dst = LocalRegistry(binary, workdir, "destination").start()
        started.append(dst)
        print(f"registries: source http://{src.host}  destination http://{dst.host}")
        with Client() as client:
            repos = generate(client, src.host, images)
            print(f"pushed sample images to {', '.join(repos)} (multi-arch indexes, shared base layer)")
            total_ok = True
            progress: LineProgress
            try:
                progress = RichProgress() if sys.stderr.isatty() else LineProgress()
            except ImportError:
                progress = LineProgress()
            try:
                report = mirror_repositories([(f"{src.host}/{repo}", f"{dst.host}/mirror/{repo}") for repo in repos],
                                             client=client, jobs=jobs, progress=progress)
            finally:
                progress.close()
            print(report.summary())
            for ref, message in report.errors:
                print(f"  error: {ref}: {message}")
            total_ok &= report.ok
            accept = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST,
                                "application/vnd.docker.distribution.manifest.list.v2+json"])
            for repo in repos:
                # Verify: every tag's digest equal on both sides.
                tags = client.get(f"http://{src.host}/v2/{repo}/tags/list").json()["tags"]
                for tag in sorted(tags):
                    a = client.head(f"http://{src.host}/v2/{repo}/manifests/{tag}", headers={"Accept": accept})
                    b = client.head(f"http://{dst.host}/v2/mirror/{repo}/manifests/{tag}", headers={"Accept": accept})
                    da, db = a.headers.get("Docker-Content-Digest"), b.headers.get("Docker-Content-Digest")
                    same = da == db and b.status == 200
                    total_ok &= same
                    print(f"  {'ok ' if same else 'BAD'} {repo}:{tag} {da}")
            again = mirror_repositories([(f"{src.host}/{repo}", f"{dst.host}/mirror/{repo}") for repo in repos],
                                        client=client, jobs=jobs)
            print(f"re-run: {again.summary()}")
            # Incremental: a second run finds every image up to date and copies nothing.
            total_ok &= again.ok and again.images_copied == 0 and again.blobs_transferred == 0
        print("demo " + ("passed: digests identical" if total_ok else "FAILED"))
        return 0 if total_ok else 1
    finally:
        for registry in reversed(started):
            registry.stop()
        shutil.rmtree(workdir, ignore_errors=True)
