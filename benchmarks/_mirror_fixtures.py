"""Helpers of ``bench_mirror.py``: throw-away registries, source content, a byte-counting relay, the
peers (skopeo sync, a parallel skopeo copy loop, oras-py), and process accounting (wall time, CPU,
peak RSS of a child, CPU of the registry processes).

Everything listens on 127.0.0.1 and lives under one temporary directory.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Self

from ocitransport.client import Client
from ocitransport.mirror._demo import LocalRegistry, _push_blob, _push_image, _push_manifest
from ocitransport.mirror.manifests import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST

MiB = 1 << 20
ACCEPT = f"{OCI_MANIFEST}, {OCI_INDEX}, {DOCKER_MANIFEST}, application/vnd.docker.distribution.manifest.list.v2+json"
_TICK = os.sysconf("SC_CLK_TCK")
GNU_TIME = "/usr/bin/time"


# -- process accounting --------------------------------------------------------------------------

def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process (``/proc/<pid>/stat``), 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def registry_cpu(registries: Sequence[LocalRegistry]) -> float:
    return sum(proc_cpu(r.process.pid) for r in registries if r.process is not None)


def load() -> str:
    """``uptime``'s load averages."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


@dataclass
class Run:
    """One timed run: wall seconds, client CPU seconds, the registries' CPU seconds, the client's peak
    RSS (bytes; 0 when not measured), bytes sent to the destination (0 when not counted), notes."""

    wall: float
    cpu: float = 0.0
    registry_cpu: float = 0.0
    max_rss: int = 0
    bytes_up: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def run_child(cmd: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 900.0,
              capture: bool = False) -> tuple[float, float, int, str]:
    """Run ``cmd``; ``(wall, cpu, max_rss_bytes, stdout)`` of that child alone (``os.wait4``).

    The peak RSS comes from GNU time when installed: a child forked straight from this (large)
    process inherits its resident pages until ``exec``, and the kernel keeps that high-water mark."""
    rss_file = None
    if os.access(GNU_TIME, os.X_OK):
        fd, rss_file = tempfile.mkstemp(prefix="rss-", suffix=".txt")
        os.close(fd)
        cmd = [GNU_TIME, "-f", "%M", "-o", rss_file, *cmd]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE if capture else subprocess.DEVNULL, stderr=subprocess.PIPE)
    out: list[bytes] = []
    err: list[bytes] = []
    readers = []
    for stream, sink in ((proc.stdout, out), (proc.stderr, err)):
        if stream is not None:
            t = threading.Thread(target=lambda s=stream, k=sink: k.append(s.read()), daemon=True)
            t.start()
            readers.append(t)
    deadline = start + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.002)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    for t in readers:
        t.join(5)
    max_rss = usage.ru_maxrss * 1024
    if rss_file is not None:
        text = Path(rss_file).read_text().strip().splitlines()
        os.unlink(rss_file)
        if text and text[-1].strip().isdigit():
            max_rss = int(text[-1]) * 1024
    if proc.returncode != 0:
        tail = b"".join(err).decode(errors="replace")[-800:]
        raise RuntimeError(f"{' '.join(cmd[:4])}... exited {proc.returncode}: {tail}")
    return wall, usage.ru_utime + usage.ru_stime, max_rss, b"".join(out).decode()


# -- registries ----------------------------------------------------------------------------------

