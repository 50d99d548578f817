"""A misbehaving HTTP/1.1 server of ours (raw sockets, a thread per connection, keep-alive aware).

What it does is chosen per request by path and query (``N``, ``S``, ... are integers, sizes in bytes):

==================================================  ========================================================
``/bytes?n=N[&chunked=1][&chunk=C][&digest=1]``      N bytes of :func:`pattern` with Content-Length (or
                                                     chunked, C bytes a chunk); ``digest=1`` adds
                                                     ``Docker-Content-Digest``
``/stall?after=N&seconds=S[&length=L][&finish=1]``   headers (Content-Length L, default N+1) and N bytes,
                                                     then a stall of S seconds, then close (or the rest)
``/delay?seconds=S[&n=N]``                           wait S seconds before the status line, then N bytes
                                                     (a large S: a server that reads the request and
                                                     never answers)
``/reset?when=before|headers|mid[&after=N]``         close with a TCP RST (SO_LINGER 0): before any byte,
                                                     after the headers, or after N body bytes
``/truncate?length=L&send=S``                        Content-Length L but only S bytes, then close (FIN)
``/slow?n=N&rate=R``                                 N bytes trickled at about R bytes/s
``/status/CODE[?retry_after=..][&body=..]``           any status; ``error=CODE&message=..`` gives a
``[&error=..][&header=Name:Value]...``               registry-style JSON error body; ``header`` repeats
``/info?codes=100,103``                              these 1xx heads, then 200 ``ok``
``/redirect?to=URL[&code=307]``                      a redirect (default ``/echo``, 302)
``/echo``                                            JSON: method, path, query, headers (pairs),
                                                     body_length, body_sha256, http_version, connection
``/drain``                                           reads any request body; JSON length and sha256
``/headers?n=N&size=S``                              N extra headers ``X-Fault-i`` of S bytes each
``/cookie?name=..&value=..``                         ``Set-Cookie``; the body is the request's Cookie header
``/flood?n=N[&status=CODE][&type=..][&chunked=1]``   status CODE (200) with N bytes of ``{`` (``n=0`` and
                                                     chunked: without end, until the client hangs up or
                                                     ``max_stall`` seconds or 8 GiB), sent as fast as read
==================================================  ========================================================

:meth:`FaultServer.alias` makes a path (say ``/v2/a/tags/list``, which a registry client builds itself)
answer like another endpoint with its query (``/flood?n=0&chunked=1``); the recorded request keeps the
path the client asked for.

Any request takes ``close=1`` (answer with ``Connection: close`` and close) and ``early=1`` (answer before
reading the request body, without ``100 Continue``, then close). A request with ``Expect: 100-continue``
gets ``100 Continue`` before its body is read. HEAD gets the headers of GET without the body.

:class:`SilentServer` is a listener that accepts connections and never reads or sends a byte.

Observations: ``requests`` (a snapshot list of :class:`RecordedRequest`), ``connections`` (accepted so
far), ``active_connections`` and ``peak_connections`` (most open at once). :meth:`FaultServer.script`
makes the next requests to a path answer given statuses (retry tests); :meth:`FaultServer.reset` clears
observations and scripts.
"""

from __future__ import annotations

import hashlib
import json
import socket
import struct
import time
import urllib.parse
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import BinaryIO

from tests.servers import process
from tests.servers.listener import SocketServer

_BLOCK = bytes(range(256)) * 256  # 64 KiB
MAX_HEADER_BYTES = 256 * 1024
MAX_RECORDED_BODY = 1 << 20


def pattern(n: int, offset: int = 0) -> bytes:
    """The ``n`` bytes ``/bytes?n=N`` (and every other body endpoint) sends: ``i % 256`` for byte ``i``."""
    out = bytearray()
    position = offset
    while len(out) < n:
        start = position % len(_BLOCK)
        piece = _BLOCK[start:start + n - len(out)]
        out += piece
        position += len(piece)
    return bytes(out)


