"""A small hostile registry on loopback: a real HTTP/1.1 server that answers the distribution API from
what a test put in it, and says what the test wants it to say (wrong digests in headers, endless tag
pages, missing or wrong blobs, a blob stored under another digest). Every request is recorded.

``HostileRegistry().start()`` (or ``with``); ``host`` is ``127.0.0.1:<port>``. Content:

- :meth:`manifest` / :meth:`image` / :meth:`index`: manifests by tag and digest (extra answer headers
  per manifest, e.g. a forged ``Docker-Content-Digest``);
- :meth:`blob`: blob bytes, optionally served slowly (``trickle``: seconds between 64 KiB pieces);
- ``tag_pages``: a function ``(path_and_query) -> (tags, next_link or None)`` for ``tags/list``, else
  the tags of the manifests put by tag;
- uploads: ``POST`` opens a session, ``PATCH``/``PUT`` take bytes, ``PUT`` answers
  ``Docker-Content-Digest`` (``store_as`` replaces it: a registry that stores a blob under another
  digest), ``DELETE`` cancels. ``uploads_open`` is what is neither finished nor cancelled.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.servers import process

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(data: bytes, media_type: str = OCI_LAYER, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest_of(data), "size": len(data), **extra}


@dataclass
class Blob:
    data: bytes
    trickle: float = 0.0   # seconds between 64 KiB pieces (0: at once)
    length: int | None = None  # Content-Length to declare (None: the true one)


@dataclass
class Manifest:
    raw: bytes
    media_type: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return digest_of(self.raw)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _body(self) -> bytes:
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status: int, headers: dict[str, str] | None = None, body: bytes = b"",
              length: int | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _error(self, status: int, code: str) -> None:
        body = json.dumps({"errors": [{"code": code, "message": code.lower()}]}).encode()
        self._send(status, {"Content-Type": "application/json"}, body)

    def _dispatch(self) -> None:
        registry = self.server.registry
        path, _, query = self.path.partition("?")
        registry.record(self.command, self.path)
        body = self._body() if self.command in ("POST", "PUT", "PATCH") else b""
        if path == "/v2/":
            return self._send(200, {"Docker-Distribution-API-Version": "registry/2.0"})
        parts = path[len("/v2/"):] if path.startswith("/v2/") else ""
        for kind in ("/manifests/", "/blobs/uploads/", "/blobs/", "/tags/list", "/referrers/"):
            repo, sep, ref = parts.partition(kind)
            if sep and repo:
                break
        else:
            return self._error(404, "NAME_UNKNOWN")
        if kind == "/tags/list":
            return self._tags(repo, self.path)
        if kind == "/manifests/":
            if self.command == "PUT":
                registry.manifests[(repo, ref)] = Manifest(body, self.headers.get("Content-Type") or "")
                return self._send(201, {"Docker-Content-Digest": digest_of(body)})
            found = registry.manifests.get((repo, ref))
            if found is None:
                return self._error(404, "MANIFEST_UNKNOWN")
            return self._send(200, {"Content-Type": found.media_type, "Docker-Content-Digest": found.digest,
                                    **found.headers}, found.raw)
        if kind == "/referrers/":
            return self._error(404, "NOT_FOUND")
        if kind == "/blobs/":
            return self._blob(repo, ref)
        return self._upload(repo, ref, dict(urllib.parse.parse_qsl(query)), body)

    def _tags(self, repo: str, target: str) -> None:
        registry = self.server.registry
        if registry.tag_pages is not None:
            tags, link = registry.tag_pages(target)
        else:
            tags, link = sorted({ref for (r, ref) in registry.manifests if r == repo and ":" not in ref}), None
        headers = {"Content-Type": "application/json"}
        if link:
            headers["Link"] = f'<{link}>; rel="next"'
        self._send(200, headers, json.dumps({"name": repo, "tags": tags}).encode())

    def _blob(self, repo: str, digest: str) -> None:
        registry = self.server.registry
        blob = registry.blobs.get(digest)
        if blob is None:
            return self._error(404, "BLOB_UNKNOWN")
        if self.command == "HEAD" or not blob.trickle:
            return self._send(200, {"Content-Type": "application/octet-stream", "Docker-Content-Digest": digest},
                              blob.data, blob.length)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(blob.data) if blob.length is None else blob.length))
        self.end_headers()
        deadline = time.monotonic() + 30
        for start in range(0, len(blob.data), 65536):
            if registry.stopping.is_set() or time.monotonic() > deadline:
                break
            self.wfile.write(blob.data[start:start + 65536])
            self.wfile.flush()
            time.sleep(blob.trickle)

    def _upload(self, repo: str, ref: str, query: dict[str, str], body: bytes) -> None:
        registry = self.server.registry
        if self.command == "POST":
            if "mount" in query and query["mount"] in registry.blobs:
                return self._send(201, {"Docker-Content-Digest": query["mount"]})
            session = uuid.uuid4().hex
            with registry.lock:
                registry.uploads[session] = bytearray()
            return self._send(202, {"Location": f"/v2/{repo}/blobs/uploads/{session}", "Range": "0-0"})
        with registry.lock:
            data = registry.uploads.get(ref)
        if data is None:
            return self._error(404, "BLOB_UPLOAD_UNKNOWN")
        if self.command == "DELETE":
            with registry.lock:
                registry.uploads.pop(ref, None)
                registry.cancelled.append(ref)
            return self._send(204)
        data += body
        if self.command == "PATCH":
            return self._send(202, {"Location": f"/v2/{repo}/blobs/uploads/{ref}", "Range": f"0-{len(data) - 1}"})
        if self.command == "GET":
            return self._send(204, {"Location": f"/v2/{repo}/blobs/uploads/{ref}", "Range": f"0-{len(data) - 1}"})
        if self.command == "PUT":
            with registry.lock:
                registry.uploads.pop(ref, None)
                registry.finished.append(ref)
            stored = registry.store_as or digest_of(bytes(data))
            registry.blobs.setdefault(stored, Blob(bytes(data)))
            return self._send(201, {"Docker-Content-Digest": stored, "Location": f"/v2/{repo}/blobs/{stored}"})
        return self._error(405, "UNSUPPORTED")

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    registry: HostileRegistry

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up (a cancelled transfer) is expected here, not a server error


class HostileRegistry:
    """See the module docstring."""

    def __init__(self) -> None:
        self.manifests: dict[tuple[str, str], Manifest] = {}
        self.blobs: dict[str, Blob] = {}
        self.tag_pages: Callable[[str], tuple[list[str], str | None]] | None = None
        self.store_as = ""
        self.uploads: dict[str, bytearray] = {}
        self.finished: list[str] = []
        self.cancelled: list[str] = []
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- content ----------------------------------------------------------------------------------

    def manifest(self, repo: str, tag: str, value: dict[str, Any] | bytes, media_type: str = OCI_MANIFEST,
                 headers: dict[str, str] | None = None) -> Manifest:
        raw = value if isinstance(value, bytes) else json.dumps(value).encode()
        found = Manifest(raw, media_type, dict(headers or {}))
        if tag:
            self.manifests[(repo, tag)] = found
        self.manifests[(repo, found.digest)] = found
        return found

    def blob(self, data: bytes, **options: Any) -> dict[str, Any]:
        self.blobs[digest_of(data)] = Blob(data, **options)
        return descriptor(data)

    def image(self, repo: str, tag: str, layers: list[dict[str, Any]] | None = None,
              headers: dict[str, str] | None = None) -> Manifest:
        """An image whose config is served; ``layers``: descriptors (served or not, as the test chose)."""
        config = json.dumps({"architecture": "amd64", "os": "linux", "tag": tag}).encode()
        self.blob(config)
        return self.manifest(repo, tag, {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                         "config": descriptor(config, OCI_CONFIG), "layers": layers or []},
                             headers=headers)

    def index(self, repo: str, tag: str, children: list[Manifest]) -> Manifest:
        return self.manifest(repo, tag, {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": c.media_type, "digest": c.digest, "size": len(c.raw)} for c in children]}, OCI_INDEX)

    # -- observations -----------------------------------------------------------------------------

    def record(self, method: str, path: str) -> None:
        with self.lock:
            self.requests.append((method, path))

    def paths(self, method: str | None = None) -> list[str]:
        with self.lock:
            return [p for m, p in self.requests if method is None or m == method]

    @property
    def uploads_open(self) -> list[str]:
        with self.lock:
            return list(self.uploads)

    # -- lifecycle --------------------------------------------------------------------------------

    @property
    def host(self) -> str:
        assert self._server is not None
        return f"{process.LOOPBACK}:{self._server.server_address[1]}"

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def start(self) -> HostileRegistry:
        server = _Server((process.LOOPBACK, 0), _Handler)
        server.registry = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"hostile-registry-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> HostileRegistry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