class Fleet:
    """Registries started on demand under ``workdir``; a destination per run keeps runs independent
    (nothing a tool pushed before can be mounted or skipped by the next one)."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.live: list[LocalRegistry] = []
        self._n = 0

    def start(self, name: str) -> LocalRegistry:
        self._n += 1
        registry = LocalRegistry(self.binary, self.workdir, f"{name}-{self._n}").start()
        self.live.append(registry)
        return registry

    def drop(self, registry: LocalRegistry) -> None:
        registry.stop()
        if registry in self.live:
            self.live.remove(registry)
        shutil.rmtree(registry.dir, ignore_errors=True)

    @contextmanager
    def destination(self, name: str) -> Iterator[LocalRegistry]:
        registry = self.start(name)
        try:
            yield registry
        finally:
            self.drop(registry)

    def close(self) -> None:
        for registry in reversed(self.live):
            registry.stop()
        self.live.clear()


# -- source content ------------------------------------------------------------------------------

def push_images(host: str, repo: str, images: int, layers: int, size: int) -> list[str]:
    """``images`` single-platform OCI images of ``layers`` random layers of ``size`` bytes; the tags."""
    tags = [f"t{i:04d}" for i in range(images)]
    with Client() as client:
        def one(tag: str) -> None:
            _push_image(client, host, repo, tag, [os.urandom(size) for _ in range(layers)], "amd64")
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(one, tags))
    return tags


def push_shared_base(host: str, repos: Sequence[str], base_size: int, own_size: int) -> None:
    """Each repository gets ``:latest`` = the one shared base layer + a small layer of its own."""
    base = os.urandom(base_size)
    with Client() as client:
        for repo in repos:
            _push_image(client, host, repo, "latest", [base, os.urandom(own_size)], "amd64")


def push_big(host: str, repo: str, tag: str, size: int, *, piece: int = 64 * MiB, seed: int = 1) -> str:
    """An image with one ``size``-byte pseudo-random layer, pushed in ``PATCH`` pieces (the benchmark
    never holds more than one piece); the manifest digest."""
    rng = random.Random(seed)
    hasher = hashlib.sha256()
    base = f"http://{host}/v2/{repo}/blobs/"
    with Client() as client:
        started = client.post(base + "uploads/", body=b"")
        assert started.status == 202, started.status
        location = started.headers["Location"]
        sent = 0
        while sent < size:
            n = min(piece, size - sent)
            data = rng.randbytes(n)
            hasher.update(data)
            url = location if location.startswith("http") else f"http://{host}{location}"
            r = client.request("PATCH", url, body=data, headers={
                "Content-Type": "application/octet-stream", "Content-Range": f"{sent}-{sent + n - 1}"})
            assert r.status == 202, (r.status, r.content[:200])
            location = r.headers["Location"]
            sent += n
        digest = "sha256:" + hasher.hexdigest()
        url = location if location.startswith("http") else f"http://{host}{location}"
        sep = "&" if "?" in url else "?"
        done = client.put(f"{url}{sep}digest={digest}", body=b"")
        assert done.status == 201, (done.status, done.content[:200])
        cdesc = _push_blob(client, host, repo, json.dumps(
            {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [digest]}}).encode())
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cdesc},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest,
                                "size": size}]}
        return str(_push_manifest(client, host, repo, tag, manifest, OCI_MANIFEST)["digest"])


def digests(host: str, repo: str, tags: Sequence[str]) -> dict[str, str | None]:
    """``tag -> Docker-Content-Digest`` (``None`` when missing) at ``host/repo``."""
    with Client() as client:
        def one(tag: str) -> str | None:
            r = client.head(f"http://{host}/v2/{repo}/manifests/{tag}", headers={"Accept": ACCEPT})
            return r.headers.get("Docker-Content-Digest") if r.status == 200 else None
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            return dict(zip(tags, pool.map(one, tags)))


# -- a relay that counts what the client sends ---------------------------------------------------

class ByteCounter:
    """A plain TCP relay on 127.0.0.1 in front of ``upstream``: every byte a client sends to the
    registry (request heads and bodies) is counted in ``bytes_up``. It does not parse HTTP, so it adds
    little latency (``TCP_NODELAY``, 1 MiB reads) and counts exactly what went over the wire."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.bytes_up = 0
        self.bytes_down = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(256)
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self.host = f"127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self.connections += 1
                self._sockets += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket, up: bool) -> None:
        buf = bytearray(MiB)
        view = memoryview(buf)
        try:
            while True:
                n = a.recv_into(buf)
                if not n:
                    break
                b.sendall(view[:n])
                with self._lock:
                    if up:
                        self.bytes_up += n
                    else:
                        self.bytes_down += n
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            try:
                s.close()
            except OSError:
                pass


# -- peers ---------------------------------------------------------------------------------------

def skopeo_env(workdir: Path) -> dict[str, str]:
    return {**os.environ, "XDG_RUNTIME_DIR": str(workdir), "HOME": str(workdir)}