def _chunks(n: int, size: int = 65536, offset: int = 0) -> Iterator[bytes]:
    sent = 0
    while sent < n:
        piece = pattern(min(size, n - sent), offset + sent)
        sent += len(piece)
        yield piece


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fault server read it."""

    method: str
    target: str
    path: str
    query: dict[str, list[str]]
    headers: list[tuple[str, str]]
    body_length: int
    body_sha256: str
    body: bytes
    connection: int
    http_version: str
    received_at: float = field(default_factory=time.monotonic)

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first value of header ``name`` (case-insensitive)."""
        lower = name.lower()
        return next((v for k, v in self.headers if k.lower() == lower), default)

    def header_values(self, name: str) -> list[str]:
        lower = name.lower()
        return [v for k, v in self.headers if k.lower() == lower]


@dataclass(frozen=True)
class Step:
    """One scripted answer: a status with optional headers and body."""

    status: int
    headers: Sequence[tuple[str, str]] = ()
    body: bytes = b""


class _BadRequest(Exception):
    pass


class _Closed(Exception):
    pass


class _Request:
    def __init__(self, method: str, target: str, version: str, headers: list[tuple[str, str]]) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        parsed = urllib.parse.urlsplit(target)
        self.path = parsed.path
        self.query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)

    def header(self, name: str) -> str | None:
        lower = name.lower()
        return next((v for k, v in self.headers if k.lower() == lower), None)

    def q(self, name: str, default: str | None = None) -> str | None:
        return self.query.get(name, [default])[0]

    def qi(self, name: str, default: int) -> int:
        value = self.q(name)
        return default if value is None or value == "" else int(value)

    def qf(self, name: str, default: float) -> float:
        value = self.q(name)
        return default if value is None or value == "" else float(value)


