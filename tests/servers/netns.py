"""SSRF proofs inside a network namespace of the test's own (``unshare -n -m``).

The namespace gets ``lo`` up with extra addresses on it: the cloud metadata address 169.254.169.254, a
public-looking registry address (``PUBLIC``, 11.0.0.1, unroutable from inside), private ones (10.9.0.x)
and, through a bind-mounted ``/etc/hosts`` that only this namespace sees, DNS names that resolve to them
(``metadata.test`` -> 169.254.169.254: DNS rebinding). A canary listens on every address of the
namespace on the ports the attacks use and records each connection; fake registries (raw HTTP/1.1 on
``http.server``) hand out the hostile URL at one place each (blob redirect, upload ``Location``, token
realm, token-server redirect, tag-list and referrers ``Link``, ``/v2/`` ping redirect).

:func:`run` starts ``python -m tests.servers.netns`` under ``unshare``; that child runs every scenario
through the real client path (``Session`` and the transport on one ``Client``; ``python -m ocitransport
copy`` for the CLI ones) and prints one JSON object: scenario -> ``{"type", "error", "canary"}``, where
``canary`` lists the connections the canary saw during that scenario. :func:`unavailable` says why
``unshare`` cannot be used here (then the tests skip).
"""

from __future__ import annotations

import asyncio
import hashlib
import http.server
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from typing import Any

METADATA = "169.254.169.254"
PUBLIC = "11.0.0.1"  # a public address (not private, not reserved) for a registry judged strictly
PRIVATE_REGISTRY = "10.9.0.2"
PRIVATE_STORAGE = "10.9.0.3"
CANARY_PORTS = (80, 9999)
HOSTS = {"metadata.test": METADATA, "loop.test": "127.0.0.1", "registry.test": PRIVATE_REGISTRY,
         "storage.test": PRIVATE_STORAGE, "public.test": PUBLIC}
#: Every spelling of 169.254.169.254 (and of loopback / unspecified addresses) an attacker tried.
SPELLINGS = {
    "decimal": "2852039166",
    "hex": "0xa9fea9fe",
    "two-part": "169.254.43518",
    "octal": "0251.0376.0251.0376",
    "trailing-dot": "169.254.169.254.",
    "mapped-v6": "[::ffff:169.254.169.254]",
    "mapped-v6-hex": "[::ffff:a9fe:a9fe]",
    "loopback-short": "127.1:9999",
    "loopback-decimal": "2130706433:9999",
    "zero": "0:9999",
    "loopback-dot": "127.0.0.1.:9999",
    "dns-metadata": "metadata.test",  # DNS rebinding: a name that resolves to the metadata address
    "dns-loopback": "loop.test:9999",
}
PLACES = ("blob", "upload", "realm", "token-redirect", "tags", "referrers", "ping")
TIMEOUT = 60.0

CONFIG = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
LAYER = b"layer bytes " * 100


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _manifest() -> bytes:
    return json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _digest(CONFIG),
                   "size": len(CONFIG)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": _digest(LAYER),
                    "size": len(LAYER)}]}).encode()