def skopeo_sync_docker(src_host: str, repo: str, dst_host: str, dst_prefix: str, workdir: Path) -> Run:
    """``skopeo sync --src docker --dest docker`` of every tag of ``src_host/repo`` (to
    ``dst_host/dst_prefix/<last component of repo>``)."""
    cmd = ["skopeo", "sync", "--src", "docker", "--dest", "docker", "--src-tls-verify=false",
           "--dest-tls-verify=false", "--preserve-digests", f"{src_host}/{repo}", f"{dst_host}/{dst_prefix}"]
    wall, cpu, rss, _ = run_child(cmd, env=skopeo_env(workdir))
    return Run(wall, cpu, max_rss=rss)


def skopeo_sync_yaml(src_host: str, repos: Sequence[str], dst_host: str, dst_prefix: str, workdir: Path) -> Run:
    """``skopeo sync --src yaml``: every tag of each of ``repos`` in one invocation (to
    ``dst_host/dst_prefix/<repo>``)."""
    config = workdir / f"skopeo-sync-{time.monotonic_ns()}.yaml"
    config.write_text(json.dumps({src_host: {"tls-verify": False, "images": {r: [] for r in repos}}}))
    cmd = ["skopeo", "sync", "--src", "yaml", "--dest", "docker", "--dest-tls-verify=false",
           "--preserve-digests", str(config), f"{dst_host}/{dst_prefix}"]
    try:
        wall, cpu, rss, _ = run_child(cmd, env=skopeo_env(workdir))
    finally:
        config.unlink()
    return Run(wall, cpu, max_rss=rss)


def skopeo_copy_loop(pairs: Sequence[tuple[str, str]], workdir: Path, parallel: int = 8) -> Run:
    """``xargs -P parallel`` running one ``skopeo copy`` per ``(src, dst)`` reference pair."""
    lines = "".join(f"docker://{s}\ndocker://{d}\n" for s, d in pairs)
    listing = workdir / f"skopeo-pairs-{time.monotonic_ns()}.txt"
    listing.write_text(lines)
    cmd = ["xargs", "-a", str(listing), "-P", str(parallel), "-n", "2", "skopeo", "copy", "--quiet",
           "--src-tls-verify=false", "--dest-tls-verify=false", "--preserve-digests"]
    try:
        wall, cpu, rss, _ = run_child(cmd, env=skopeo_env(workdir))
    finally:
        listing.unlink()
    return Run(wall, cpu, max_rss=rss)


def oras_available() -> bool:
    try:
        import oras.provider  # noqa: F401
    except ImportError:
        return False
    return True


def oras_copy(src_host: str, dst_host: str, repo: str, tags: Sequence[str], workdir: Path,
              parallel: int = 8) -> Run:
    """oras-py (``oras.provider.Registry``) copying each tag: raw manifest GET, each blob downloaded to
    a file (``download_blob``) and uploaded (``upload_blob``: HEAD, POST, PUT), then the manifest's
    exact bytes PUT; ``parallel`` images at a time, one Registry per thread."""
    import oras.provider

    local = threading.local()
    scratch = workdir / f"oras-{time.monotonic_ns()}"
    scratch.mkdir()

    def registries() -> tuple[Any, Any]:
        if not hasattr(local, "pair"):
            local.pair = (oras.provider.Registry(src_host, insecure=True),
                          oras.provider.Registry(dst_host, insecure=True))
        return local.pair  # type: ignore[no-any-return]

    def one(tag: str) -> None:
        src, dst = registries()
        r = src.do_request(f"http://{src_host}/v2/{repo}/manifests/{tag}", "GET", headers={"Accept": ACCEPT})
        assert r.status_code == 200, r.status_code
        raw, media_type = r.content, r.headers["Content-Type"]
        manifest = json.loads(raw)
        scontainer = src.get_container(f"{src_host}/{repo}:{tag}")
        dcontainer = dst.get_container(f"{dst_host}/{repo}:{tag}")
        for blob in [manifest["config"], *manifest["layers"]]:
            path = scratch / blob["digest"].replace(":", "-")
            path = path.with_name(f"{path.name}-{threading.get_ident()}")
            src.download_blob(scontainer, blob["digest"], str(path))
            up = dst.upload_blob(str(path), dcontainer, blob)
            assert up.status_code in (200, 201), up.status_code
            path.unlink()
        put = dst.do_request(f"http://{dst_host}/v2/{repo}/manifests/{tag}", "PUT", data=raw,
                             headers={"Content-Type": media_type})
        assert put.status_code == 201, put.status_code

    start = time.perf_counter()
    try:
        with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
            list(pool.map(one, tags))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return Run(time.perf_counter() - start)