class _Connection:
    """One accepted connection, served by its own thread."""

    def __init__(self, server: FaultServer, sock: socket.socket, number: int) -> None:
        self.server = server
        self.sock = sock
        self.number = number
        self.reader: BinaryIO = sock.makefile("rb")

    # -- reading

    def _readline(self) -> bytes:
        line = self.reader.readline(MAX_HEADER_BYTES + 1)
        if len(line) > MAX_HEADER_BYTES:
            raise _BadRequest("header line too long")
        return line

    def read_head(self) -> _Request | None:
        line = self._readline()
        while line in (b"\r\n", b"\n"):  # tolerate stray CRLF between requests (RFC 9112 2.2)
            line = self._readline()
        if not line:
            return None
        try:
            method, target, version = line.decode("latin-1").split()
        except ValueError:
            raise _BadRequest("malformed request line") from None
        headers: list[tuple[str, str]] = []
        total = len(line)
        while True:
            line = self._readline()
            if not line:
                raise _Closed()
            total += len(line)
            if total > MAX_HEADER_BYTES or len(headers) > 2000:
                raise _BadRequest("header section too large")
            if line in (b"\r\n", b"\n"):
                break
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise _BadRequest("malformed header")
            headers.append((name.strip(), value.strip()))
        return _Request(method, target, version, headers)

    def read_body(self, request: _Request) -> tuple[int, str, bytes]:
        """Read (streaming) the request body; its length, sha256 and first MAX_RECORDED_BODY bytes."""
        digest = hashlib.sha256()
        kept = bytearray()
        length = 0

        def take(data: bytes) -> None:
            nonlocal length
            digest.update(data)
            length += len(data)
            if len(kept) < MAX_RECORDED_BODY:
                kept.extend(data[:MAX_RECORDED_BODY - len(kept)])

        if "chunked" in (request.header("Transfer-Encoding") or "").lower():
            while True:
                size_line = self._readline()
                if not size_line:
                    raise _Closed()
                try:
                    size = int(size_line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise _BadRequest("bad chunk size") from None
                if size == 0:
                    while self._readline() not in (b"\r\n", b"\n", b""):  # trailers
                        pass
                    break
                self._read_exact(size, take)
                self._readline()  # CRLF after the chunk
        else:
            value = request.header("Content-Length")
            if value:
                try:
                    self._read_exact(int(value), take)
                except ValueError:
                    raise _BadRequest("bad Content-Length") from None
        return length, digest.hexdigest(), bytes(kept)

    def _read_exact(self, n: int, take: object) -> None:
        remaining = n
        while remaining > 0:
            data = self.reader.read(min(remaining, 1 << 16))
            if not data:
                raise _Closed()
            take(data)  # type: ignore[operator]
            remaining -= len(data)

    # -- writing

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def head(self, status: int, headers: Sequence[tuple[str, str]], reason: str | None = None) -> bytes:
        if reason is None:
            try:
                reason = HTTPStatus(status).phrase
            except ValueError:
                reason = "Unknown"
        lines = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def reset(self) -> None:
        """Close with RST: SO_LINGER on with a zero timeout."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close_gracefully(self) -> None:
        """FIN our side, discard what the client still sends for a moment (so no RST eats our answer)."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
            self.sock.settimeout(0.5)
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline and self.sock.recv(65536):
                pass
        except OSError:
            pass


class FaultServer(SocketServer):
    """The fault server; ``with FaultServer() as server: server.url`` or ``start()`` / ``stop()``."""

    name = "faults"

    def __init__(self, host: str = process.LOOPBACK, idle_timeout: float = 30.0,
                 max_stall: float = 60.0) -> None:
        super().__init__(host, idle_timeout)
        self.max_stall = max_stall
        self._requests: list[RecordedRequest] = []
        self._scripts: dict[str | None, deque[Step | None]] = {}
        self._aliases: dict[str, str] = {}
        self.connections = 0
        self.active_connections = 0
        self.peak_connections = 0

    # ------------------------------------------------------------------ public API

    @property
    def host(self) -> str:
        return f"[{self.bind_host}]:{self.port}" if ":" in self.bind_host else f"{self.bind_host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def url_for(self, path_and_query: str) -> str:
        """``url`` + ``path_and_query`` (which starts with ``/``)."""
        return self.url + path_and_query

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request read so far, in order."""
        with self._lock:
            return list(self._requests)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path]

    def script(self, steps: Sequence[int | Step | None], path: str | None = None) -> None:
        """The next ``len(steps)`` requests to ``path`` (any path when ``None``) answer these steps in
        order: an ``int`` status (empty body), a :class:`Step`, or ``None`` (the path's usual answer)."""
        with self._lock:
            queue = self._scripts.setdefault(path, deque())
            queue.extend(Step(s) if isinstance(s, int) else s for s in steps)

    def alias(self, path: str, target: str) -> None:
        """Requests to ``path`` are answered as if they were to ``target`` (an endpoint path with its
        query, e.g. ``/flood?n=0&chunked=1``); the request's own query is ignored."""
        with self._lock:
            self._aliases[path] = target

    def reset(self) -> None:
        """Forget recorded requests, counters, scripts and aliases (open connections stay open)."""
        with self._lock:
            self._requests.clear()
            self._scripts.clear()
            self._aliases.clear()
            self.connections = 0
            self.peak_connections = self.active_connections

    # ------------------------------------------------------------------ serving

    def _admit(self, sock: socket.socket) -> int | None:
        with self._lock:
            self.connections += 1
            self.active_connections += 1
            self.peak_connections = max(self.peak_connections, self.active_connections)
            return self.connections

    def _serve(self, sock: socket.socket, number: int) -> None:
        connection = _Connection(self, sock, number)
        try:
            for _ in range(1_000_000):  # bounded: at most this many requests on one connection
                if self._stopping.is_set():
                    break
                try:
                    request = connection.read_head()
                except _BadRequest as error:
                    connection.send(connection.head(400, [("Content-Length", "0"), ("Connection", "close")],
                                                    str(error) or None))
                    break
                if request is None:
                    break
                if not self._handle(connection, request):
                    break
        except (OSError, _Closed, ValueError):
            pass
        finally:
            try:
                connection.reader.close()
            except OSError:
                pass
            with self._lock:
                self.active_connections -= 1

    def _next_step(self, path: str) -> tuple[bool, Step | None]:
        with self._lock:
            for key in (path, None):
                queue = self._scripts.get(key)
                if queue:
                    return True, queue.popleft()
        return False, None

    def _handle(self, conn: _Connection, request: _Request) -> bool:
        """Answer one request; ``False`` when the connection must not be reused."""
        early = request.q("early") == "1"
        if early:
            length, sha, kept = 0, hashlib.sha256().hexdigest(), b""
        else:
            if (request.header("Expect") or "").lower() == "100-continue":
                conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            length, sha, kept = conn.read_body(request)
        record = RecordedRequest(request.method, request.target, request.path, request.query,
                                 list(request.headers), length, sha, kept, conn.number, request.version)
        with self._lock:
            self._requests.append(record)
        client_close = (request.header("Connection") or "").lower() == "close" or request.version == "HTTP/1.0"
        close = client_close or early or request.q("close") == "1"
        scripted, step = self._next_step(request.path)
        if scripted and step is not None:
            return self._respond(conn, request, step.status, list(step.headers), step.body, close)
        with self._lock:
            target = self._aliases.get(request.path)
        if target is not None:
            request = _Request(request.method, target, request.version, request.headers)
        return _Handlers(self, conn, request, record, close).dispatch()

    def _respond(self, conn: _Connection, request: _Request, status: int, headers: list[tuple[str, str]],
                 body: bytes, close: bool) -> bool:
        names = {k.lower() for k, _ in headers}
        if status not in (204, 304) and status >= 200 and "content-length" not in names:
            headers.append(("Content-Length", str(len(body))))
        if close:
            headers.append(("Connection", "close"))
        conn.send(conn.head(status, headers) + (b"" if request.method == "HEAD" or status in (204, 304)
                                                else body))
        if close:
            conn.close_gracefully()
        return not close

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``min(seconds, max_stall)``; ``False`` if the server is stopping."""
        return not self._stopping.wait(min(max(seconds, 0.0), self.max_stall))


class _Handlers:
    """The behaviour of each path for one request."""

    def __init__(self, server: FaultServer, conn: _Connection, request: _Request, record: RecordedRequest,
                 close: bool) -> None:
        self.server = server
        self.conn = conn
        self.request = request
        self.record = record
        self.close = close

    def dispatch(self) -> bool:
        path = self.request.path
        if path.startswith("/status/"):
            return self.status()
        name = path.strip("/").replace("-", "_")
        handler = getattr(self, f"do_{name}", None) if name.isidentifier() else None
        if handler is None:
            return self.respond(404, [("Content-Type", "application/json")],
                                _error_body("NOT_FOUND", f"no fault endpoint {path}"))
        return bool(handler())

    def respond(self, status: int, headers: list[tuple[str, str]], body: bytes = b"") -> bool:
        return self.server._respond(self.conn, self.request, status, headers, body, self.close)

    def _json(self, value: object, status: int = 200) -> bool:
        return self.respond(status, [("Content-Type", "application/json")], json.dumps(value).encode())

    def _is_head(self) -> bool:
        return self.request.method == "HEAD"

    # -- endpoints

    def do_bytes(self) -> bool:
        n = self.request.qi("n", 0)
        chunk = max(1, self.request.qi("chunk", 65536))
        headers = [("Content-Type", self.request.q("type", "application/octet-stream") or "")]
        if self.request.q("digest") == "1":
            digest = hashlib.sha256()
            for piece in _chunks(n):
                digest.update(piece)
            headers.append(("Docker-Content-Digest", f"sha256:{digest.hexdigest()}"))
        if self.request.q("chunked") == "1":
            headers.append(("Transfer-Encoding", "chunked"))
            if self.close:
                headers.append(("Connection", "close"))
            self.conn.send(self.conn.head(200, headers))
            if not self._is_head():
                for piece in _chunks(n, chunk):
                    self.conn.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
                self.conn.send(b"0\r\n\r\n")
        else:
            headers.append(("Content-Length", str(n)))
            if self.close:
                headers.append(("Connection", "close"))
            self.conn.send(self.conn.head(200, headers))
            if not self._is_head():
                for piece in _chunks(n, chunk):
                    self.conn.send(piece)
        if self.close:
            self.conn.close_gracefully()
        return not self.close

    def do_stall(self) -> bool:
        after = self.request.qi("after", 0)
        length = self.request.qi("length", after + 1)
        self.conn.send(self.conn.head(200, [("Content-Type", "application/octet-stream"),
                                            ("Content-Length", str(length))]) + pattern(after))
        if not self.server.wait(self.request.qf("seconds", 10.0)):
            return False
        if self.request.q("finish") == "1":
            self.conn.send(pattern(length - after, after))
            return not self.close
        self.conn.close_gracefully()
        return False

    def do_delay(self) -> bool:
        if not self.server.wait(self.request.qf("seconds", 1.0)):
            return False
        return self.respond(200, [("Content-Type", "application/octet-stream")],
                            pattern(self.request.qi("n", 2)))

    def do_reset(self) -> bool:
        when = self.request.q("when", "before")
        if when in ("headers", "mid"):
            after = self.request.qi("after", 0) if when == "mid" else 0
            length = self.request.qi("length", after + 1_000_000)
            self.conn.send(self.conn.head(200, [("Content-Type", "application/octet-stream"),
                                                ("Content-Length", str(length))]) + pattern(after))
            time.sleep(0.05)  # let the client read what was sent before the RST discards it
        self.conn.reset()
        return False

    def do_truncate(self) -> bool:
        length = self.request.qi("length", 100)
        send = self.request.qi("send", length // 2)
        self.conn.send(self.conn.head(200, [("Content-Type", "application/octet-stream"),
                                            ("Content-Length", str(length))]) + pattern(send))
        self.conn.close_gracefully()
        return False

    def do_slow(self) -> bool:
        n = self.request.qi("n", 100)
        rate = max(1, self.request.qi("rate", 1000))
        tick = 0.05
        step = max(1, int(rate * tick))
        headers = [("Content-Type", "application/octet-stream"), ("Content-Length", str(n))]
        if self.close:
            headers.append(("Connection", "close"))
        self.conn.send(self.conn.head(200, headers))
        sent = 0
        deadline = time.monotonic() + self.server.max_stall
        while sent < n and not self._is_head():
            piece = pattern(min(step, n - sent), sent)
            self.conn.send(piece)
            sent += len(piece)
            if sent < n and (time.monotonic() > deadline or not self.server.wait(tick)):
                return False
        if self.close:
            self.conn.close_gracefully()
        return not self.close

    def status(self) -> bool:
        try:
            code = int(self.request.path.rsplit("/", 1)[1])
        except ValueError:
            return self.respond(400, [], b"bad status code")
        headers: list[tuple[str, str]] = []
        body = (self.request.q("body") or "").encode()
        if self.request.q("error"):
            headers.append(("Content-Type", "application/json"))
            body = _error_body(self.request.q("error") or "", self.request.q("message") or "")
        elif self.request.q("type"):
            headers.append(("Content-Type", self.request.q("type") or ""))
        if self.request.q("retry_after") is not None:
            headers.append(("Retry-After", self.request.q("retry_after") or ""))
        for value in self.request.query.get("header", []):
            name, _, val = value.partition(":")
            headers.append((name.strip(), val.strip()))
        return self.respond(code, headers, body)

    def do_info(self) -> bool:
        codes = [int(c) for c in (self.request.q("codes") or "100").split(",") if c.strip()]
        for code in codes:
            extra = [("Link", "</style.css>; rel=preload")] if code == 103 else []
            self.conn.send(self.conn.head(code, extra))
        return self.respond(200, [("Content-Type", "text/plain")], b"ok")

    def do_redirect(self) -> bool:
        code = self.request.qi("code", 302)
        return self.respond(code, [("Location", self.request.q("to") or "/echo")])

    def do_echo(self) -> bool:
        r = self.record
        return self._json({
            "method": r.method, "path": r.path, "target": r.target, "query": r.query,
            "headers": [list(pair) for pair in r.headers], "body_length": r.body_length,
            "body_sha256": r.body_sha256, "http_version": r.http_version, "connection": r.connection,
        })

    def do_drain(self) -> bool:
        return self._json({"length": self.record.body_length, "sha256": self.record.body_sha256})

    def do_headers(self) -> bool:
        n = self.request.qi("n", 10)
        size = self.request.qi("size", 16)
        headers = [(f"X-Fault-{i}", "h" * size) for i in range(n)]
        return self.respond(200, headers, b"ok")

    def do_cookie(self) -> bool:
        name = self.request.q("name", "session")
        value = self.request.q("value", "s3cr3t")
        attributes = self.request.q("attributes", "Path=/; HttpOnly")
        return self.respond(200, [("Set-Cookie", f"{name}={value}; {attributes}"), ("Content-Type", "text/plain")],
                            (self.request.header("Cookie") or "").encode())

    def do_flood(self) -> bool:
        n = self.request.qi("n", 0)
        status = self.request.qi("status", 200)
        chunked = self.request.q("chunked") == "1"
        headers = [("Content-Type", self.request.q("type", "application/json") or "")]
        headers.append(("Transfer-Encoding", "chunked") if chunked else ("Content-Length", str(n)))
        self.conn.send(self.conn.head(status, headers))
        if self._is_head():
            return not self.close
        piece = b"{" * 65536
        limit = n if n > 0 else 8 << 30
        deadline = time.monotonic() + self.server.max_stall
        sent = 0
        while sent < limit:  # bounded by size and time; a client that hangs up ends it (OSError)
            if time.monotonic() > deadline or self.server._stopping.is_set():
                return False
            data = piece[:limit - sent]
            self.conn.send(b"%x\r\n" % len(data) + data + b"\r\n" if chunked else data)
            sent += len(data)
        if chunked:
            self.conn.send(b"0\r\n\r\n")
        return not self.close

    def do_close(self) -> bool:
        self.close = True
        return self.respond(200, [("Content-Type", "text/plain")], b"ok")


class SilentServer(SocketServer):
    """Accepts every connection and never reads or sends a byte: a peer that is up and says nothing (a
    TLS client waits for the handshake, a plain-HTTP client for the answer). Each connection is held
    until the server stops or ``max_hold`` seconds pass. ``connections`` counts those accepted."""

    name = "silent"

    def __init__(self, host: str = process.LOOPBACK, max_hold: float = 60.0) -> None:
        super().__init__(host, idle_timeout=max_hold)
        self.max_hold = max_hold
        self.connections = 0

    @property
    def host(self) -> str:
        return f"{self.bind_host}:{self.port}"

    def _admit(self, sock: socket.socket) -> int | None:
        with self._lock:
            self.connections += 1
            return self.connections

    def _serve(self, sock: socket.socket, number: int) -> None:
        self._stopping.wait(self.max_hold)


def _error_body(code: str, message: str) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": message, "detail": None}]}).encode()


def main() -> int:
    """Run a fault server in the foreground (``python -m tests.servers.faults``)."""
    stop = process.stop_on_signals()
    with FaultServer() as server:
        if not stop.is_set():
            print(f"fault server: {server.url}  (Ctrl-C to stop)", flush=True)
            process.serve_until(stop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