def unavailable() -> str | None:
    """Why a network namespace cannot be made here (``None``: it can)."""
    try:
        done = subprocess.run(["unshare", "-n", "-m", "sh", "-c", "ip link set lo up"], capture_output=True,
                              timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare -n -m is not usable here: {exc}"
    if done.returncode != 0:
        return f"unshare -n -m refused here: {done.stderr.decode(errors='replace').strip()}"
    return None


def run(timeout: float = 300.0, only: str = "") -> dict[str, Any]:
    """Run every scenario (``only``: those whose name contains it) in a fresh namespace."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run(["unshare", "-n", "-m", sys.executable, "-m", "tests.servers.netns", only],
                          cwd=root, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"netns run failed ({done.returncode}):\n{done.stderr[-6000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# ------------------------------------------------------------------------------------------- in the namespace

def _setup() -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    for address in (METADATA, PUBLIC, PRIVATE_REGISTRY, PRIVATE_STORAGE):
        subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", "lo"], check=True)
    fd, hosts = tempfile.mkstemp(prefix="ssrf-hosts-")
    with os.fdopen(fd, "w") as f:
        f.write("127.0.0.1 localhost\n::1 localhost\n")
        f.writelines(f"{ip} {name}\n" for name, ip in HOSTS.items())
    subprocess.run(["mount", "--bind", hosts, "/etc/hosts"], check=True)  # this namespace only (-m)
    os.unlink(hosts)  # the mount holds the file; nothing is left behind in /tmp


class Canary:
    """Listens on every address (IPv4 and IPv6) on ``CANARY_PORTS``; records each connection."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.sockets: list[socket.socket] = []
        for port in CANARY_PORTS:
            for family, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
                s = socket.socket(family, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                s.bind((host, port))
                s.listen(64)
                s.settimeout(0.1)
                self.sockets.append(s)
                threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def _accept(self, s: socket.socket) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = s.accept()
            except (TimeoutError, OSError):
                continue
            local = conn.getsockname()
            with self.lock:
                self.seen.append(f"{local[0]}:{local[1]}")
            conn.close()

    def take(self) -> list[str]:
        time.sleep(0.05)  # a connection in the accept queue is recorded by now
        with self.lock:
            seen, self.seen = self.seen, []
        return seen


class FakeRegistry(http.server.ThreadingHTTPServer):
    """A registry answering the paths a copy uses; ``attack`` (place, target URL) makes it hostile once
    per request at that place. ``requests`` counts what it was asked."""

    daemon_threads = True

    def __init__(self, host: str, port: int, populated: bool = True) -> None:
        super().__init__((host, port), _Handler)
        self.place = ""
        self.target = ""
        self.base = f"http://{host}:{port}"
        self.blobs: dict[str, bytes] = {_digest(CONFIG): CONFIG, _digest(LAYER): LAYER} if populated else {}
        self.manifests: dict[str, bytes] = {"/v2/a/manifests/t": _manifest(),
                                            f"/v2/a/manifests/{_digest(_manifest())}": _manifest()} if populated else {}
        self.uploads: dict[str, bytearray] = {}
        self.requests = 0
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up (refused Location, cancelled transfer): nothing to report

    def attack(self, place: str, target: str) -> None:
        self.place, self.target, self.requests = place, target, 0


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeRegistry

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        srv = self.server
        srv.requests += 1
        path, _, query = self.path.partition("?")
        place, target = srv.place, srv.target
        if path == "/v2/":
            if place == "ping-hops":
                hop = int(query.partition("hop=")[2] or 0)
                return self._send(302, {"Location": f"/v2/?hop={hop + 1}"})
            if place == "token-hops":
                return self._send(401, {"WWW-Authenticate": f'Bearer realm="{srv.base}/token",service="x"'})
            if place == "ping":
                return self._send(302, {"Location": target})
            if place == "realm":
                return self._send(401, {"WWW-Authenticate": f'Bearer realm="{target}",service="x"'})
            if place == "token-redirect":
                return self._send(401, {"WWW-Authenticate": f'Bearer realm="{srv.base}/token",service="x"'})
            return self._send(200, {"Content-Type": "application/json"}, b"{}")
        if path == "/token":
            if place == "token-hops":
                hop = int(query.partition("hop=")[2] or 0)
                return self._send(302, {"Location": f"/token?hop={hop + 1}"})
            if place == "token-redirect":
                return self._send(302, {"Location": target})
            return self._send(200, {"Content-Type": "application/json"}, b'{"token":"t","expires_in":300}')
        parts = path.split("/")
        if len(parts) >= 5 and parts[-2] == "manifests":
            data = srv.manifests.get(path)
            if data is None:
                return self._send(404, {"Content-Type": "application/json"}, b'{"errors":[]}')
            return self._send(200, {"Content-Type": "application/vnd.oci.image.manifest.v1+json",
                                    "Docker-Content-Digest": _digest(data)}, data)
        if len(parts) >= 5 and parts[-2] == "blobs":
            digest = parts[-1]
            if self.command == "GET" and place == "blob":
                return self._send(307, {"Location": target.replace("{digest}", digest)})
            if self.command == "GET" and place in ("hops", "host-hops"):
                hop = int(query.partition("hop=")[2] or 0)
                host = ("public.test" if hop % 2 == 0 else PUBLIC) if place == "host-hops" else ""
                base = f"http://{host}:{self.server.server_address[1]}" if host else ""
                return self._send(302, {"Location": f"{base}{path}?hop={hop + 1}"})
            if self.command == "GET" and place == "long-location":
                return self._send(302, {"Location": "/x?" + "a" * 9000})
            data = srv.blobs.get(digest)
            if data is None:
                return self._send(404, {"Content-Type": "application/json"}, b'{"errors":[]}')
            return self._send(200, {"Content-Type": "application/octet-stream",
                                    "Docker-Content-Digest": digest}, data)
        if path.endswith("/tags/list"):
            headers = {"Content-Type": "application/json"}
            if place == "tags" and "last=" not in query:
                headers["Link"] = f'<{target}>; rel="next"'
            return self._send(200, headers, b'{"name":"a","tags":["t"]}')
        if "/referrers/" in path:
            headers = {"Content-Type": "application/vnd.oci.image.index.v1+json"}
            if place == "referrers":
                headers["Link"] = f'<{target}>; rel="next"'
            return self._send(200, headers, b'{"schemaVersion":2,"mediaType":'
                                            b'"application/vnd.oci.image.index.v1+json","manifests":[]}')
        if path.startswith("/upload/"):
            return self._send(204, {"Location": path, "Range": "0--1"})
        return self._send(404, {"Content-Type": "application/json"}, b'{"errors":[]}')

    def do_POST(self) -> None:
        srv = self.server
        srv.requests += 1
        self._body()
        if self.path.split("?")[0].endswith("/blobs/uploads/"):
            if srv.place == "upload":
                return self._send(202, {"Location": srv.target})
            if srv.place == "long-upload":
                return self._send(202, {"Location": "/upload/x?" + "a" * 9000})
            name = uuid.uuid4().hex
            srv.uploads[name] = bytearray()
            return self._send(202, {"Location": f"/upload/{name}", "Range": "0--1"})
        return self._send(404)

    def do_PATCH(self) -> None:
        srv = self.server
        srv.requests += 1
        name = self.path.split("?")[0].rpartition("/")[2]
        srv.uploads.setdefault(name, bytearray()).extend(self._body())
        return self._send(202, {"Location": f"/upload/{name}", "Range": f"0-{len(srv.uploads[name]) - 1}"})

    def do_PUT(self) -> None:
        srv = self.server
        srv.requests += 1
        path, _, query = self.path.partition("?")
        body = self._body()
        if path.startswith("/upload/"):
            data = bytes(srv.uploads.pop(path.rpartition("/")[2], bytearray())) + body
            digest = query.partition("digest=")[2].split("&")[0].replace("%3A", ":")
            if _digest(data) != digest:  # a cut-off upload (the client gave up on its source)
                return self._send(400, {"Content-Type": "application/json"}, b'{"errors":[]}')
            srv.blobs[digest] = data
            return self._send(201, {"Docker-Content-Digest": digest, "Location": path})
        parts = path.split("/")
        if len(parts) >= 5 and parts[-2] == "manifests":
            srv.manifests[path] = body
            return self._send(201, {"Docker-Content-Digest": _digest(body)})
        return self._send(404)

    def do_DELETE(self) -> None:
        self.server.requests += 1
        self._send(202)


class Storage(http.server.ThreadingHTTPServer):
    """Blob storage on a private address: any GET gets the layer's bytes."""

    daemon_threads = True

    def __init__(self, host: str, port: int) -> None:
        super().__init__((host, port), _StorageHandler)
        self.hits = 0
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()


class _StorageHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Storage

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.hits += 1
        data = CONFIG if self.path.endswith(_digest(CONFIG)) else LAYER
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _target(place: str, spelling: str) -> str:
    path = {"blob": "/latest/meta-data/", "upload": "/upload?x=1", "realm": "/token",
            "token-redirect": "/token", "tags": "/v2/a/tags/list?last=t", "referrers": "/v2/a/referrers/x",
            "ping": "/v2/"}[place]
    return f"http://{spelling}{path}"


async def _scenario(place: str, registry: str, session_options: dict[str, Any]) -> str:
    """Run the client path that meets the hostile URL at ``place``; the outcome as ``Type: message``."""
    from ocitransport import transport
    from ocitransport.authn import Anonymous
    from ocitransport.client import Client
    from ocitransport.messages import Request
    from ocitransport.mirror.session import Session
    from ocitransport.name import Repository

    repo = Repository(f"{registry}/a", insecure=True)
    digest = _digest(LAYER)
    with Client(timeout=_timeout(), proxy="") as client:
        try:
            session = Session(client, retries=0, **session_options)
            if place in ("realm", "token-redirect", "ping"):
                rt = await transport.new_async(repo.registry, Anonymous, client, [repo.scope("pull")])
                response = await rt.round_trip_async(Request("GET", session.url(repo, "tags", "list")))
                return f"ok: {response.status}"
            if place in ("blob", "storage"):
                rt = await session.pull(repo)
                response = await session.open_blob(rt, repo, digest)
                body = await response.aread()
                return f"ok: {response.status} {len(body)}"
            if place == "upload":
                rt = await session.push(repo)
                location = await session.start_upload(rt, repo)
                assert location is not None
                await session.finish_upload(rt, location, digest, len(LAYER), LAYER)
                return "ok"
            if place == "tags":
                rt = await session.pull(repo)
                return f"ok: {await session.list_tags(rt, repo)}"
            if place == "referrers":
                rt = await session.pull(repo)
                return f"ok: {await session.list_referrers(rt, repo, digest)}"
            raise AssertionError(place)
        except Exception as exc:  # noqa: BLE001 - the outcome is reported
            return f"{type(exc).__name__}: {exc}"


def _timeout() -> Any:
    from ocitransport.messages import Timeout

    return Timeout(connect=5.0, total=20.0)


def _cli(args: list[str], *fresh: FakeRegistry) -> dict[str, Any]:
    for registry in fresh:  # a destination without the blobs of the case before
        registry.blobs.clear()
        registry.manifests.clear()
    started = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-m", "ocitransport", *args, "--retries", "0"], capture_output=True,
                              text=True, check=False, timeout=TIMEOUT, env={**os.environ, "NO_PROXY": "*"})
    except subprocess.TimeoutExpired as exc:
        return {"rc": None, "stderr": f"timed out after {exc.timeout} s", "seconds": exc.timeout}
    return {"rc": done.returncode, "stderr": done.stderr, "seconds": round(time.monotonic() - started, 2)}


def main(only: str = "") -> dict[str, Any]:
    _setup()
    canary = Canary()
    public = FakeRegistry(PUBLIC, 5000)
    public_dst = FakeRegistry(PUBLIC, 5001, populated=False)
    private = FakeRegistry(PRIVATE_REGISTRY, 5000)
    storage = Storage(PRIVATE_STORAGE, 9000)
    out: dict[str, Any] = {}

    def record(name: str, outcome: Any, **extra: Any) -> None:
        out[name] = {"outcome": outcome, "canary": canary.take(), **extra}

    for place in PLACES:
        for label, spelling in SPELLINGS.items():
            name = f"{place}/{label}"
            if only and only not in name:
                continue
            public.attack(place, _target(place, spelling))
            record(name, asyncio.run(asyncio.wait_for(_scenario(place, f"{PUBLIC}:5000", {}), TIMEOUT)))
    # Private storage: refused for a public registry, allowed by option or by a private registry.
    storage_url = f"http://{PRIVATE_STORAGE}:9000/blob/{{digest}}"
    cases = [("storage/public-registry", public, f"{PUBLIC}:5000", {}),
             ("storage/public-registry-allowed", public, f"{PUBLIC}:5000",
              {"allow_private_storage": [f"{PUBLIC}:5000"]}),
             ("storage/private-registry", private, f"{PRIVATE_REGISTRY}:5000", {}),
             ("storage/private-registry-by-name", private, "registry.test:5000", {}),
             ("storage/private-registry-link-local", private, f"{PRIVATE_REGISTRY}:5000", {}),
             ("storage/private-registry-loopback", private, f"{PRIVATE_REGISTRY}:5000", {})]
    for name, registry, ref, options in cases:
        if only and only not in name:
            continue
        url = storage_url
        if name.endswith("link-local"):
            url = "http://metadata.test/latest"
        elif name.endswith("loopback"):
            url = "http://loop.test:9999/x"
        registry.attack("blob", url)
        hits = storage.hits
        outcome = asyncio.run(asyncio.wait_for(_scenario("storage", ref, options), TIMEOUT))
        record(name, outcome, storage_hits=storage.hits - hits)
    # The CLI: a copy whose source redirects its blobs, whose destination hands out an upload Location.
    if not only or "cli" in only:
        for label in ("decimal", "dns-metadata", "mapped-v6"):
            public.attack("blob", _target("blob", SPELLINGS[label]))
            public_dst.attack("", "")
            record(f"cli/blob/{label}",
                   _cli(["copy", "--insecure", f"{PUBLIC}:5000/a:t", f"{PUBLIC}:5001/b:t"], public_dst))
            public.attack("", "")
            public_dst.attack("upload", _target("upload", SPELLINGS[label]))
            record(f"cli/upload/{label}",
                   _cli(["copy", "--insecure", f"{PUBLIC}:5000/a:t", f"{PUBLIC}:5001/c:t"], public_dst))
        public_dst.attack("", "")
        public.attack("hops", "")
        record("cli/hops", _cli(["copy", "--insecure", f"{PUBLIC}:5000/a:t", f"{PUBLIC}:5001/d:t"], public_dst),
               requests=public.requests)
        public.attack("long-location", "")
        record("cli/long-location",
               _cli(["copy", "--insecure", f"{PUBLIC}:5000/a:t", f"{PUBLIC}:5001/e:t"], public_dst),
               requests=public.requests)
        public.attack("", "")
        public_dst.attack("long-upload", "")
        record("cli/long-upload",
               _cli(["copy", "--insecure", f"{PUBLIC}:5000/a:t", f"{PUBLIC}:5001/f:t"], public_dst),
               requests=public_dst.requests)
        public_dst.attack("", "")
        public.attack("blob", storage_url)
        record("cli/private-storage-refused", _cli(
            ["copy", "--insecure", f"{PUBLIC}:5000/a:t", f"{PUBLIC}:5001/g:t"]))
        hits = storage.hits
        record("cli/private-storage-flag", _cli(
            ["copy", "--insecure", "--allow-private-storage", f"{PUBLIC}:5000", f"{PUBLIC}:5000/a:t",
             f"{PUBLIC}:5001/h:t"]), storage_hits=storage.hits - hits)
    canary.stop.set()
    for server in (public, public_dst, private, storage):
        server.shutdown()
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1] if len(sys.argv) > 1 else "")))
