"""A fault-injecting HTTP/1.1 proxy on loopback in front of a real upstream (usually a :class:`RegistryServer`).

The proxy parses request and response heads and their framing (``Content-Length``, chunked, read until
close) so it knows where each request and response starts and ends on a keep-alive connection, and
forwards everything else byte for byte. Each client connection gets its own upstream connection.

Faults come from per-request probabilities drawn from a seeded RNG (:meth:`FaultProxy.set_rates`, applied
to the requests :meth:`FaultProxy.match` selects) or from scripted one-shot faults (``cut_request_body``,
``cut_response_body``, ``lose_response``, ``answer_status``, ``hold_request``), which take precedence. Fault kinds:

=================  =========================================================================================
``refuse``         drawn per *connection* at accept time (no request is read yet, ``match`` does not
                   apply): the connection is reset at once
``reset_before``   the request head is read, nothing reaches upstream, the connection is reset
``reset_during``   the request is forwarded; the response head and half its body reach the client, then
                   a reset
``reset_after``    the request is forwarded and fully answered upstream (the registry did the work), but
                   the client gets a reset instead of the answer
``stall``          response head and half the body, then nothing for ``stall_seconds``, then a close
``trickle``        the whole response, its body at ``trickle_rate`` bytes/s
``truncate``       the response head (true length) and half the body, then a clean close (FIN)
``wrong_length``   the response declares fewer body bytes than the registry sent (one more when the body
                   is empty) and the connection closes after them: the client reads a short body as
                   complete (or waits for a byte that never comes)
``status_500``     answered by the proxy with that status and a registry-style JSON error body, the
``status_502``     request never reaching upstream; with ``burst > 1`` the next ``burst - 1`` matching
``status_503``     requests get the same status
``status_429``     like the statuses above, with ``Retry-After: <retry_after seconds>``
``status_429_date`` the same with ``Retry-After`` as an HTTP date ``retry_after`` seconds ahead
=================  =========================================================================================

Observations: ``stats`` (counters) and ``records`` (one :class:`ProxyRecord` per request, which unpacks as
``(method, path, status, request_body_bytes_forwarded)`` and also carries ``received_at`` / ``answered_at``
(``time.monotonic()``), ``fault`` and ``connection``).
"""

from __future__ import annotations

import json
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import BinaryIO, NamedTuple

from tests.servers import process
from tests.servers.listener import SocketServer

#: Every fault kind ``set_rates`` accepts.
FAULT_KINDS = (
    "refuse", "reset_before", "reset_during", "reset_after", "stall", "trickle", "truncate", "wrong_length",
    "status_500", "status_502", "status_503", "status_429", "status_429_date",
)
_STATUS_KINDS = {"status_500": 500, "status_502": 502, "status_503": 503, "status_429": 429,
                 "status_429_date": 429}
_ERROR_CODES = {429: "TOOMANYREQUESTS", 500: "UNKNOWN", 502: "UNAVAILABLE", 503: "UNAVAILABLE"}
MAX_HEAD_BYTES = 256 * 1024
_COPY = 1 << 16


class _RecordFields(NamedTuple):
    method: str
    path: str
    status: int
    request_body_bytes: int


class ProxyRecord(_RecordFields):
    """One request as the proxy saw it: ``(method, path, status, request_body_bytes)`` where ``status`` is
    what the client was sent (0 when it got no status line) and ``request_body_bytes`` what went upstream;
    attributes ``received_at`` / ``answered_at`` (monotonic clock; ``answered_at`` is 0 when unanswered),
    ``fault`` (the kind injected, ``""`` for none) and ``connection`` (1-based number)."""

    received_at: float
    answered_at: float
    fault: str
    connection: int


@dataclass
class _Script:
    kind: str  # "cut_request", "cut_response", "status", "reset_after", "hold"
    method: str | None
    path_contains: str
    times: int
    after: int = 0
    status: int = 0
    retry_after: str | None = None
    seconds: float = 0.0
    body: bytes | None = None  # "status": this body instead of the generic registry-style error

    def matches(self, method: str, path: str, body_length: int | None = None) -> bool:
        if self.kind == "cut_request" and body_length is not None and body_length <= self.after:
            return False  # nothing to cut: leave the script for a request with a longer body
        return (self.method is None or self.method.upper() == method) and self.path_contains in path


