"""The I/O engine: one ``pycurl.CurlMulti`` drives every transfer of a Client.

How it is driven was decided by measurement (client CPU per small pooled request; reference
numbers in ``shared/reference/engine-costs.md``, ours from ``benchmarks/bench_engine.py``):

* **perform() + select(), never socket_action from Python.** ``fdset()`` plus one wake pipe;
  socket_action costs ~8 us/request more (2 ``epoll_ctl`` and 2-3 Python callbacks per request).
* **Whoever waits, drives.** A thread that needs a result - ``request()``, ``map()``,
  ``Future.result()``, a streaming body's ``read()`` - takes the *drive lock* if it is free and runs
  the loop itself until its own result is in, completing everybody else's transfers on the way
  (the caller-driven design, reference "B": no thread hand-off on the common paths). A waiter that
  finds the lock taken announces itself (``_blocked``) and blocks on a one-shot lock; a driver that
  lets go of the lock hands it to such a waiter, so sync callers keep driving themselves.
* **One loop thread, only for work nobody drives.** asyncio requests (their loop must not block)
  are driven by a single lazily started thread at once; ``submit()`` futures get a 2 ms grace
  first, because their owner usually comes back and drives in ``result()`` - the thread takes over
  only work that nobody drove for that long (futures with callbacks and no ``result()``).
* **asyncio** results go back with ``loop.call_soon_threadsafe``, batched: one call per event loop
  per engine turn. (Driving curl on the caller's loop over a private epoll measured ~38 us in the
  reference and needs socket_action; this design measured no worse and shares all code paths.)
* Completions are a flag plus, only if the waiter really blocked, one ``threading.Lock`` release:
  no ``Condition``/``Event`` per request. ``submit()`` returns a ``concurrent.futures.Future``
  subclass that builds its ``Condition`` only when something blocks on it without driving.
* Per request only what changed is set: a pooled handle keeps URL, method, header list, timeouts
  and callbacks from its last transfer. Header lists are shared per distinct header set (layers
  send the same token and user agent every time), so an unchanged HTTPHEADER is neither rebuilt
  nor set again. A buffered transfer's head lines and body land in per-handle lists bound to
  HEADERFUNCTION/WRITEFUNCTION once; a streaming transfer's head lines go to a list too (no
  Python call per header line) and the driver looks for the end of the head after each turn.
  Redirect following costs nothing until a 3xx.
* No reference cycles per request: a finished stream lets go of its transfer, so responses are
  freed by reference counting (cyclic-GC passes over engine objects showed up as ~5 us/request).
* Client CPU per request also depends on the machine: against a server on the same box every
  request costs a context switch, after which Python code runs on cold caches; the layers above
  (adapters, registry layers, the host library) then cost ~2-3x their in-isolation time.

Measured with ``benchmarks/bench_engine.py`` on this 2-core box (nginx ``/small`` on 127.0.0.1,
5,000 requests, 64 in flight, median of 5 round-robin rounds; the box was shared with other jobs,
load average 2-4, so absolute numbers are noisy and the per-round ratio is the figure to read):

====================================  ===========  ===========
client                                HEAD us/req  vs raw loop
====================================  ===========  ===========
raw pycurl CurlMulti loop (the limit)   22.7          1.00x
``Client.map``                          33.6          1.45x (GET 1.54x)
``Client.submit`` + ``result()``        44.3          1.71x (GET 2.53x, noisy)
``AsyncClient``, 64 tasks               31.5          1.33x (GET 2.02x)
``Client.request`` from 64 threads      94.6          4.19x (64 threads contend for the GIL)
requests.Session, 64 threads           842            37x
httpx.AsyncClient, 64 tasks           1362            62x
====================================  ===========  ===========

Big bodies: 256 MiB over HTTP/1.1 at 1,320 MiB/s into a sink (curl -o /dev/null: 1,200 MiB/s),
peak RSS growth < 2 MiB; streamed reads are bounded by ``HIGH_WATER``.

libcurl facts this relies on:
  * ``curl_easy_pause`` must be called from the thread driving the multi: unpause requests from
    readers go through the control queue and are applied by whoever drives next.
  * A write callback returning ``CURL_WRITEFUNC_PAUSE`` has *not* consumed the data; libcurl
    delivers the same bytes again after unpausing, and it does not time out paused transfers.
  * libcurl's low-speed check averages the speed over up to ~5 s of samples, so after a burst a
    stall shows seconds late: the engine checks progress itself every ``STALL_CHECK`` seconds.
  * ``curl_multi_fdset`` leaves out sockets >= FD_SETSIZE (1024); the select timeout is capped at
    ``MAX_WAIT`` so such transfers still move, slowly (TODO: an epoll path for huge fd counts).
  * The pycurl wheel's libcurl looks for CAs at a RHEL path; the system bundle is found with
    ``ssl.get_default_verify_paths()`` and set as ``CAINFO``/``CAPATH``.
  * A sync iterator request body is read on the driving thread: it must not block for long.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures as cf
import contextlib
import hashlib
import io
import logging
import math
import os
import select
import ssl
import threading
import time
import weakref
from collections.abc import AsyncIterable, Callable, Iterable
from concurrent.futures._base import (  # the state names cf.Future uses internally
    CANCELLED,
    CANCELLED_AND_NOTIFIED,
    FINISHED,
    PENDING,
)
from typing import Any

import pycurl

from ._curl_errors import E_TOO_LARGE, error_from_curl
from ._heads import parse_head
from ._redaction import redact_url
from .exceptions import (
    ClientClosed,
    OCITransportError,
    PoolTimeout,
    ProtocolError,
    ReadTimeout,
    RequestCancelled,
    TransportError,
    WriteTimeout,
)
from .messages import DEFAULT_TIMEOUT, Headers, Request, Response, Timeout
from .roundtrip import RoundTripper

__all__ = ["BodyStream", "Engine", "EngineFuture", "system_ca"]

log = logging.getLogger("ocitransport")

#: Streaming response bodies pause the transfer above this many buffered bytes ...
HIGH_WATER = 4 << 20
#: ... and resume it once the consumer has drained the buffer to this many.
LOW_WATER = 1 << 20
#: Async request bodies: the pump stops reading the source above this many queued bytes.
UPLOAD_HIGH_WATER = 4 << 20
UPLOAD_LOW_WATER = 1 << 20
#: libcurl's receive buffer (CURLOPT_BUFFERSIZE; default 16 KiB). Larger means fewer write callbacks
#: on big bodies; libcurl allocates it per transfer only while it runs.
RECV_BUFFER = 256 << 10
#: CURLOPT_UPLOAD_BUFFERSIZE (default 64 KiB, max 2 MiB): fewer read callbacks on big uploads.
SEND_BUFFER = 512 << 10
#: Longest select() when curl has no timer: also bounds how long a socket curl_multi_fdset could not
#: report (fd >= 1024) waits.
MAX_WAIT = 0.25
#: The largest response head (status line and every header) accepted, and the largest single header
#: line: libcurl's own limits (since 8.3, CVE-2023-38039), reported as ``ProtocolError`` naming them.
#: A server sending more (say 10 MiB of headers) costs at most this much memory before the transfer fails.
MAX_RESPONSE_HEAD = 300 << 10
MAX_RESPONSE_HEAD_LINE = 100 << 10
#: Distinct request header sets whose HTTPHEADER lists are kept for reuse (``Engine._header_list``).
HEADER_LISTS = 256
#: ... each at most this long in total (a registry token is 1-2 KiB).
HEADER_LIST_BYTES = 16 << 10
#: How often the driver looks for stalled transfers (the precision of ``Timeout.stall``).
STALL_CHECK = 0.25
#: A thread blocked behind another driver re-checks after this long (a safety net, not a poll).
BLOCK_RECHECK = 1.0

CURLOPT_SUPPRESS_CONNECT_HEADERS = 265  # libcurl 7.54.0; pycurl does not export the name
_BLANKS = ("Expect:", "Accept:")  # no "Expect: 100-continue" round trip, no default "Accept: */*"
_BLANK_LIST: list[str | bytes] = list(_BLANKS)
_INF = math.inf

# Transfer kinds: how the result goes back.
_SYNC = 0  # a thread waits (request(), map()): flag + lock
_FUTURE = 1  # submit(): an EngineFuture
_ASYNC = 2  # an asyncio future on the caller's loop

# Loop thread states.
_IDLE, _GRACE, _AWAKE, _DRIVING = 0, 1, 2, 3
#: How long the loop thread leaves futures to their owners' result() before driving them itself.
GRACE = 0.002

# Transfer states.
_QUEUED, _ACTIVE, _FINISHED = 0, 1, 2

# Body modes.
_BUFFERED, _STREAM, _SINK = 0, 1, 2

# Control operations applied by the driver.
_CANCEL, _UNPAUSE = 0, 1

# Method states of a pooled handle.
_M_GET, _M_HEAD, _M_UPLOAD = 0, 1, 2


def system_ca() -> tuple[str | None, str | None]:
    """The system CA bundle file and directory (``SSL_CERT_FILE``/``SSL_CERT_DIR`` win)."""
    paths = ssl.get_default_verify_paths()
    cafile: str | None = os.environ.get("SSL_CERT_FILE") or paths.cafile or paths.openssl_cafile
    capath: str | None = os.environ.get("SSL_CERT_DIR") or paths.capath or paths.openssl_capath
    if cafile and not os.path.isfile(cafile):
        cafile = None
    if capath and not os.path.isdir(capath):
        capath = None
    if cafile is None and capath is None:
        try:
            import certifi

            cafile = str(certifi.where())
        except ImportError:
            pass
    return cafile, capath


# ------------------------------------------------------------------------------------------------ futures

class EngineFuture(cf.Future):  # type: ignore[type-arg]
    """The ``concurrent.futures.Future`` that ``submit()`` returns.

    It is a real ``Future`` (``concurrent.futures.wait``, ``as_completed`` and ``asyncio.wrap_future``
    work), but it builds its ``Condition`` only when something needs one; ``result()`` and
    ``exception()`` first try to drive the engine themselves. ``cancel()`` cancels the transfer:
    the handle leaves the multi and the connection slot is freed.
    """

    def __init__(self, engine: Engine, transfer: _Transfer) -> None:
        self._state = PENDING
        self._result = None
        self._exception = None
        self._waiters: list[Any] = []
        self._done_callbacks: list[Any] = []
        self._cond: threading.Condition | None = None
        self._engine = engine
        self._transfer = transfer

    @property
    def _condition(self) -> threading.Condition:  # type: ignore[override]
        cond = self._cond
        if cond is None:
            with _COND_LOCK:
                cond = self._cond
                if cond is None:
                    cond = self._cond = threading.Condition()
        return cond

    def done(self) -> bool:
        return self._state in (FINISHED, CANCELLED, CANCELLED_AND_NOTIFIED)

    def running(self) -> bool:
        return self._state == PENDING

    def cancelled(self) -> bool:
        return self._state in (CANCELLED, CANCELLED_AND_NOTIFIED)

    def cancel(self) -> bool:
        if self._state == FINISHED:
            return False
        # Settle as cancelled first, so a completion racing in from the driver cannot win after
        # the transfer was already asked to stop.
        cancelled = super().cancel()
        if cancelled and self._transfer is not None:
            self._engine._cancel(self._transfer, None)
        return cancelled

    def _settle(self, result: Any, error: BaseException | None) -> None:
        """Called once by the engine (driver thread)."""
        if self._state != PENDING:
            return  # cancelled meanwhile
        if self._cond is None:
            self._result = result
            self._exception = error
            self._state = FINISHED
            if self._cond is None:  # nobody started blocking after the state was written
                self._invoke_callbacks()  # type: ignore[attr-defined]
                return
            with self._cond:
                for waiter in self._waiters:
                    if error is None:
                        waiter.add_result(self)
                    else:
                        waiter.add_exception(self)
                self._cond.notify_all()
            self._invoke_callbacks()
            return
        try:
            if error is None:
                super().set_result(result)
            else:
                super().set_exception(error)
        except cf.InvalidStateError:
            pass

    def _drive(self, timeout: float | None) -> None:
        """Drive (or wait for the driver) until settled; a redirect flow swaps ``_transfer`` per hop."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._state == PENDING:
            t = self._transfer
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            self._engine._wait(t, remaining)
            if self._transfer is t and t.ready:
                return  # settled elsewhere or about to be: the Condition path below covers it

    def result(self, timeout: float | None = None) -> Any:
        if self._state == FINISHED:
            if self._exception is not None:
                raise self._exception
            return self._result
        self._drive(timeout)
        if self._state == FINISHED:
            if self._exception is not None:
                raise self._exception
            return self._result
        return super().result(timeout=0 if self._state != PENDING else timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if self._state == FINISHED:
            return self._exception
        self._drive(timeout)
        if self._state == FINISHED:
            return self._exception
        return super().exception(timeout=0 if self._state != PENDING else timeout)


_COND_LOCK = threading.Lock()


# ------------------------------------------------------------------------------------------------ transfers

class _Group:
    """A waiter for several transfers (``map``): ``ready`` when any completed; ``count`` completions."""

    __slots__ = ("blocker", "count", "ready")

    def __init__(self) -> None:
        self.ready = False
        self.blocker: Any = None
        self.count = 0  # written by the driver only


def _nudge_one(blocked: set[Any]) -> None:
    """Release one blocked sync waiter without a result, so it retries the drive lock and drives."""
    for w in list(blocked):
        b = w.blocker
        if b is not None:
            w.blocker = None
            try:
                b.release()
            except RuntimeError:
                pass
            return


def _wake(w: Any) -> None:
    """Mark a waiter ready and release it if it blocked (driver thread)."""
    w.ready = True
    b = w.blocker
    if b is not None:
        w.blocker = None
        try:
            b.release()
        except RuntimeError:
            pass


class _Handle:
    """A pooled easy handle and the option values it currently carries."""

    __slots__ = (
        "chunks",
        "curl",
        "custom",
        "has_reader",
        "headers",
        "lines",
        "method",
        "timeout",
        "url",
        "write_mode",
    )

    def __init__(self, curl: pycurl.Curl) -> None:
        self.curl = curl
        self.url = ""
        self.lines: list[bytes] = []
        self.chunks: list[bytes] = []
        self.method = _M_GET
        self.custom: str | None = None
        self.headers: Any = None
        self.timeout: Timeout | None = None
        self.write_mode = _BUFFERED
        self.has_reader = False


class _Transfer:
    """One request on its way through the engine."""

    __slots__ = (
        "afut",
        "aloop",
        "blocker",
        "body_size",
        "digest",
        "error",
        "future",
        "handle",
        "head_ready",
        "head_scan",
        "head_start",
        "header_list",
        "hop",
        "kind",
        "lines",
        "mode",
        "on_done",
        "passive",
        "pool_deadline",
        "progress",
        "progress_at",
        "reader",
        "ready",
        "request",
        "result",
        "sent_all",
        "sink",
        "stall",
        "started",
        "state",
        "stream",
        "upload",
        "waiter",
    )

    def __init__(self, request: Request, kind: int) -> None:
        self.request = request
        self.kind = kind
        self.waiter: Any = None  # None: the transfer itself
        self.ready = False
        self.blocker: Any = None
        self.result: Response | None = None
        self.error: BaseException | None = None
        self.state = _QUEUED
        self.handle: _Handle | None = None
        self.mode = _BUFFERED
        self.stream: BodyStream | None = None
        self.sink: Any = None
        self.lines: list[bytes] | None = None
        self.head_start = 0
        self.head_scan = 0
        self.head_ready = False
        self.future: EngineFuture | None = None
        self.aloop: asyncio.AbstractEventLoop | None = None
        self.afut: asyncio.Future[Any] | None = None
        self.started = 0.0
        self.reader: Any = None
        self.upload: _AsyncUpload | None = None
        self.passive = 0  # _FUTURE or _ASYNC: holds a token in that passive deque until finished
        self.pool_deadline = _INF
        self.header_list: list[str | bytes] = _BLANK_LIST
        self.body_size = -1
        self.on_done: Callable[[_Transfer], bool] | None = None
        self.hop: _Transfer | None = None  # the redirect hop in flight on behalf of this transfer
        self.sent_all = False
        self.digest: Any = None
        self.stall = 0.0  # seconds without a byte either way before the transfer is failed; 0: off
        self.progress = -1
        self.progress_at = 0.0

    def scan_head(self) -> bool:
        """Whether a streaming transfer's final head is complete (1xx heads are skipped; a 101 is
        final), looking only at the lines that arrived since the last call.

        libcurl appends the lines straight to ``lines`` (HEADERFUNCTION is ``lines.append``: no Python
        call per header line); the driver scans after each turn and hands the response over as soon
        as its head is complete, before the body.
        """
        if self.head_ready:
            return True
        lines = self.lines
        assert lines is not None
        i = self.head_scan
        n = len(lines)
        while i < n:
            line = lines[i]
            i += 1
            if line == b"\r\n" or line == b"\n":
                first = lines[self.head_start]
                parts = first.split(None, 2)
                if (first[:5] == b"HTTP/" and len(parts) > 1 and parts[1][:1] == b"1"
                        and parts[1] != b"101"):
                    self.head_start = i
                    continue
                self.head_ready = True
                if i < n:
                    del lines[i:]  # trailers that came with the head in one turn: not part of it
                break
        self.head_scan = i
        return self.head_ready

    def on_sink(self, data: bytes) -> int | None:
        try:
            if self.digest is not None:
                self.digest.update(data)
            self.sink(data)
        except BaseException as exc:  # noqa: BLE001 - re-raised to the caller
            self.error = exc
            return 0  # libcurl fails the transfer with CURLE_WRITE_ERROR
        return None


# ------------------------------------------------------------------------------------------------ bodies out

class _BytesReader:
    """READFUNCTION/SEEKFUNCTION over bytes (or a seekable file), optionally digesting what is sent."""

    __slots__ = ("digest", "read_fn", "seek_fn", "start", "transfer")

    def __init__(self, transfer: _Transfer, source: Any, start: int, digest: Any) -> None:
        self.read_fn = source.read
        self.seek_fn = source.seek
        self.start = start
        self.transfer = transfer
        self.digest = digest

    def read(self, size: int) -> Any:
        try:
            data = self.read_fn(size)
        except BaseException as exc:  # noqa: BLE001
            self.transfer.error = exc
            return pycurl.READFUNC_ABORT
        if not data:
            self.transfer.sent_all = True
        elif self.digest is not None:
            self.digest.update(data)
        return data

    def seek(self, offset: int, origin: int) -> int:
        # libcurl rewinds to re-send on a fresh connection when a reused one turned out dead.
        try:
            if origin == io.SEEK_SET:
                self.seek_fn(self.start + offset)
                if offset == 0 and self.digest is not None:
                    self.digest = hashlib.sha256()
            else:
                self.seek_fn(offset, origin)
                self.digest = None  # cannot know what was sent any more
        except BaseException:  # noqa: BLE001
            return int(pycurl.SEEKFUNC_CANTSEEK)
        self.transfer.sent_all = False
        return int(pycurl.SEEKFUNC_OK)


class _IterReader:
    """READFUNCTION over a sync iterator of bytes (called on the driving thread: keep it fast)."""

    __slots__ = ("buf", "digest", "it", "pos", "transfer")

    def __init__(self, transfer: _Transfer, source: Iterable[bytes], digest: Any) -> None:
        self.it = iter(source)
        self.buf = memoryview(b"")
        self.pos = 0
        self.transfer = transfer
        self.digest = digest

    def read(self, size: int) -> Any:
        try:
            while self.pos >= len(self.buf):
                chunk = next(self.it, None)
                if chunk is None:
                    self.transfer.sent_all = True
                    return b""
                if not isinstance(chunk, (bytes, bytearray, memoryview)):
                    raise TypeError(f"request body iterator yielded {type(chunk).__name__}, not bytes")
                self.buf = memoryview(chunk).cast("B")
                self.pos = 0
            pos = self.pos
            data = bytes(self.buf[pos:pos + size])
            self.pos = pos + len(data)
        except BaseException as exc:  # noqa: BLE001
            self.transfer.error = exc
            return pycurl.READFUNC_ABORT
        if self.digest is not None:
            self.digest.update(data)
        return data


class _AsyncUpload:
    """A bounded queue between an async body iterator (pumped on the caller's loop) and READFUNCTION."""

    __slots__ = (
        "buf",
        "chunks",
        "digest",
        "engine",
        "eof",
        "loop",
        "paused",
        "pos",
        "pulled",
        "pushed",
        "space",
        "task",
        "transfer",
    )

    def __init__(self, engine: Engine, transfer: _Transfer, loop: asyncio.AbstractEventLoop,
                 digest: Any) -> None:
        self.engine = engine
        self.transfer = transfer
        self.chunks: collections.deque[bytes] = collections.deque()
        self.pushed = 0  # written by the pump only
        self.pulled = 0  # written by the driver only
        self.eof = False
        self.paused = False
        self.space: asyncio.Future[None] | None = None
        self.loop = loop
        self.digest = digest
        self.buf = memoryview(b"")
        self.pos = 0
        self.task: asyncio.Task[None] | None = None

    async def pump(self, source: AsyncIterable[bytes]) -> None:
        try:
            async for chunk in source:
                if not isinstance(chunk, (bytes, bytearray, memoryview)):
                    raise TypeError(f"request body iterator yielded {type(chunk).__name__}, not bytes")
                if not chunk:
                    continue
                self.chunks.append(bytes(chunk))
                self.pushed += len(chunk)
                self._resume()
                while self.pushed - self.pulled > UPLOAD_HIGH_WATER and self.transfer.state != _FINISHED:
                    self.space = fut = self.loop.create_future()
                    if self.pushed - self.pulled > UPLOAD_HIGH_WATER:
                        await fut
                    self.space = None
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - the request fails with the source's own error
            self.transfer.error = exc
            self.engine._cancel(self.transfer, exc)
            return
        self.eof = True
        self._resume()

    def _resume(self) -> None:
        if self.paused:
            self.paused = False
            self.engine._request(_UNPAUSE, self.transfer)

    def read(self, size: int) -> Any:  # driver thread
        if self.pos >= len(self.buf):
            self.paused = True  # announce before looking: the pump checks it after appending
            try:
                chunk = self.chunks.popleft()
            except IndexError:
                if self.eof:
                    self.paused = False
                    self.transfer.sent_all = True
                    return b""
                return pycurl.READFUNC_PAUSE
            self.paused = False
            self.buf = memoryview(chunk)
            self.pos = 0
        pos = self.pos
        data = bytes(self.buf[pos:pos + size])
        self.pos = pos + len(data)
        self.pulled += len(data)
        if self.digest is not None:
            self.digest.update(data)
        space = self.space
        if space is not None and self.pushed - self.pulled <= UPLOAD_LOW_WATER:
            self.space = None
            _call_soon(self.loop, _resolve, space)
        return data


def _resolve(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_result(None)


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:  # the loop is closed: nobody is waiting any more
        pass


# ------------------------------------------------------------------------------------------------ bodies in

class BodyStream:
    """A response body that is still arriving (``messages.ResponseStream``).

    The engine appends chunks as libcurl delivers them; above ``HIGH_WATER`` buffered bytes the
    transfer is paused (``CURL_WRITEFUNC_PAUSE``) and it resumes once the consumer has drained the
    buffer to ``LOW_WATER``. A sync reader with an empty buffer drives the engine itself when no
    other thread does. ``close()`` before the end cancels the transfer (the connection is closed).
    """

    __slots__ = (
        "__weakref__",
        "_afut",
        "_aloop",
        "_chunks",
        "_closed",
        "_consumed",
        "_engine",
        "_eof",
        "_error",
        "_paused",
        "_received",
        "_transfer",
        "blocker",
        "ready",
    )

    def __init__(self, engine: Engine, transfer: _Transfer) -> None:
        self._engine = engine
        self._transfer: _Transfer | None = transfer  # None once the transfer is over
        self._chunks: collections.deque[bytes] = collections.deque()
        self._received = 0  # driver only
        self._consumed = 0  # reader only
        self._eof = False
        self._error: BaseException | None = None
        self._paused = False
        self.ready = False
        self.blocker: Any = None
        self._closed = False
        self._afut: asyncio.Future[None] | None = None
        self._aloop: asyncio.AbstractEventLoop | None = None

    # -- driver side

    def _on_write(self, data: bytes) -> int | None:
        if self._closed:
            return None  # discarded until the cancel is applied
        if self._received - self._consumed >= HIGH_WATER:
            self._paused = True
            return int(pycurl.WRITEFUNC_PAUSE)  # libcurl keeps `data` and delivers it again on unpause
        self._chunks.append(data)
        self._received += len(data)
        digest = self._transfer.digest  # type: ignore[union-attr]  # set while libcurl writes
        if digest is not None:
            digest.update(data)
        if not self.ready:
            self.ready = True
            self._engine._touched.append(self)
        return None

    def _finish(self, error: BaseException | None) -> None:
        self._error = error
        self._eof = True
        # The transfer is over: drop the stream -> transfer -> response -> stream cycle, so a
        # finished response is freed by reference counting, not left to the cyclic GC.
        self._transfer = None
        if not self.ready:
            self.ready = True
        self._engine._touched.append(self)

    # -- reader side

    @property
    def bytes_buffered(self) -> int:
        """Bytes received and not yet read (at most about ``HIGH_WATER`` plus one chunk)."""
        return self._received - self._consumed

    @property
    def bytes_received(self) -> int:
        return self._received

    @property
    def complete(self) -> bool:
        """True when the whole body has arrived without error: reading it will not wait."""
        return self._eof and self._error is None and not self._closed

    def _take(self) -> bytes | None:
        """The next chunk if one is buffered; ``None`` at the end; raises the transfer's error."""
        try:
            data = self._chunks.popleft()
        except IndexError:
            if self._eof:
                if self._chunks:
                    return self._take()
                if self._error is not None:
                    raise self._error from None
                return None
            if self._closed:
                raise RequestCancelled("the response stream was closed")
            raise
        self._consumed += len(data)
        if self._paused and self._received - self._consumed <= LOW_WATER:
            self._paused = False
            t = self._transfer
            if t is not None:
                self._engine._request(_UNPAUSE, t)
        return data

    def _next(self) -> bytes | None:
        while True:
            try:
                return self._take()
            except IndexError:
                pass
            self.ready = False
            if self._chunks or self._eof:
                continue
            self._engine._wait(self, None)

    async def _anext(self) -> bytes | None:
        engine = self._engine
        while True:
            try:
                return self._take()
            except IndexError:
                pass
            loop = asyncio.get_running_loop()
            fut = loop.create_future()
            self._aloop = loop
            self._afut = fut
            self.ready = False
            if self._chunks or self._eof:
                self._afut = None
                continue
            engine._blocked_async.add(self)
            engine._ensure_driver()
            try:
                await fut
            finally:
                engine._blocked_async.discard(self)
                self._afut = None

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all the rest when ``n < 0``); ``b""`` at the end."""
        if n < 0:
            parts = []
            while (chunk := self._next()) is not None:
                parts.append(chunk)
            return b"".join(parts)
        if n == 0:
            return b""
        chunk = self._next()
        if chunk is None:
            return b""
        return self._split(chunk, n)

    def _split(self, chunk: bytes, n: int) -> bytes:
        if len(chunk) > n:
            rest = chunk[n:]
            self._chunks.appendleft(rest)
            self._consumed -= len(rest)
            return chunk[:n]
        return chunk

    async def aread(self, n: int = -1) -> bytes:
        if n < 0:
            parts = []
            while (chunk := await self._anext()) is not None:
                parts.append(chunk)
            return b"".join(parts)
        if n == 0:
            return b""
        chunk = await self._anext()
        if chunk is None:
            return b""
        return self._split(chunk, n)

    def __iter__(self) -> BodyStream:
        return self

    def __next__(self) -> bytes:
        chunk = self._next()
        if chunk is None:
            raise StopIteration
        return chunk

    def __aiter__(self) -> BodyStream:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self._anext()
        if chunk is None:
            raise StopAsyncIteration
        return chunk

    def close(self) -> None:
        """Stop receiving: cancels the transfer if the body has not fully arrived."""
        if self._closed:
            return
        self._closed = True
        self._chunks.clear()
        t = self._transfer
        if not self._eof and t is not None:
            self._engine._cancel(t, None)

    def __del__(self) -> None:
        if not self._closed and not self._eof:
            with contextlib.suppress(Exception):  # interpreter shutdown
                self.close()


# ------------------------------------------------------------------------------------------------ the engine

class Engine(RoundTripper):
    """One CurlMulti, its pooled handles, and the machinery that drives it (see the module docstring).

    ``round_trip`` / ``round_trip_async`` send exactly one request (no redirects). Thread-safe.
    """

    def __init__(
        self,
        *,
        max_connections: int = 128,
        max_connections_per_host: int = 16,
        max_in_flight: int | None = None,
        timeout: Timeout = DEFAULT_TIMEOUT,
        verify: bool | str = True,
        cert: str | tuple[str, str] | None = None,
        proxy: str | None = None,
        http2: bool = True,
        user_agent: str | None = None,
    ) -> None:
        if max_connections < 1 or max_connections_per_host < 1:
            raise ValueError("connection limits must be at least 1")
        self.timeout = timeout
        self._cap = max_in_flight or max_connections
        self._multi = multi = pycurl.CurlMulti()
        multi.setopt(pycurl.M_MAX_HOST_CONNECTIONS, max_connections_per_host)
        multi.setopt(pycurl.M_MAX_TOTAL_CONNECTIONS, max_connections)
        multi.setopt(pycurl.M_MAXCONNECTS, max_connections)  # idle keep-alive connections kept
        if http2:
            multi.setopt(pycurl.M_PIPELINING, pycurl.PIPE_MULTIPLEX)
        self._share = share = pycurl.CurlShare()
        share.setopt(pycurl.SH_SHARE, pycurl.LOCK_DATA_DNS)
        share.setopt(pycurl.SH_SHARE, pycurl.LOCK_DATA_SSL_SESSION)
        self._static = self._static_options(verify, cert, proxy, http2, user_agent)
        self._free: list[_Handle] = []
        # Prepared HTTPHEADER lists by header items, without and with a request body (_header_list).
        self._header_lists: tuple[dict[tuple[Any, ...], list[str | bytes]], ...] = ({}, {})
        self._active: dict[pycurl.Curl, _Transfer] = {}
        self._inbox: collections.deque[_Transfer] = collections.deque()
        self._control: collections.deque[tuple[int, _Transfer, Any]] = collections.deque()
        # Streaming transfers in flight whose final head is not complete yet (driver only).
        self._heading: dict[_Transfer, None] = {}
        self._touched: list[BodyStream] = []
        self._abatch: list[_Transfer] = []
        self._blocked: set[Any] = set()  # sync waiters blocked behind another driver
        self._blocked_async: set[Any] = set()  # async stream readers waiting for data
        # One token per in-flight transfer that no caller thread is driving: futures (whose owner
        # may come back and drive in result()) and asyncio requests (whose owner never can). Deques
        # because append/pop/len are atomic under the GIL, from any thread, without a lock.
        self._passive_futures: collections.deque[None] = collections.deque()
        self._passive_async: collections.deque[None] = collections.deque()
        self._epoch = 0  # drive-lock acquisitions (written only while holding the lock)
        self._stall_check = 0.0
        self._loop_state = _IDLE
        self._pool_check = _INF
        self._drive_lock = threading.Lock()
        self._driver: int | None = None
        self._in_curl = False
        self._in_select = False
        self._poked = False
        self._closed = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._loop_event = threading.Event()
        self._loop_thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()

    # -------------------------------------------------------------------------------------- handles

    def _static_options(self, verify: bool | str, cert: str | tuple[str, str] | None, proxy: str | None,
                        http2: bool, user_agent: str | None) -> list[tuple[int, Any]]:
        opts: list[tuple[int, Any]] = [
            (pycurl.NOSIGNAL, 1),  # no SIGALRM for DNS timeouts: we run in threads
            (pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS),
            (pycurl.REDIR_PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS),
            (pycurl.FOLLOWLOCATION, 0),  # redirects are a layer of ours (auth stripping, SSRF guard)
            (pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_2TLS if http2
             else pycurl.CURL_HTTP_VERSION_1_1),
            (pycurl.PIPEWAIT, 1 if http2 else 0),  # wait for a connection that may multiplex
            (CURLOPT_SUPPRESS_CONNECT_HEADERS, 1),  # a proxy's CONNECT reply is not the response
            (pycurl.TCP_KEEPALIVE, 1),
            (pycurl.BUFFERSIZE, RECV_BUFFER),
            (pycurl.UPLOAD_BUFFERSIZE, SEND_BUFFER),
            (pycurl.SHARE, self._share),
            (pycurl.USERAGENT, user_agent or _default_user_agent()),
        ]
        if verify is False:
            opts += [(pycurl.SSL_VERIFYPEER, 0), (pycurl.SSL_VERIFYHOST, 0)]
        elif isinstance(verify, (str, os.PathLike)):
            ca = os.fspath(verify)
            opts.append((pycurl.CAPATH if os.path.isdir(ca) else pycurl.CAINFO, ca))
        else:
            cafile, capath = system_ca()
            if cafile:
                opts.append((pycurl.CAINFO, cafile))
            if capath:
                opts.append((pycurl.CAPATH, capath))
        if cert is not None:
            if isinstance(cert, (str, os.PathLike)):
                opts.append((pycurl.SSLCERT, os.fspath(cert)))
            else:
                opts += [(pycurl.SSLCERT, os.fspath(cert[0])), (pycurl.SSLKEY, os.fspath(cert[1]))]
        if proxy is not None:
            opts.append((pycurl.PROXY, proxy))  # "" disables the *_proxy environment variables
        return opts

    def _new_handle(self) -> _Handle:
        curl = pycurl.Curl()
        for option, value in self._static:
            curl.setopt(option, value)
        h = _Handle(curl)
        curl.setopt(pycurl.HEADERFUNCTION, h.lines.append)
        curl.setopt(pycurl.WRITEFUNCTION, h.chunks.append)
        curl.setopt(pycurl.HTTPHEADER, _BLANK_LIST)
        h.headers = _BLANK_LIST
        return h

    def _configure(self, h: _Handle, t: _Transfer) -> None:
        """Set what this transfer needs on a pooled handle, touching only options that changed."""
        curl = h.curl
        request = t.request
        url = request.url
        if url != h.url:
            curl.setopt(pycurl.URL, url)
            h.url = url
        if t.header_list is not h.headers:
            curl.setopt(pycurl.HTTPHEADER, t.header_list)
            h.headers = t.header_list
        method = request.method
        reader = t.reader
        if reader is not None:
            if h.method != _M_UPLOAD:
                curl.setopt(pycurl.UPLOAD, 1)
                h.method = _M_UPLOAD
            custom: str | None = None if method == "PUT" else method
            curl.setopt(pycurl.READFUNCTION, reader.read)
            if isinstance(reader, _BytesReader):
                curl.setopt(pycurl.SEEKFUNCTION, reader.seek)
            elif h.has_reader:
                curl.setopt(pycurl.SEEKFUNCTION, None)
            curl.setopt(pycurl.INFILESIZE_LARGE, t.body_size)
            h.has_reader = True
        elif method == "GET":
            if h.method != _M_GET:
                curl.setopt(pycurl.HTTPGET, 1)  # also clears NOBODY and UPLOAD
                h.method = _M_GET
            custom = None
        elif method == "HEAD":
            if h.method != _M_HEAD:
                curl.setopt(pycurl.NOBODY, 1)
                h.method = _M_HEAD
            custom = None
        else:
            if h.method != _M_GET:
                curl.setopt(pycurl.HTTPGET, 1)
                h.method = _M_GET
            custom = method
        if custom != h.custom:
            curl.setopt(pycurl.CUSTOMREQUEST, custom)
            h.custom = custom
        timeout = request.timeout or self.timeout
        if timeout is not h.timeout:
            if h.timeout is None or timeout != h.timeout:
                _set_timeouts(curl, timeout)
            h.timeout = timeout
        mode = t.mode
        if mode == _BUFFERED:
            if h.write_mode != _BUFFERED:  # a buffered body is digested once at the end
                curl.setopt(pycurl.WRITEFUNCTION, h.chunks.append)
                h.write_mode = _BUFFERED
        elif mode == _STREAM:
            assert t.stream is not None and t.lines is not None
            curl.setopt(pycurl.WRITEFUNCTION, t.stream._on_write)
            curl.setopt(pycurl.HEADERFUNCTION, t.lines.append)
            h.write_mode = _STREAM
        else:
            curl.setopt(pycurl.WRITEFUNCTION, t.on_sink)
            h.write_mode = _SINK

    def _release(self, h: _Handle, t: _Transfer) -> None:
        """Back to the free list, dropping references to this transfer's objects."""
        h.lines.clear()
        h.chunks.clear()
        curl = h.curl
        if h.write_mode != _BUFFERED:
            curl.setopt(pycurl.WRITEFUNCTION, h.chunks.append)
            if h.write_mode == _STREAM:
                curl.setopt(pycurl.HEADERFUNCTION, h.lines.append)
            h.write_mode = _BUFFERED
        if h.has_reader:
            curl.setopt(pycurl.READFUNCTION, None)
            curl.setopt(pycurl.SEEKFUNCTION, None)
            h.has_reader = False
        t.handle = None
        if len(self._free) < self._cap and not self._closed:
            self._free.append(h)
        else:
            curl.close()

    # -------------------------------------------------------------------------------------- requests in

    def _transfer(self, request: Request, kind: int) -> _Transfer:
        """Prepare a transfer on the caller's thread (header list, body reader, body mode)."""
        if self._closed:
            raise ClientClosed("the client is closed")
        t = _Transfer(request, kind)
        ext = request.extensions
        items = request.headers._items
        body = request.body
        if body is None and request.method in ("POST", "PUT", "PATCH"):
            body = b""  # send Content-Length: 0 as Go's client does; some servers want it
        if items or body is not None:
            t.header_list = self._header_list(items, body is not None)
        if body is not None:
            self._prepare_body(t, body, items, bool(ext.get("sha256_upload")) if ext else False)
        if kind != _ASYNC and type(t.reader) is _PendingAsync:
            raise TypeError("an async iterator body needs the async face (AsyncClient)")
        if request.stream:
            t.mode = _STREAM
            t.stream = BodyStream(self, t)
            t.lines = []
        elif ext and ext.get("sink") is not None:
            sink = ext["sink"]
            t.mode = _SINK
            t.sink = sink.write if hasattr(sink, "write") else sink
        if ext and ext.get("sha256") and t.mode != _BUFFERED:
            t.digest = hashlib.sha256()
        elif ext and ext.get("sha256"):
            t.digest = _LazyDigest
        t.started = time.monotonic()
        timeout = request.timeout or self.timeout
        if timeout.stall is not None:
            t.stall = timeout.stall
        if timeout.pool is not None:
            t.pool_deadline = t.started + timeout.pool
        return t

    def _header_list(self, items: list[tuple[str, str]], has_body: bool) -> list[str | bytes]:
        """The HTTPHEADER list for these headers, one shared list per distinct header set.

        Layers build a new ``Headers`` per request, but the lines are mostly the same every time (the
        same token, user agent, accept list); handing the same list object back lets ``_configure``
        skip the HTTPHEADER setopt (a curl_slist rebuilt per request) on a pooled handle that carries
        it already, and skips building the lines.
        """
        cache = self._header_lists[has_body]
        try:
            key = tuple(items)
            found = cache.get(key)
        except TypeError:  # an unhashable value someone put in Headers: build it every time
            return _header_list(items, has_body)
        if found is None:
            found = _header_list(items, has_body)
            if sum(map(len, found)) <= HEADER_LIST_BYTES:  # huge header sets are built each time
                if len(cache) >= HEADER_LISTS:
                    cache.clear()  # tokens rotate, ranges differ: a bounded cache, rebuilt as it goes
                cache[key] = found
        return found

    def _prepare_body(self, t: _Transfer, body: Any, items: list[tuple[str, str]], digest_up: bool) -> None:
        digest = hashlib.sha256() if digest_up else None
        t.digest = None
        request = t.request
        if isinstance(body, bytes):
            t.reader = _BytesReader(t, io.BytesIO(body), 0, digest)
            t.body_size = len(body)
        elif hasattr(body, "read"):
            if request._body_start is not None:
                request.rewind()
                start = request._body_start
                try:
                    end = body.seek(0, io.SEEK_END)
                    body.seek(start)
                    t.body_size = end - start
                except (OSError, ValueError):
                    t.body_size = _declared_length(items)
                t.reader = _BytesReader(t, body, start, digest)
            else:
                t.reader = _IterReader(t, iter(lambda: body.read(SEND_BUFFER), b""), digest)
                t.body_size = _declared_length(items)
        elif hasattr(body, "__aiter__"):
            # The pump is started by round_trip_async on the caller's loop.
            t.reader = _PendingAsync(body, digest)
            t.body_size = _declared_length(items)
        elif hasattr(body, "__iter__"):
            t.reader = _IterReader(t, body, digest)
            t.body_size = _declared_length(items)
        else:
            raise TypeError(f"unsupported request body type {type(body).__name__}")
        t.sent_all = False

    def _enqueue(self, t: _Transfer) -> None:
        self._inbox.append(t)
        self._pool_check = min(self._pool_check, t.pool_deadline)
        if self._closed:
            self._fail_closed()
        elif self._in_select:
            self._poke()

    def _poke(self) -> None:
        """Wake a driver blocked in select() (one byte per wake-up, not per request)."""
        if not self._poked:
            self._poked = True
            try:
                os.write(self._wake_w, b"x")
            except (BlockingIOError, OSError):
                pass

    def _ensure_driver(self) -> None:
        """Make sure some thread drives: if nobody holds the drive lock, wake the loop thread."""
        if not self._drive_lock.locked():
            self._wake_loop()

    def _request(self, op: int, t: _Transfer, arg: Any = None) -> None:
        """Queue an operation for the driver (curl_easy_pause and removal must happen there)."""
        self._control.append((op, t, arg))
        if self._in_select:
            self._poke()
        self._ensure_driver()

    def _cancel(self, t: _Transfer, exc: BaseException | None) -> None:
        """Cancel a transfer: applied at once if no other thread drives, else by the driver."""
        if t.state == _FINISHED:
            return
        self._control.append((_CANCEL, t, exc))
        lock = self._drive_lock
        if self._driver == threading.get_ident() and not self._in_curl:
            self._run_control()
        elif not self._closed and lock.acquire(False):
            self._driver = threading.get_ident()
            try:
                self._run_control()
            finally:
                self._driver = None
                lock.release()
            self._after_release()
        else:
            if self._in_select:
                self._poke()
            self._ensure_driver()

    def _cancel_chain(self, t: _Transfer) -> None:
        """Cancel a transfer or, once it was redirected, the hop in flight for it."""
        self._cancel(t.hop if t.hop is not None else t, None)

    def _retire(self, t: _Transfer) -> None:
        """The transfer is over (driver thread): give back its passive token."""
        t.state = _FINISHED
        if t.mode == _STREAM:
            self._heading.pop(t, None)
        if t.passive:
            (self._passive_futures if t.passive == _FUTURE else self._passive_async).pop()
            t.passive = 0

    # -------------------------------------------------------------------------------------- faces

    def round_trip(self, request: Request) -> Response:
        """Send one request from a sync caller (which drives the engine while it waits)."""
        t = self._transfer(request, _SYNC)
        self._enqueue(t)
        try:
            self._wait(t, None)
        except BaseException:
            self._cancel(t, None)
            raise
        if t.error is not None:
            raise t.error
        return t.result  # type: ignore[return-value]

    def submit(self, request: Request, on_done: Callable[[_Transfer], bool] | None = None) -> EngineFuture:
        """Send one request; the future completes when the response (head, if streaming) is in."""
        t = self._transfer(request, _FUTURE)
        t.on_done = on_done
        fut = t.future = EngineFuture(self, t)
        t.passive = _FUTURE
        self._passive_futures.append(None)
        self._enqueue(t)
        self._ensure_driver()
        return fut

    async def round_trip_async(self, request: Request) -> Response:
        """Send one request from a coroutine without blocking its event loop."""
        loop = asyncio.get_running_loop()
        t = self._transfer(request, _ASYNC)
        t.aloop = loop
        fut = t.afut = loop.create_future()
        t.passive = _ASYNC
        self._passive_async.append(None)
        pending = t.reader if isinstance(t.reader, _PendingAsync) else None
        if pending is not None:
            up = t.upload = _AsyncUpload(self, t, loop, pending.digest)
            t.reader = up
            up.task = loop.create_task(up.pump(pending.source))
        self._enqueue(t)
        self._ensure_driver()
        try:
            await fut
        except asyncio.CancelledError:
            self._cancel(t, None)
            if t.upload is not None and t.upload.task is not None:
                t.upload.task.cancel()
            raise
        if t.upload is not None and t.upload.task is not None and not t.upload.task.done():
            t.upload.task.cancel()
        if t.error is not None:
            raise t.error
        return t.result  # type: ignore[return-value]

    # -------------------------------------------------------------------------------------- waiting

    def _wait(self, w: Any, timeout: float | None) -> bool:
        """Until ``w.ready``: drive if nobody else does, else block until the driver delivers.

        A waiter announces itself in ``_blocked`` *before* trying the drive lock, and a driver checks
        ``_blocked`` *after* releasing it (``_after_release``): whichever comes second sees the other,
        so a waiter is never left without a driver.
        """
        if w.ready:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        lock = self._drive_lock
        blocked = self._blocked
        me = threading.get_ident()
        while not w.ready:
            blocked.add(w)
            if not self._closed and lock.acquire(False):
                blocked.discard(w)
                self._epoch += 1
                self._driver = me
                try:
                    while not w.ready and not self._closed:
                        if deadline is not None and time.monotonic() >= deadline:
                            break
                        self._iterate(deadline, w)
                finally:
                    self._driver = None
                    lock.release()
                    self._after_release()
            elif self._driver == me:
                # Re-entered from a callback of ours on the driving thread (a done-callback that
                # sends another request). Not from inside libcurl: it forbids recursive calls.
                blocked.discard(w)
                if self._in_curl:
                    raise RuntimeError("cannot wait for a request inside an engine callback")
                while not w.ready and not self._closed:
                    if deadline is not None and time.monotonic() >= deadline:
                        break
                    self._iterate(deadline, w)
            else:
                blocker = threading.Lock()
                blocker.acquire()
                w.blocker = blocker
                if not w.ready and (lock.locked() or self._closed):
                    wait = BLOCK_RECHECK
                    if deadline is not None:
                        wait = min(wait, max(0.0, deadline - time.monotonic()))
                    blocker.acquire(timeout=wait)
                w.blocker = None
                blocked.discard(w)
            if deadline is not None and not w.ready and time.monotonic() >= deadline:
                return False
        return True

    def _urgent(self) -> bool:
        """Work only the loop thread can serve right now: asyncio callers, control ops, deliveries."""
        return bool(self._passive_async or self._blocked_async or self._control or self._abatch)

    def _needs_driver(self) -> bool:
        """Work that no caller thread is driving at the moment."""
        return bool(self._passive_async or self._blocked_async or self._control or self._abatch
                    or self._passive_futures or self._blocked)

    def _after_release(self) -> None:
        """A driver let go of the lock: hand over to a blocked sync waiter, else to the loop thread."""
        if self._closed:
            return
        if self._blocked:
            _nudge_one(self._blocked)
        elif self._passive_async or self._blocked_async or self._control or self._abatch or self._passive_futures and self._loop_state == _IDLE:
            self._wake_loop()

    def _wake_loop(self) -> None:
        thread = self._loop_thread
        if thread is None:
            with self._thread_lock:
                if self._loop_thread is None and not self._closed:
                    thread = threading.Thread(target=_loop_main, args=(weakref.ref(self), self._loop_event),
                                              name="ocitransport-engine", daemon=True)
                    self._loop_thread = thread
                    thread.start()
        if self._loop_state != _DRIVING and (self._loop_state == _IDLE or self._urgent()):
            self._loop_event.set()

    def _loop_once(self) -> None:
        """The loop thread's turn, until no work needs it.

        asyncio work is driven at once. Futures get a grace period first: their owners usually come
        back and drive in ``result()`` (the cheap, caller-driven path); only work nobody has driven
        for ``GRACE`` seconds is taken over. Sync waiters blocked behind the loop thread are handed
        the lock instead of being served from here (a thread hand-off per request costs more).
        """
        lock = self._drive_lock
        event = self._loop_event
        me = threading.get_ident()
        while not self._closed:
            if not self._urgent():
                if self._blocked:
                    if not lock.locked():
                        _nudge_one(self._blocked)
                elif not self._passive_futures:
                    self._loop_state = _IDLE
                    if self._passive_futures or self._urgent():  # raced with a _wake_loop()
                        self._loop_state = _AWAKE
                        continue
                    return
                epoch = self._epoch
                self._loop_state = _GRACE
                event.wait(GRACE)
                event.clear()
                self._loop_state = _AWAKE
                if not self._urgent() and (self._epoch != epoch or lock.locked() or self._blocked
                                           or not self._passive_futures):
                    continue
            if not lock.acquire(timeout=0.05):
                continue
            self._epoch += 1
            self._driver = me
            self._loop_state = _DRIVING
            try:
                while not self._closed and self._needs_driver():
                    if self._blocked and not self._urgent():
                        break  # a sync caller wants to drive: let it (after the release below)
                    self._iterate(None)
            finally:
                self._driver = None
                self._loop_state = _AWAKE
                lock.release()
            if self._blocked:
                _nudge_one(self._blocked)

    # -------------------------------------------------------------------------------------- the loop

    def _iterate(self, deadline: float | None, w: Any = None) -> None:
        """One turn: apply control requests, admit queued transfers, perform, complete, then wait
        for socket activity - unless what the driver waits for (``w``) is ready already."""
        if self._control:
            self._run_control()
        active = self._active
        inbox = self._inbox
        if self._pool_check != _INF:
            self._expire_pool()
        if inbox and len(active) < self._cap:
            self._admit()
        multi = self._multi
        self._in_curl = True
        try:
            running = multi.perform()[1]
        finally:
            self._in_curl = False
        if running != len(active):
            self._collect()
        if self._heading:
            self._deliver_heads()
        if self._touched:
            self._notify_streams()
        if active:
            now = time.monotonic()
            if now >= self._stall_check:
                self._check_stalls(now)
        if self._abatch:
            self._flush_async()
        if (inbox and len(active) < self._cap) or self._control:
            return
        if w is None:
            if not self._needs_driver() or (self._blocked and not self._urgent()):
                return
        elif w.ready:
            return
        wait = multi.timeout()
        if wait == 0:
            return
        wait = MAX_WAIT if wait < 0 or wait > MAX_WAIT * 1000 else wait / 1000.0
        if self._pool_check != _INF or deadline is not None:
            now = time.monotonic()
            wait = min(wait, max(0.0, self._pool_check - now))
            if deadline is not None:
                wait = min(wait, max(0.0, deadline - now))
        rlist, wlist, xlist = multi.fdset()
        rlist.append(self._wake_r)
        self._in_select = True
        if not inbox and not self._control and not self._closed:
            try:
                select.select(rlist, wlist, xlist, wait)
            except (OSError, ValueError):  # ValueError: an fd >= FD_SETSIZE slipped in
                time.sleep(min(wait, 0.001))
        self._in_select = False
        if self._poked:
            self._poked = False
            try:
                os.read(self._wake_r, 4096)
            except (BlockingIOError, OSError):
                pass

    def _admit(self) -> None:
        inbox = self._inbox
        active = self._active
        cap = self._cap
        free = self._free
        multi = self._multi
        while inbox and len(active) < cap:
            t = inbox.popleft()
            if t.state != _QUEUED:
                continue
            h = free.pop() if free else self._new_handle()
            try:
                if t.reader is not None and t.request._body_start is not None:
                    t.request.rewind()
                self._configure(h, t)
            except BaseException as exc:  # noqa: BLE001 - a bad option value fails this request only
                self._retire(t)
                self._release(h, t)
                self._finish(t, None, _local_error(t, exc))
                continue
            t.handle = h
            t.state = _ACTIVE
            if t.mode == _STREAM:
                self._heading[t] = None
            if t.stall:
                t.progress_at = time.monotonic()
                t.progress = -1
            active[h.curl] = t
            multi.add_handle(h.curl)

    def _expire_pool(self) -> None:
        now = time.monotonic()
        if now < self._pool_check:
            return
        nearest = _INF
        for t in list(self._inbox):
            if t.state != _QUEUED:
                continue
            if t.pool_deadline <= now:
                self._retire(t)
                r = t.request
                self._finish(t, None, PoolTimeout(
                    f"{r.method} {redact_url(r.url)}: no connection slot free within "
                    f"{(r.timeout or self.timeout).pool} s", url=redact_url(r.url)))
            elif t.pool_deadline < nearest:
                nearest = t.pool_deadline
        self._pool_check = nearest

    def _check_stalls(self, now: float) -> None:
        """Fail transfers that moved no byte either way for their ``Timeout.stall`` seconds.

        libcurl's own low-speed check (also set) averages over up to ~5 s of samples, so after a
        burst a stall is seen seconds late; this check, run every ``STALL_CHECK`` s, is exact to that
        granularity. Transfers we paused ourselves (a slow consumer, an empty async body source)
        are not stalled.
        """
        undriven = now - self._stall_check > STALL_CHECK  # nobody drove for a while (a slow map
        self._stall_check = now + STALL_CHECK              # consumer, an unread sync stream): not a stall
        stalled = []
        for curl, t in self._active.items():
            if not t.stall:
                continue
            try:
                moved = curl.getinfo(pycurl.SIZE_DOWNLOAD_T) + curl.getinfo(pycurl.SIZE_UPLOAD_T)
            except pycurl.error:
                continue
            paused = (t.stream is not None and t.stream._paused) or (
                t.upload is not None and t.upload.paused)
            if moved != t.progress or paused or undriven:
                t.progress = moved
                t.progress_at = now
            elif now - t.progress_at >= t.stall:
                stalled.append(t)
        for t in stalled:
            r = t.request
            kind = WriteTimeout if t.reader is not None and not t.sent_all else ReadTimeout
            exc = kind(f"{r.method} {redact_url(r.url)}: no data received or sent for {t.stall:g} s "
                       f"(stall timeout)", url=redact_url(r.url), curl_code=pycurl.E_OPERATION_TIMEDOUT)
            self._do_cancel(t, exc)

    def _collect(self) -> None:
        multi = self._multi
        while True:
            queued, ok, failed = multi.info_read()
            for curl in ok:
                self._complete(curl, 0, "")
            for curl, code, message in failed:
                self._complete(curl, code, message)
            if not queued:
                break
        if self._inbox and len(self._active) < self._cap:
            self._admit()

    def _complete(self, curl: pycurl.Curl, code: int, message: str) -> None:
        t = self._active.pop(curl, None)
        if t is None:
            return
        self._multi.remove_handle(curl)
        self._retire(t)
        h = t.handle
        assert h is not None
        result: Response | None = None
        error = t.error
        try:
            if error is None and code:
                error = self._curl_error(t, curl, code, message)
            if error is None and t.mode != _STREAM:
                if not _head_ended(h.lines):
                    error = _cut_head(t)
                else:
                    result = self._response(t, h.lines, h.chunks)
        except BaseException as exc:  # noqa: BLE001 - a malformed head fails this request only
            error = _local_error(t, exc)
        ext = t.request.extensions
        timing: dict[str, float | int] | None = None
        if ext and ext.get("timing"):
            timing = _timing(curl)
            if result is not None:
                result.extensions["timing"] = timing
            elif t.result is not None:  # a stream's response went out with its head
                t.result.extensions["timing"] = timing
        self._release(h, t)
        if t.mode == _STREAM:
            self._complete_stream(t, error, timing)
        else:
            self._finish(t, result, error)

    def _complete_stream(self, t: _Transfer, error: BaseException | None,
                         timing: dict[str, float | int] | None = None) -> None:
        stream = t.stream
        assert stream is not None
        # ``t.result`` set but not ``t.ready``: the head went out and a redirect flow took the
        # transfer over; delivering the head again would start a second flow for the same request.
        if not t.ready and t.result is None:
            head_ready = t.scan_head()  # also cuts trailers that arrived with the head
            if error is None and not head_ready:
                error = _cut_head(t)
            if head_ready:
                # The head arrived complete: the caller gets the response, the body error comes
                # with the body (also when both landed in the same engine turn).
                try:
                    self._deliver_head(t, timing)
                except BaseException as exc:  # noqa: BLE001
                    error = _local_error(t, exc)
                    stream._finish(error)
                    self._finish(t, None, error)
                    return
            else:
                stream._finish(error)
                self._finish(t, None, error)
                return
        if error is None and t.digest is not None and t.result is not None:
            t.result.extensions["sha256"] = t.digest.hexdigest()
        stream._finish(error)

    def _curl_error(self, t: _Transfer, curl: pycurl.Curl, code: int, message: str) -> TransportError:
        if code == E_TOO_LARGE or (code == pycurl.E_RECV_ERROR and message.startswith("Too large")):
            # libcurl refuses a response head over its limits (MAX_RESPONSE_HEAD in total, 100 KiB for
            # one line); its own message is empty for a single long line and says "recv error" otherwise.
            return ProtocolError(f"{t.request.method} {redact_url(t.request.url)}: response head exceeds "
                                 f"{MAX_RESPONSE_HEAD} bytes ({MAX_RESPONSE_HEAD_LINE} for one header line)",
                                 url=redact_url(t.request.url), curl_code=code)
        phase = "read"
        if code == pycurl.E_OPERATION_TIMEDOUT:
            head_started = bool(t.lines if t.mode == _STREAM else t.handle is not None and t.handle.lines)
            try:
                # CONNECT_TIME is 0.0 on a reused connection too: only a transfer that opened a
                # connection of its own (NUM_CONNECTS > 0) can have timed out connecting.
                if not head_started and curl.getinfo(pycurl.NUM_CONNECTS) > 0 and (
                        curl.getinfo(pycurl.CONNECT_TIME) == 0.0
                        or (t.request.url[:6].lower() == "https:"
                            and curl.getinfo(pycurl.APPCONNECT_TIME) == 0.0)):
                    phase = "connect"
                elif not head_started and t.reader is not None and not t.sent_all:
                    phase = "write"
            except pycurl.error:
                pass
        return error_from_curl(code, message, t.request.method, t.request.url, phase=phase,
                               cause=pycurl.error(code, message))

    def _response(self, t: _Transfer, lines: list[bytes], chunks: list[bytes]) -> Response:
        version, status, reason, items = parse_head(lines)
        if t.mode == _BUFFERED:
            content = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        else:
            content = b""
        request = t.request
        r = Response.__new__(Response)
        r.status = status
        r.headers = Headers._from_list(items)
        r.reason = reason
        r.http_version = version
        r.url = request.url
        r.request = request
        r.elapsed = time.monotonic() - t.started
        r._stream = None
        r._content = content
        if t.digest is not None or t.reader is not None:
            ext: dict[str, Any] = {}
            if t.digest is _LazyDigest:
                ext["sha256"] = hashlib.sha256(content).hexdigest()
            elif t.digest is not None and t.mode != _STREAM:  # a stream's is set at its end
                ext["sha256"] = t.digest.hexdigest()
            reader = t.reader
            if reader is not None and getattr(reader, "digest", None) is not None:
                ext["sha256_upload"] = reader.digest.hexdigest()
            r.extensions = ext
        else:
            r.extensions = {}
        return r

    def _deliver_heads(self) -> None:
        """Hand over the responses of streaming transfers whose head completed in this turn."""
        heading = self._heading
        heads = [t for t in heading if t.scan_head()]
        for t in heads:
            del heading[t]
        for t in heads:
            if t.state == _ACTIVE and not t.ready and t.result is None:
                try:
                    self._deliver_head(t)
                except BaseException as exc:  # noqa: BLE001
                    self._do_cancel(t, _local_error(t, exc))

    def _deliver_head(self, t: _Transfer, timing: dict[str, float | int] | None = None) -> None:
        assert t.lines is not None and t.stream is not None
        response = self._response(t, t.lines, [])
        response._content = None
        response._stream = t.stream
        ext = t.request.extensions
        if timing is not None:  # the transfer completed with its head
            response.extensions["timing"] = timing
        elif ext and ext.get("timing") and t.handle is not None:
            # What is known with the head (the connection: new or reused); completed at the end.
            response.extensions["timing"] = _timing(t.handle.curl)
        self._finish(t, response, None)

    def _finish(self, t: _Transfer, result: Response | None, error: BaseException | None) -> None:
        """Hand the result to whoever waits for it."""
        t.result = result
        t.error = error
        on_done = t.on_done
        if on_done is not None and on_done(t):
            return  # taken over (a redirect flow settles this transfer later)
        kind = t.kind
        if kind == _ASYNC:
            t.ready = True
            self._abatch.append(t)
            return
        if kind == _FUTURE:
            fut = t.future
            t.future = None  # no transfer <-> future cycle left for the GC
            try:
                fut._settle(result, error)  # type: ignore[union-attr]
            except Exception:
                log.exception("future callback failed")
        w = t.waiter
        if w is not None:
            t.ready = True
            w.count += 1
            _wake(w)
            self._blocked.discard(w)
        else:
            _wake(t)
            self._blocked.discard(t)

    def _notify_streams(self) -> None:
        touched = self._touched
        self._touched = []
        blocked = self._blocked
        blocked_async = self._blocked_async
        for s in touched:
            blocked.discard(s)
            blocked_async.discard(s)
            b = s.blocker
            if b is not None:
                s.blocker = None
                try:
                    b.release()
                except RuntimeError:
                    pass
            f = s._afut
            if f is not None and s._aloop is not None:
                _call_soon(s._aloop, _resolve, f)

    def _flush_async(self) -> None:
        batch = self._abatch
        self._abatch = []
        loop = batch[0].aloop
        if all(t.aloop is loop for t in batch):
            _call_soon(loop, _deliver_async, batch)  # type: ignore[arg-type]
            return
        by_loop: dict[Any, list[_Transfer]] = {}
        for t in batch:
            by_loop.setdefault(t.aloop, []).append(t)
        for lp, ts in by_loop.items():
            _call_soon(lp, _deliver_async, ts)

    def _run_control(self) -> None:
        control = self._control
        while control:
            op, t, arg = control.popleft()
            if op == _CANCEL:
                self._do_cancel(t, arg)
            elif op == _UNPAUSE and t.state == _ACTIVE and t.handle is not None:
                self._in_curl = True
                try:
                    t.handle.curl.pause(pycurl.PAUSE_CONT)  # may call the write callback right away
                except pycurl.error:
                    pass
                finally:
                    self._in_curl = False

    def _do_cancel(self, t: _Transfer, exc: BaseException | None) -> None:
        if t.state == _FINISHED:
            return
        if t.state == _ACTIVE and t.handle is not None:
            curl = t.handle.curl
            self._active.pop(curl, None)
            self._multi.remove_handle(curl)  # mid-transfer: libcurl closes that connection
            self._release(t.handle, t)
        self._retire(t)
        if exc is None:
            r = t.request
            exc = RequestCancelled(f"{r.method} {redact_url(r.url)}: cancelled", url=redact_url(r.url))
        if t.stream is not None:
            t.stream._finish(exc)
        if not t.ready and t.hop is None:  # a redirected transfer is settled by its flow
            self._finish(t, None, exc)

    # -------------------------------------------------------------------------------------- closing

    def _fail_closed(self) -> None:
        if self._driver == threading.get_ident() or self._drive_lock.acquire(timeout=30):
            owned = self._driver != threading.get_ident()
            try:
                self._fail_all()
            finally:
                if owned:
                    self._drive_lock.release()

    def _fail_all(self) -> None:
        while self._inbox:
            t = self._inbox.popleft()
            if t.state == _QUEUED:
                self._retire(t)
                self._finish(t, None, ClientClosed(
                    f"{t.request.method} {redact_url(t.request.url)}: the client was closed"))
        for t in list(self._active.values()):
            self._do_cancel(t, ClientClosed(
                f"{t.request.method} {redact_url(t.request.url)}: the client was closed"))
        self._control.clear()
        if self._touched:
            self._notify_streams()
        if self._abatch:
            self._flush_async()

    def close(self) -> None:
        """Fail pending requests with ClientClosed, stop the loop thread, free every handle."""
        if self._closed:
            return
        self._closed = True
        self._poke()
        self._loop_event.set()
        thread = self._loop_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        me = threading.get_ident()
        owned = False
        if self._driver != me:
            self._drive_lock.acquire()
            owned = True
        try:
            self._fail_all()
            for h in self._free:
                h.curl.close()
            self._free.clear()
            self._multi.close()
            self._share.close()
        finally:
            if owned:
                self._drive_lock.release()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    @property
    def closed(self) -> bool:
        return self._closed

    # -------------------------------------------------------------------------------------- introspection

    def stats(self) -> dict[str, int]:
        """Counts for tests and monitoring: queued, in flight, pooled handles, sync streams."""
        return {"queued": sum(1 for t in list(self._inbox) if t.state == _QUEUED),
                "active": len(self._active), "free_handles": len(self._free),
                "passive": len(self._passive_futures) + len(self._passive_async),
                "blocked": len(self._blocked) + len(self._blocked_async)}

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            self._closed = True
            with contextlib.suppress(Exception):
                self._loop_event.set()


class _PendingAsync:
    __slots__ = ("digest", "source")

    def __init__(self, source: AsyncIterable[bytes], digest: Any) -> None:
        self.source = source
        self.digest = digest

    def read(self, size: int) -> Any:  # pragma: no cover - only reachable from a sync face
        return pycurl.READFUNC_ABORT


class _LazyDigestType:
    """Marker: digest a buffered body once, at the end (same result as incremental, less work)."""

    def update(self, data: bytes) -> None:  # pragma: no cover
        raise AssertionError


_LazyDigest: Any = _LazyDigestType()


def _deliver_async(batch: list[_Transfer]) -> None:
    for t in batch:
        fut = t.afut
        if fut is None or fut.done():
            continue
        fut.set_result(None)


def _loop_main(ref: weakref.ref[Engine], event: threading.Event) -> None:
    while True:
        event.wait()
        event.clear()
        engine = ref()
        if engine is None or engine._closed:
            return
        try:
            engine._loop_once()
        except BaseException:
            log.exception("ocitransport engine loop failed")
        engine._loop_state = _IDLE
        if engine._closed:  # close() may have set the event while _loop_once consumed it
            return
        if engine._needs_driver():
            event.set()
        del engine


_TIMING = (("namelookup", pycurl.NAMELOOKUP_TIME), ("connect", pycurl.CONNECT_TIME),
           ("appconnect", pycurl.APPCONNECT_TIME), ("pretransfer", pycurl.PRETRANSFER_TIME),
           ("starttransfer", pycurl.STARTTRANSFER_TIME), ("total", pycurl.TOTAL_TIME))


def _timing(curl: pycurl.Curl) -> dict[str, float | int]:
    """libcurl's timings in seconds from the start of the transfer, and ``new_connections``
    (0 when a pooled connection was reused); asked for with ``extensions={"timing": True}``."""
    out: dict[str, float | int] = {}
    try:
        for name, info in _TIMING:
            out[name] = curl.getinfo(info)
        out["new_connections"] = curl.getinfo(pycurl.NUM_CONNECTS)
    except pycurl.error:
        pass
    return out


def _set_timeouts(curl: pycurl.Curl, timeout: Timeout) -> None:
    curl.setopt(pycurl.CONNECTTIMEOUT_MS, 0 if timeout.connect is None else max(1, int(timeout.connect * 1000)))
    curl.setopt(pycurl.TIMEOUT_MS, 0 if timeout.total is None else max(1, int(timeout.total * 1000)))
    if timeout.stall is None:
        curl.setopt(pycurl.LOW_SPEED_LIMIT, 0)
        curl.setopt(pycurl.LOW_SPEED_TIME, 0)
    else:
        curl.setopt(pycurl.LOW_SPEED_LIMIT, 1)  # bytes/s: below this for LOW_SPEED_TIME is a stall
        curl.setopt(pycurl.LOW_SPEED_TIME, max(1, math.ceil(timeout.stall)))


def _header_list(items: list[tuple[str, str]], has_body: bool) -> list[str | bytes]:
    out: list[str | bytes] = []
    for name, value in items:
        if has_body:
            lower = name.lower()
            if lower == "content-length" or lower == "transfer-encoding":
                continue  # libcurl frames the body itself (INFILESIZE or chunked)
        line = f"{name}: {value}" if value else f"{name};"  # "Name;" sends an empty value
        if "\r" in line or "\n" in line or "\0" in line:
            raise ProtocolError(f"header {name!r} contains a line break or NUL")
        if not line.isascii():
            # pycurl takes str only as ASCII; HTTP header bytes are latin-1 (UTF-8 beyond that).
            try:
                out.append(line.encode("latin-1"))
            except UnicodeEncodeError:
                out.append(line.encode("utf-8"))
            continue
        out.append(line)
    out += _BLANKS  # blank "Name:" lines only remove libcurl's defaults; a caller's own value stays
    return out


def _declared_length(items: list[tuple[str, str]]) -> int:
    for name, value in items:
        if name.lower() == "content-length":
            try:
                return int(value)
            except ValueError:
                return -1
    return -1  # unknown: chunked on HTTP/1.1


def _head_ended(lines: list[bytes]) -> bool:
    """Whether the last head in libcurl's header lines ended with its blank line. libcurl (8.x) reports
    a transfer whose connection closed inside the head as a success, with the head cut short; http.client
    and h11 raise for it, and so do we (``_cut_head``). Scans back from the end: O(1) for a whole head."""
    for i in range(len(lines) - 1, -1, -1):
        line = lines[i]
        if line[:5] == b"HTTP/":
            return False
        if not line.rstrip(b"\r\n"):
            return True
    return True  # no line at all: parse_head's own "no HTTP status line" error applies


def _cut_head(t: _Transfer) -> ProtocolError:
    """The error for a connection closed before the response head ended (see ``_head_ended``). It
    carries CURLE_PARTIAL_FILE (data missing at the close), which the adapters map as stock does:
    requests ``ChunkedEncodingError``, httpx ``RemoteProtocolError``."""
    r = t.request
    url = redact_url(r.url)
    return ProtocolError(f"{r.method} {url}: connection closed before the end of the response head",
                         url=url, curl_code=pycurl.E_PARTIAL_FILE)


def _local_error(t: _Transfer, exc: BaseException) -> BaseException:
    """Errors raised by our own code for one transfer: ours pass through, with the URL when missing."""
    if isinstance(exc, ProtocolError) and exc.url is None:
        r = t.request
        new = ProtocolError(f"{r.method} {redact_url(r.url)}: {exc}", url=redact_url(r.url))
        new.__cause__ = exc
        return new
    if isinstance(exc, (OCITransportError, TypeError, ValueError)):
        return exc
    if isinstance(exc, (UnicodeEncodeError, pycurl.error)):
        r = t.request
        from .exceptions import InvalidURL

        invalid = InvalidURL(f"{r.method} {redact_url(r.url)}: {exc}", url=redact_url(r.url))
        invalid.__cause__ = exc
        return invalid
    return exc


def _default_user_agent() -> str:
    from . import __version__

    return f"ocitransport/{__version__}"