def bare_protocol(src_host: str, dst_host: str, repo: str, tags: Sequence[str], parallel: int = 8) -> Run:
    """The least a copy can ask of the registries, as a yardstick rather than a tool: per image GET the
    manifest, per blob GET it (into memory) then POST + PUT it, PUT the manifest; no existence checks,
    no mounts, no digest verification; ``parallel`` images at a time on one Client."""
    def one(client: Client, tag: str) -> None:
        r = client.get(f"http://{src_host}/v2/{repo}/manifests/{tag}", headers={"Accept": ACCEPT})
        assert r.status == 200, r.status
        manifest = json.loads(r.content)
        for blob in [manifest["config"], *manifest["layers"]]:
            data = client.get(f"http://{src_host}/v2/{repo}/blobs/{blob['digest']}").content
            started = client.post(f"http://{dst_host}/v2/{repo}/blobs/uploads/", body=b"")
            location = started.headers["Location"]
            location = location if location.startswith("http") else f"http://{dst_host}{location}"
            sep = "&" if "?" in location else "?"
            done = client.put(f"{location}{sep}digest={blob['digest']}", body=data,
                              headers={"Content-Type": "application/octet-stream"})
            assert done.status == 201, done.status
        put = client.put(f"http://{dst_host}/v2/{repo}/manifests/{tag}", body=r.content,
                         headers={"Content-Type": r.headers["Content-Type"]})
        assert put.status == 201, put.status

    with Client() as client:
        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
            list(pool.map(lambda t: one(client, t), tags))
        return Run(time.perf_counter() - start)


# -- ours ----------------------------------------------------------------------------------------

class RequestLog(Client):
    """A Client that notes ``(method, url)`` of every request the mirror makes through it."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, str]] = []

    async def round_trip_async(self, request: Any) -> Any:
        self.log.append((request.method, request.url))
        return await super().round_trip_async(request)

    def kinds(self, sides: dict[str, str]) -> dict[str, int]:
        """Requests by ``"<side> <METHOD> <kind>"``; ``sides`` maps a host to a side's name."""
        out: dict[str, int] = {}
        for method, url in self.log:
            side = next((name for host, name in sides.items() if f"//{host}/" in url), "?")
            path = url.split("/v2/", 1)[1].split("?")[0] if "/v2/" in url else ""
            if not path:
                kind = "/v2/"
            elif "/blobs/uploads/" in path:
                kind = "blob upload (mount)" if "mount=" in url else "blob upload"
            else:
                kind = next((k for k in ("manifests", "blobs", "tags", "referrers") if f"/{k}/" in path), path)
            key = f"{side} {method} {kind}"
            out[key] = out.get(key, 0) + 1
        return dict(sorted(out.items()))



def cpu_self() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """``(wall, this process's CPU, result)`` of ``fn()``."""
    start, cpu = time.perf_counter(), cpu_self()
    result = fn()
    return time.perf_counter() - start, cpu_self() - cpu, result


def ensure_bytecode() -> None:
    """Compile the package's bytecode as ``pip install`` does, so that CLI runs from a checkout (an editable
    install, perhaps under ``PYTHONDONTWRITEBYTECODE``) do not pay for compiling every module each time."""
    import compileall

    import ocitransport

    compileall.compile_dir(str(Path(ocitransport.__file__).parent), quiet=1)


def python_startup() -> float:
    """Wall seconds of a Python that imports the CLI and exits (what every CLI run pays first); best of 3."""
    best = float("inf")
    for _ in range(3):
        wall, _, _, _ = run_child([sys.executable, "-c", "import ocitransport.cli, ocitransport.mirror"])
        best = min(best, wall)
    return best


class TmpWatch:
    """Polls an (empty) directory while a run goes on: ``seen`` counts every entry that ever appeared."""

    def __init__(self, path: Path, interval: float = 0.005) -> None:
        self.path = path
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, args=(interval,), daemon=True)

    def _poll(self, interval: float) -> None:
        while not self._stop.is_set():
            try:
                self.seen.update(os.listdir(self.path))
            except OSError:
                pass
            self._stop.wait(interval)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)
        self.seen.update(os.listdir(self.path))