class _Dropped(Exception):
    """A peer closed its connection (or the proxy cut it): stop serving this connection."""


class _Head:
    """A parsed request or response head; ``raw`` re-serialises it with the current headers."""

    def __init__(self, start_line: str, headers: list[tuple[str, str]]) -> None:
        self.start_line = start_line
        self.headers = headers

    def get(self, name: str) -> str | None:
        lower = name.lower()
        return next((v for k, v in self.headers if k.lower() == lower), None)

    def remove(self, name: str) -> None:
        lower = name.lower()
        self.headers = [(k, v) for k, v in self.headers if k.lower() != lower]

    def set(self, name: str, value: str) -> None:
        self.remove(name)
        self.headers.append((name, value))

    @property
    def chunked(self) -> bool:
        return "chunked" in (self.get("Transfer-Encoding") or "").lower()

    @property
    def content_length(self) -> int | None:
        value = self.get("Content-Length")
        return int(value) if value is not None and value.strip().isdigit() else None

    @property
    def wants_close(self) -> bool:
        return "close" in (self.get("Connection") or "").lower()

    def raw(self) -> bytes:
        lines = [self.start_line] + [f"{k}: {v}" for k, v in self.headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _read_head(reader: BinaryIO) -> _Head | None:
    """Read one head; ``None`` on a clean end of stream before any byte."""
    line = reader.readline(MAX_HEAD_BYTES)
    while line in (b"\r\n", b"\n"):
        line = reader.readline(MAX_HEAD_BYTES)
    if not line:
        return None
    total = len(line)
    headers: list[tuple[str, str]] = []
    while True:
        header = reader.readline(MAX_HEAD_BYTES)
        if not header:
            raise _Dropped()
        total += len(header)
        if total > MAX_HEAD_BYTES:
            raise _Dropped()
        if header in (b"\r\n", b"\n"):
            break
        name, _, value = header.decode("latin-1").partition(":")
        headers.append((name.strip(), value.strip()))
    return _Head(line.decode("latin-1").rstrip("\r\n"), headers)


def _relay_body(reader: BinaryIO, head: _Head, emit: Callable[[bytes, int], bool], *,
                until_close: bool = False) -> None:
    """Read the body framed by ``head`` from ``reader``, calling ``emit(raw, payload_bytes)`` per piece.

    ``raw`` is what goes on the wire (chunk framing included); ``emit`` returns ``False`` to stop early.
    ``until_close``: no Content-Length and not chunked means the body runs to the end of the stream.
    """
    if head.chunked:
        while True:
            size_line = reader.readline(4096)
            if not size_line:
                raise _Dropped()
            try:
                size = int(size_line.split(b";")[0].strip(), 16)
            except ValueError:
                raise _Dropped() from None
            if size == 0:
                trailer = size_line
                while True:
                    line = reader.readline(MAX_HEAD_BYTES)
                    if not line:
                        raise _Dropped()
                    trailer += line
                    if line in (b"\r\n", b"\n"):
                        break
                emit(trailer, 0)
                return
            if not emit(size_line, 0) or not _relay_exact(reader, size, emit):
                return
            crlf = reader.readline(8)
            if not emit(crlf, 0):
                return
    length = head.content_length
    if length is None:
        if not until_close:
            return
        while True:
            data = reader.read1(_COPY) if hasattr(reader, "read1") else reader.read(_COPY)
            if not data:
                return
            if not emit(data, len(data)):
                return
    _relay_exact(reader, length, emit)


def _relay_exact(reader: BinaryIO, length: int, emit: Callable[[bytes, int], bool]) -> bool:
    """Relay exactly ``length`` bytes (``_Dropped`` when the stream ends first); ``False`` when ``emit``
    asked to stop."""
    remaining = length
    while remaining:
        data = reader.read(min(remaining, _COPY))
        if not data:
            raise _Dropped()
        remaining -= len(data)
        if not emit(data, len(data)):
            return False
    return True


def _reset(sock: socket.socket | None) -> None:
    """Close with a TCP RST (SO_LINGER on, zero timeout)."""
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def _error_body(status: int, message: str) -> bytes:
    code = _ERROR_CODES.get(status, "UNKNOWN")
    return json.dumps({"errors": [{"code": code, "message": message, "detail": None}]}).encode()


class FaultProxy(SocketServer):
    """HTTP/1.1-aware TCP proxy on 127.0.0.1 in front of ``upstream_host:upstream_port`` that injects
    faults chosen by a seeded RNG and rates, or scripted one-shot faults (see the module docstring).

    Tunables (plain attributes): ``stall_seconds`` (5.0), ``trickle_rate`` (bytes/s, 64 KiB),
    ``retry_after`` (seconds for injected 429s, 1), ``burst`` (1: injected statuses repeat for this many
    matching requests).
    """

    name = "proxy"

    def __init__(self, upstream_host: str, upstream_port: int, *, seed: int = 0) -> None:
        super().__init__(process.LOOPBACK, idle_timeout=60)
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.seed = seed
        self.stall_seconds = 5.0
        self.trickle_rate = 64 * 1024
        self.retry_after = 1
        self.burst = 1
        #: Headers to add to a forwarded answer, from ``(method, path)`` (e.g. the ``RateLimit-*``
        #: headers Docker Hub puts on manifest answers); ``None``: answers pass as they are.
        self.add_headers: Callable[[str, str], list[tuple[str, str]]] | None = None
        self._rng = random.Random(seed)
        self._rates: dict[str, float] = {}
        self._match: tuple[str | None, str] = (None, "")
        self._scripts: list[_Script] = []
        self._burst_left: dict[str, int] = {}
        self._stats: Counter[str] = Counter()
        self._records: list[ProxyRecord] = []
        self._down = False
        self._connection_number = 0

    # ------------------------------------------------------------------ addresses and lifecycle

    @property
    def host(self) -> str:
        return f"{process.LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    # ------------------------------------------------------------------ configuration

    def set_rates(self, **rates: float) -> None:
        """Per-request fault probabilities (kinds in :data:`FAULT_KINDS`); ``set_rates()`` clears them.
        At most one fault is injected per request; the rates should sum to at most 1."""
        unknown = set(rates) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds: {sorted(unknown)}")
        with self._lock:
            self._rates = {k: float(v) for k, v in rates.items() if v > 0}
            self._burst_left.clear()

    def match(self, method: str | None = None, path_contains: str = "") -> None:
        """Apply the rates only to requests with this method (any when ``None``) whose path contains
        ``path_contains``; ``match()`` applies them to every request again."""
        with self._lock:
            self._match = (method.upper() if method else None, path_contains)

    def cut_request_body(self, after: int, *, method: str | None = None, path_contains: str = "",
                         times: int = 1) -> None:
        """The next ``times`` matching requests whose body is longer than ``after`` bytes (or of unknown
        length): forward only the first ``after`` request body bytes upstream, then reset both
        connections. A request that declares a shorter body passes untouched (with several uploads in
        flight, the cut lands on one that has bytes to cut)."""
        self._add(_Script("cut_request", method, path_contains, times, after=after))

    def cut_response_body(self, after: int, *, method: str | None = None, path_contains: str = "",
                          times: int = 1) -> None:
        """The next ``times`` matching responses: forward the head and ``after`` body bytes, then close."""
        self._add(_Script("cut_response", method, path_contains, times, after=after))

    def lose_response(self, *, method: str | None = None, path_contains: str = "", times: int = 1) -> None:
        """The next ``times`` matching requests reach the registry whole and are answered there, but the
        client's connection is reset instead of getting the answer (recorded as ``reset_after``)."""
        self._add(_Script("reset_after", method, path_contains, times))

    def answer_status(self, status: int, *, times: int = 1, retry_after: str | None = None,
                      method: str | None = None, path_contains: str = "", body: bytes | None = None) -> None:
        """The proxy itself answers the next ``times`` matching requests with ``status`` (a registry-style
        JSON error body, or ``body``; ``Retry-After: retry_after`` when given)."""
        self._add(_Script("status", method, path_contains, times, status=status, retry_after=retry_after,
                          body=body))

    def hold_request(self, seconds: float, *, method: str | None = None, path_contains: str = "",
                     times: int = 1) -> None:
        """The next ``times`` matching requests reach the registry ``seconds`` late: their head is held
        (and their body left unread) before the request is forwarded and answered as usual (recorded as
        ``hold``). What a congested network or a busy front end does to a request in flight."""
        if seconds < 0:
            raise ValueError("seconds must not be negative")
        self._add(_Script("hold", method, path_contains, times, seconds=seconds))

    def _add(self, script: _Script) -> None:
        if script.times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._scripts.append(script)

    def set_down(self, down: bool) -> None:
        """Going down cuts every open connection; while down, connections are accepted and reset at once."""
        with self._lock:
            self._down = down
        if down:
            self._cut_all()

    @property
    def down(self) -> bool:
        return self._down

    def reset(self) -> None:
        """Clear rates, match filter, scripts, counters and records (the RNG is re-seeded)."""
        with self._lock:
            self._rates = {}
            self._match = (None, "")
            self._scripts.clear()
            self._burst_left.clear()
            self._stats.clear()
            self._records.clear()
            self._rng = random.Random(self.seed)
            self.add_headers = None

    # ------------------------------------------------------------------ observations

    @property
    def stats(self) -> dict[str, int]:
        """Counters: ``requests``, ``connections``, one per fault kind (and ``cut_request``,
        ``cut_response``, ``answer_status``, ``hold`` for scripts), ``request_body_bytes`` (forwarded upstream),
        ``response_body_bytes`` (forwarded to clients), ``refused_while_down`` (connections)."""
        with self._lock:
            out = dict.fromkeys(("requests", "connections", "request_body_bytes", "response_body_bytes",
                                 "cut_request", "cut_response", "answer_status", "hold", "refused_while_down",
                                 *FAULT_KINDS), 0)
            out.update(self._stats)
            return out

    @property
    def faults(self) -> int:
        """How many faults were injected so far (rates and scripts)."""
        stats = self.stats
        return sum(stats[k] for k in (*FAULT_KINDS, "cut_request", "cut_response", "answer_status", "hold"))

    @property
    def records(self) -> list[ProxyRecord]:
        """A snapshot of the per-request records, in the order requests were answered."""
        with self._lock:
            return list(self._records)

    # ------------------------------------------------------------------ internals

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._stats[key] += n

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _untrack(self, sock: socket.socket | None) -> None:
        if sock is not None:
            with self._lock:
                self._sockets.discard(sock)

    def _admit(self, sock: socket.socket) -> int | None:
        with self._lock:
            self._stats["connections"] += 1
            down = self._down
            refuse = "refuse" in self._rates and self._rng.random() < self._rates["refuse"]
            if refuse and not down:
                self._stats["refuse"] += 1
        if down:
            self._count("refused_while_down")
        if down or refuse:
            _reset(sock)
            return None
        self._connection_number += 1  # the accept thread is the only writer
        return self._connection_number

    def _choose(self, method: str, path: str, body_length: int | None = None) -> tuple[str, _Script | None]:
        """The fault for one request: a scripted one first, else one drawn from the rates."""
        with self._lock:
            for script in self._scripts:
                if script.matches(method, path, body_length):
                    script.times -= 1
                    if script.times == 0:
                        self._scripts.remove(script)
                    return script.kind, script
            want_method, contains = self._match
            if (want_method is not None and want_method != method) or contains not in path:
                return "", None
            for kind, left in self._burst_left.items():
                if left > 0:
                    self._burst_left[kind] = left - 1
                    return kind, None
            if not self._rates:
                return "", None
            draw = self._rng.random()
            for kind in FAULT_KINDS:
                rate = self._rates.get(kind, 0.0)
                if kind == "refuse" or rate <= 0:
                    continue
                if draw < rate:
                    if kind in _STATUS_KINDS and self.burst > 1:
                        self._burst_left[kind] = self.burst - 1
                    return kind, None
                draw -= rate
            return "", None

    def _serve(self, client: socket.socket, number: int) -> None:
        session = _Session(self, client, number)
        try:
            for _ in range(1_000_000):  # bounded: at most this many requests on one connection
                if self._stopping.is_set() or not session.one_exchange():
                    break
        except (OSError, _Dropped, ValueError):
            pass
        finally:
            session.close()


class _Session:
    """One client connection and its upstream connection."""

    def __init__(self, proxy: FaultProxy, client: socket.socket, number: int) -> None:
        self.proxy = proxy
        self.client = client
        self.client_reader: BinaryIO = client.makefile("rb")
        self.number = number
        self.upstream: socket.socket | None = None
        self.upstream_reader: BinaryIO | None = None
        self._pending = b""

    # -- connections

    def _connect(self) -> tuple[socket.socket, BinaryIO]:
        if self.upstream is None or self.upstream_reader is None:
            sock = socket.create_connection((self.proxy.upstream_host, self.proxy.upstream_port), timeout=60)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.upstream = sock
            self.upstream_reader = sock.makefile("rb")
            self.proxy._track(sock)
        return self.upstream, self.upstream_reader

    def _drop_upstream(self, rst: bool = False) -> None:
        sock, self.upstream = self.upstream, None
        if self.upstream_reader is not None:
            try:
                self.upstream_reader.close()
            except OSError:
                pass
            self.upstream_reader = None
        if sock is not None:
            self.proxy._untrack(sock)
            if rst:
                _reset(sock)
            else:
                try:
                    sock.close()
                except OSError:
                    pass

    def close(self) -> None:
        self._drop_upstream()
        try:
            self.client_reader.close()
            self.client.close()
        except OSError:
            pass

    def reset_client(self) -> None:
        try:
            self.client_reader.close()
        except OSError:
            pass
        _reset(self.client)

    def close_client_gracefully(self) -> None:
        """FIN our side, discard what the client still sends for a moment (so no RST eats our answer)."""
        try:
            self.client.shutdown(socket.SHUT_WR)
            self.client.settimeout(0.5)
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline and self.client.recv(65536):
                pass
        except OSError:
            pass

    # -- one request and its response

    def _send(self, data: bytes) -> None:
        """Send to the client, holding the latest piece back until the exchange is recorded (so a client
        that has its whole answer always finds its record and counters)."""
        if self._pending:
            self.client.sendall(self._pending)
        self._pending = data

    def _flush(self) -> None:
        data, self._pending = self._pending, b""
        if data:
            self.client.sendall(data)

    def _record(self, method: str, path: str, status: int, forwarded: int, received_at: float,
                fault: str) -> None:
        record = ProxyRecord(method, path, status, forwarded)
        record.received_at = received_at
        record.answered_at = time.monotonic() if status else 0.0
        record.fault = fault
        record.connection = self.number
        with self.proxy._lock:
            self.proxy._records.append(record)
            self.proxy._stats["requests"] += 1
            if fault:
                self.proxy._stats[fault] += 1
        self._flush()

    def one_exchange(self) -> bool:
        """Serve one request; ``False`` when the client connection is finished."""
        proxy = self.proxy
        first = self.client_reader.peek(1)[:1]
        if not first:
            return False
        if not (first.isalpha() or first in b"\r\n"):  # a TLS hello or garbage: no HTTP/1.1 here
            self.reset_client()
            return False
        head = _read_head(self.client_reader)
        if head is None:
            return False
        received_at = time.monotonic()
        try:
            method, target, _version = head.start_line.split(" ", 2)
        except ValueError:
            raise _Dropped() from None
        path = target.split("?", 1)[0]
        kind, script = proxy._choose(method, path, None if head.chunked else head.content_length or 0)
        record_kind = {"cut_request": "cut_request", "cut_response": "cut_response",
                       "status": "answer_status"}.get(kind, kind)
        expects_continue = (head.get("Expect") or "").lower() == "100-continue"

        if kind == "reset_before":
            self._record(method, path, 0, 0, received_at, record_kind)
            self.reset_client()
            return False

        if kind in _STATUS_KINDS or kind == "status":
            status = script.status if script is not None else _STATUS_KINDS[kind]
            retry_after = script.retry_after if script is not None else None
            if kind == "status_429":
                retry_after = str(proxy.retry_after)
            elif kind == "status_429_date":
                retry_after = formatdate(time.time() + proxy.retry_after, usegmt=True)
            close = expects_continue or head.wants_close
            if not close:  # consume the request body so the connection stays usable
                _relay_body(self.client_reader, head, lambda raw, n: True)
            body = (script.body if script is not None and script.body is not None
                    else _error_body(status, f"injected by the test proxy ({status})"))
            try:
                reason = HTTPStatus(status).phrase
            except ValueError:
                reason = "Unknown"
            answer = _Head(f"HTTP/1.1 {status} {reason}", [
                ("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                ("Docker-Distribution-Api-Version", "registry/2.0")])
            if retry_after is not None:
                answer.headers.append(("Retry-After", retry_after))
            if close:
                answer.headers.append(("Connection", "close"))
            self._send(answer.raw() + (b"" if method == "HEAD" else body))
            self._record(method, path, status, 0, received_at, record_kind)
            if close:
                self.close_client_gracefully()
                return False
            return True

        if kind == "hold" and script is not None:
            proxy._stopping.wait(script.seconds)

        # Forward the request upstream.
        try:
            upstream, upstream_reader = self._connect()
        except OSError:
            self._record(method, path, 0, 0, received_at, "")
            self.reset_client()  # upstream unreachable: the client sees its connection drop
            return False
        if expects_continue:
            head.remove("Expect")
            self.client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        forwarded = 0
        cut_after = script.after if kind == "cut_request" and script is not None else None
        upstream.sendall(head.raw())

        def send_up(raw: bytes, payload: int) -> bool:
            nonlocal forwarded
            if cut_after is not None and forwarded + payload > cut_after:
                keep = cut_after - forwarded
                upstream.sendall(raw[:keep] if payload else b"")
                forwarded += keep
                return False
            if raw:
                upstream.sendall(raw)
            forwarded += payload
            return True

        try:
            _relay_body(self.client_reader, head, send_up)
        except _Dropped:
            proxy._count("request_body_bytes", forwarded)
            self._record(method, path, 0, forwarded, received_at, "")
            raise
        proxy._count("request_body_bytes", forwarded)
        if cut_after is not None:
            self._record(method, path, 0, forwarded, received_at, record_kind)
            self._drop_upstream(rst=True)
            self.reset_client()
            return False

        # Read the response head (forwarding interim 1xx heads).
        while True:
            response = _read_head(upstream_reader)
            if response is None:
                self._record(method, path, 0, forwarded, received_at, "")
                self.reset_client()
                return False
            status = int(response.start_line.split(" ", 2)[1])
            if 100 <= status < 200 and status != 101:
                self.client.sendall(response.raw())
                continue
            break
        has_body = method != "HEAD" and status not in (204, 304)
        until_close = has_body and response.content_length is None and not response.chunked
        close_after = response.wants_close or head.wants_close or until_close

        if kind == "reset_after":
            if has_body:
                _relay_body(upstream_reader, response, lambda raw, n: True, until_close=until_close)
            self._record(method, path, 0, forwarded, received_at, record_kind)
            self.reset_client()
            if close_after:
                self._drop_upstream()
            return False

        if kind == "wrong_length" and has_body:
            parts: list[bytes] = []  # payload only: chunk size lines and CRLFs carry no payload
            _relay_body(upstream_reader, response, lambda raw, n: (parts.append(raw) if n else None) or True,
                        until_close=until_close)
            body = b"".join(parts)
            response.remove("Transfer-Encoding")
            declared = len(body) - max(1, len(body) // 4) if body else 1
            response.set("Content-Length", str(declared))
            response.set("Connection", "close")
            self._send(response.raw() + body[:declared])
            proxy._count("response_body_bytes", min(declared, len(body)))
            self._record(method, path, status, forwarded, received_at, record_kind)
            self._drop_upstream()
            self.close_client_gracefully()
            return False

        # Forward the response, with a body fault when one was chosen.
        total = response.content_length
        if total == 0:
            has_body = False
        if kind == "stall" and not has_body:  # nothing to cut: stall before the head instead
            self._record(method, path, 0, forwarded, received_at, record_kind)
            self._drop_upstream()
            proxy._stopping.wait(proxy.stall_seconds)
            self.close_client_gracefully()
            return False
        if kind in ("reset_during", "stall", "truncate"):
            limit: int | None = (total // 2) if total is not None else 512
        elif kind == "cut_response" and script is not None:
            limit = script.after
        else:
            limit = None
        if not has_body:
            limit = None
            if kind == "reset_during":  # no body to cut: the head arrives, then the reset
                self._send(response.raw())
                self._record(method, path, status, forwarded, received_at, record_kind)
                self._drop_upstream()
                time.sleep(0.02)
                self.reset_client()
                return False
        if proxy.add_headers is not None:
            response.headers.extend(proxy.add_headers(method, path))
        self._send(response.raw())
        sent = 0
        trickle = kind == "trickle" and has_body

        def send_down(raw: bytes, payload: int) -> bool:
            nonlocal sent
            if limit is not None and sent + payload >= limit and payload:
                keep = limit - sent
                if keep > 0:
                    self._send(raw[:keep])
                sent += max(keep, 0)
                return False
            if trickle and raw:
                rate = max(1, proxy.trickle_rate)
                step = max(1, rate // 20)
                for i in range(0, len(raw), step):
                    self._send(raw[i:i + step])
                    if proxy._stopping.wait(0.05 * min(step, len(raw) - i) / step):
                        raise _Dropped()
            elif raw:
                self._send(raw)
            sent += payload
            return True

        try:
            if has_body:
                _relay_body(upstream_reader, response, send_down, until_close=until_close)
        finally:
            proxy._count("response_body_bytes", sent)
        if limit is not None:
            self._record(method, path, status, forwarded, received_at, record_kind)
            self._drop_upstream()  # the rest of the upstream body was not read
            if kind == "stall":
                proxy._stopping.wait(proxy.stall_seconds)
                self.close_client_gracefully()
            elif kind == "reset_during":
                time.sleep(0.02)  # let the client read what was sent before the RST discards it
                self.reset_client()
            else:
                self.close_client_gracefully()
            return False
        self._record(method, path, status, forwarded, received_at, record_kind)
        if close_after:
            self._drop_upstream()
            self.close_client_gracefully()
            return False
        return True


#: Docker Hub's pull-quota window (6 hours).
WINDOW = 21600


class DockerHubQuota:
    """``RateLimit-Limit: 100;w=21600`` and ``RateLimit-Remaining: N;w=21600`` on manifest answers; N
    drops by one per manifest GET (HEADs are free, as on Docker Hub)."""

    def __init__(self, remaining: int) -> None:
        self.remaining = remaining
        self._lock = threading.Lock()

    def __call__(self, method: str, path: str) -> list[tuple[str, str]]:
        if "/manifests/" not in path:
            return []
        with self._lock:
            if method == "GET":
                self.remaining -= 1
            left = self.remaining
        return [("RateLimit-Limit", f"100;w={WINDOW}"), ("RateLimit-Remaining", f"{left};w={WINDOW}"),
                ("Docker-RateLimit-Source", "127.0.0.1")]
