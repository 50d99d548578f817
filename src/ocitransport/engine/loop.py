"""``Engine``: one CurlMulti, the requests queued for it, and the drive loop.

Whoever waits for a result drives the multi handle (``perform()`` + ``select()``) until that result is in,
completing everybody else's transfers on the way; one lazily started loop thread serves only work nobody
drives (asyncio requests, futures left alone). docs/architecture.md gives the reasons.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import hashlib
import io
import logging
import os
import select
import threading
import time
import weakref
from typing import Any

import pycurl

from .._curl_errors import E_TOO_LARGE, error_from_curl
from .._heads import parse_head
from .._redaction import redact_url
from ..exceptions import (
    ClientClosed,
    PoolTimeout,
    ProtocolError,
    ReadTimeout,
    RequestCancelled,
    TransportError,
    WriteTimeout,
)
from ..messages import DEFAULT_TIMEOUT, Headers, Request, Response, Timeout
from ..roundtrip import FlowFuture, RoundTripper
from .future import EngineFuture
from .options import SEND_BUFFER, HandleOptions, _Handle, _rate, _timing
from .stream import BodyStream
from .transfer import (
    _ACTIVE,
    _ASYNC,
    _BUFFERED,
    _CANCEL,
    _FINISHED,
    _FUTURE,
    _INF,
    _QUEUED,
    _SINK,
    _STREAM,
    _SYNC,
    _UNPAUSE,
    Group,
    _call_soon,
    _LazyDigest,
    _local_error,
    _nudge_one,
    _resolve,
    _Transfer,
)
from .uploads import _AsyncUpload, _BytesReader, _declared_length, _IterReader, _PendingAsync

log = logging.getLogger("ocitransport")

#: Longest select() when curl has no timer: also bounds how long a socket curl_multi_fdset could not
#: report (fd >= 1024) waits.
MAX_WAIT = 0.25
#: The largest response head (status line and every header) accepted, and the largest single header
#: line: libcurl's own limits (since 8.3, CVE-2023-38039), reported as ``ProtocolError`` naming them.
#: A server sending more (say 10 MiB of headers) costs at most this much memory before the transfer fails.
MAX_RESPONSE_HEAD = 300 << 10
MAX_RESPONSE_HEAD_LINE = 100 << 10
#: How often the driver checks transfers against their limits (the precision of ``Timeout.first_byte``,
#: ``stall`` and ``min_rate``).
STALL_CHECK = 0.25
#: A thread blocked behind another driver re-checks after this long (a safety net, not a poll).
BLOCK_RECHECK = 1.0

# Loop thread states.
_IDLE, _GRACE, _AWAKE, _DRIVING = 0, 1, 2, 3
#: How long the loop thread leaves futures to their owners' result() before driving them itself.
GRACE = 0.002


class Engine(HandleOptions, RoundTripper):
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
        self._proxy = proxy
        self._free: list[_Handle] = []
        # Prepared HTTPHEADER lists by header items, without and with a request body (_header_list).
        self._header_lists: tuple[dict[tuple[Any, ...], list[str | bytes]], ...] = ({}, {})
        self._active: dict[pycurl.Curl, _Transfer] = {}
        self._inbox: collections.deque[_Transfer] = collections.deque()
        self._control: collections.deque[tuple[int, _Transfer, Any]] = collections.deque()
        # Streaming transfers in flight whose final head is not complete yet (driver only).
        self._heading: dict[_Transfer, None] = {}
        self._touched: list[BodyStream] = []
        self._wakes: list[Any] = []  # blockers of sync waiters to release at the end of the turn
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
        connect = ext.get("connect_timeout") if ext else None
        if connect is not None and (timeout.connect is None or connect < timeout.connect):
            # A shorter connect limit for this request only (the ping's HTTPS probe); the rest as set.
            timeout = dataclasses.replace(timeout, connect=connect)
        t.timeout = timeout
        if timeout.stall is not None or timeout.first_byte is not None:
            t.limits = timeout
        if timeout.pool is not None:
            t.pool_deadline = t.started + timeout.pool
        return t

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

    def unpause(self, t: _Transfer) -> None:
        """Queue a resume for the driver (curl_easy_pause must be called there)."""
        self._control.append((_UNPAUSE, t, None))
        if self._in_select:
            self._poke()
        self._ensure_driver()

    def touched(self, stream: BodyStream) -> None:
        """Driver thread: ``stream`` got data or ended; its reader is woken after this turn."""
        self._touched.append(stream)

    def watch_async(self, stream: BodyStream) -> None:
        """An async reader awaits ``stream``: keep a driver going until it is touched."""
        self._blocked_async.add(stream)
        self._ensure_driver()

    def unwatch_async(self, stream: BodyStream) -> None:
        self._blocked_async.discard(stream)

    def cancel(self, t: _Transfer, exc: BaseException | None) -> None:
        """Cancel a transfer: applied at once if no other thread drives, else by the driver."""
        if t.state == _FINISHED:
            return
        self._control.append((_CANCEL, t, exc))
        lock = self._drive_lock
        if self._driver == threading.get_ident() and not self._in_curl:
            self._run_control()
            self._flush_wakes()
        elif not self._closed and lock.acquire(False):
            self._driver = threading.get_ident()
            try:
                self._run_control()
                self._flush_wakes()
            finally:
                self._driver = None
                lock.release()
            self._after_release()
        else:
            if self._in_select:
                self._poke()
            self._ensure_driver()

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
            self.wait(t, None)
        except BaseException:
            self.cancel(t, None)
            raise
        if t.error is not None:
            raise t.error
        return t.result  # type: ignore[return-value]

    def submit(self, request: Request, *, waiter: Group | None = None) -> EngineFuture:
        """Send one request; the future completes when the response (head, if streaming) is in.

        With a ``waiter`` (a ``Group`` of this engine), its owner drives: ``wait(waiter)`` returns on
        each completion and the loop thread leaves the transfer alone; ``future.result()`` drives too.
        """
        return EngineFuture(self if waiter is None else waiter, request)

    def start_hop(self, request: Request, flow: FlowFuture[Any], *, waiter: Group | None = None) -> _Transfer:
        """``roundtrip.Hops``: send one request of ``flow``, settled through ``flow._settle`` (driver thread)."""
        t = self._transfer(request, _FUTURE)
        t.future = flow
        if waiter is None:
            t.passive = _FUTURE
            self._passive_futures.append(None)
        else:
            t.waiter = waiter
        self._enqueue(t)
        if waiter is None:
            self._ensure_driver()
        return t

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
            self.cancel(t, None)
            if t.upload is not None and t.upload.task is not None:
                t.upload.task.cancel()
            raise
        if t.upload is not None and t.upload.task is not None and not t.upload.task.done():
            t.upload.task.cancel()
        if t.error is not None:
            raise t.error
        return t.result  # type: ignore[return-value]

    # -------------------------------------------------------------------------------------- waiting

    def wait(self, w: Any, timeout: float | None) -> bool:
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
        elif (self._passive_async or self._blocked_async or self._control or self._abatch
              or (self._passive_futures and self._loop_state == _IDLE)):
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
        if self._wakes:
            self._flush_wakes()
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
            if t.limits is not None:
                t.progress_at = time.monotonic()
                t.progress = -1
                t.head_wait = t.window_at = 0.0
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
        """Fail transfers that broke one of their ``Timeout`` limits, naming it.

        Each transfer is in one of three phases: not started (queued for a connection, connecting: the
        ``connect`` limit is libcurl's), waiting for the response head (the whole request went out:
        ``first_byte``), or moving a body either way (the request body going out, or the response from
        its first head byte on: ``stall`` and ``min_rate``). libcurl's own low-speed check averages over
        up to ~5 s of samples, cannot tell the phases apart and names nothing, so it is not used; this
        check runs every ``STALL_CHECK`` s while the engine is driven. Transfers we paused ourselves (a
        slow consumer, an empty async body source) or that nobody drove for a while (a slow ``map``
        consumer, an unread sync stream) start their clocks afresh.
        """
        undriven = now - self._stall_check > STALL_CHECK
        self._stall_check = now + STALL_CHECK
        failed: list[tuple[_Transfer, BaseException]] = []
        for curl, t in self._active.items():
            limits = t.limits
            if limits is None:
                continue
            try:
                down = curl.getinfo(pycurl.SIZE_DOWNLOAD_T)
                up = curl.getinfo(pycurl.SIZE_UPLOAD_T)
                head = curl.getinfo(pycurl.HEADER_SIZE)
            except pycurl.error:
                continue
            moved = down + up + head
            paused = (t.stream is not None and t.stream._paused) or (
                t.upload is not None and t.upload.paused)
            if paused or undriven:
                t.progress, t.progress_at, t.head_wait, t.window_at = moved, now, 0.0, 0.0
                continue
            sending = t.reader is not None and not t.sent_all and not 0 <= t.body_size <= up
            if not head and not t.head_wait:
                try:
                    started = curl.getinfo(pycurl.PRETRANSFER_TIME) > 0.0
                except pycurl.error:
                    started = False
                if not started:  # queued for a connection or connecting: the connect limit's business
                    t.progress, t.progress_at = moved, now
                    continue
            if not head and not sending:
                t.progress, t.progress_at, t.window_at = moved, now, 0.0
                if not t.head_wait:  # the request went out whole: the head clock starts
                    t.head_wait = now
                    continue
                wait = limits.head_limit
                if wait is not None and now - t.head_wait >= wait:
                    failed.append((t, self._limit_error(
                        t, ReadTimeout, f"no response within {wait:g} s of sending the request "
                                        f"(Timeout.first_byte)")))
                continue
            t.head_wait = 0.0
            stall = limits.stall
            if stall is None:
                continue
            kind = WriteTimeout if sending else ReadTimeout
            if moved != t.progress:
                t.progress = moved
                t.progress_at = now
            elif now - t.progress_at >= stall:
                failed.append((t, self._limit_error(
                    t, kind, f"no data received or sent for {stall:g} s (stall timeout, Timeout.stall)")))
                continue
            rate = limits.min_rate
            if not rate:
                continue
            if not t.window_at:
                t.window_at, t.window_bytes = now, moved
            elif now - t.window_at >= limits.rate_period:
                got, spent = moved - t.window_bytes, now - t.window_at
                if got < rate * spent:
                    verb = "sent" if sending else "received"
                    failed.append((t, self._limit_error(
                        t, kind, f"{verb} {got} bytes in {spent:.0f} s, below the minimum rate of "
                                 f"{_rate(rate)} (Timeout.min_rate)")))
                    continue
                t.window_at, t.window_bytes = now, moved
        for t, exc in failed:
            self._do_cancel(t, exc)

    @staticmethod
    def _limit_error(t: _Transfer, kind: type[TransportError], what: str) -> TransportError:
        r = t.request
        url = redact_url(r.url)
        return kind(f"{r.method} {url}: {what}", url=url, curl_code=pycurl.E_OPERATION_TIMEDOUT)

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
            if error is None and t.refused is not None and code in (pycurl.E_COULDNT_CONNECT,
                                                                    pycurl.E_ABORTED_BY_CALLBACK):
                error = _refused(t)
            elif error is None and code:
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
        if ext and ext.get("primary_ip") is True:
            t.primary_ip = curl.getinfo(pycurl.PRIMARY_IP)
        if ext and ext.get("timing"):
            timing = _timing(curl)
            if result is not None:
                result.extensions["timing"] = timing
            elif t.result is not None:  # a stream's response went out with its head
                t.result.extensions["timing"] = timing
            else:  # a stream whose head goes out after its end (see _response)
                t.timing = timing
        self._release(h, t)
        if t.mode == _STREAM:
            self._complete_stream(t, error, timing)
        else:
            self._finish(t, result, error)

    def _complete_stream(self, t: _Transfer, error: BaseException | None,
                         timing: dict[str, float | int] | None = None) -> None:
        stream = t.stream
        assert stream is not None
        # ``t.ready``: the head went out in an earlier turn (its response is the caller's already).
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
            # Name the limit (libcurl enforces these two; the engine's own say so themselves).
            limit = t.timeout.connect if phase == "connect" else t.timeout.total
            message = f"{message} ({'Timeout.connect' if phase == 'connect' else 'Timeout.total'}" + (
                f" {limit:g} s)" if limit is not None else ")")
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
        if request.extensions and request.extensions.get("primary_ip") is True:  # for an SSRF guard
            r.extensions["primary_ip"] = (t.primary_ip if t.handle is None
                                          else t.handle.curl.getinfo(pycurl.PRIMARY_IP))
        if t.mode == _STREAM and request.extensions and request.extensions.get("timing"):
            # A stream's connection count is known at its head (its full timing replaces this at its end,
            # which a stream closed early never reaches): the mirror report counts connections so.
            r.extensions["timing"] = (t.timing or {}) if t.handle is None else {
                "new_connections": t.handle.curl.getinfo(pycurl.NUM_CONNECTS)}
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
        if w is None:
            w = t
        else:
            t.ready = True
            w.count += 1
        w.ready = True
        b = w.blocker
        if b is not None:
            # Released at the end of this engine turn (_flush_wakes), all together: a thread woken now
            # would only wait for the GIL while the driver completes the rest of the turn.
            w.blocker = None
            self._wakes.append(b)
        self._blocked.discard(w)

    def _flush_wakes(self) -> None:
        """Release the sync waiters whose results came in this turn."""
        wakes = self._wakes
        self._wakes = []
        for b in wakes:
            try:
                b.release()
            except RuntimeError:
                pass

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
        if not t.ready:
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
        self._flush_wakes()
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


def _refused(t: _Transfer) -> BaseException:
    """The SSRF guard's refusal of ``t``'s address as the one clear, typed error (never retried)."""
    from .._urls import address_kind
    from ..exceptions import AddressRefused

    guard = t.request.extensions["address_guard"]
    reason = t.refused or ""
    address = reason.partition(",")[0]
    return AddressRefused(guard.message(redact_url(t.request.url), reason), address=address,
                          kind=address_kind(address))


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
