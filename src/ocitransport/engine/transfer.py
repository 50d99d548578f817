"""One request on its way through the engine (``_Transfer``), the waiters that wait for transfers, and
the small constants and helpers every engine module shares.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pycurl

from .._heads import is_interim
from .._redaction import redact_url
from ..exceptions import OCITransportError, ProtocolError
from ..messages import DEFAULT_TIMEOUT, Request, Response, Timeout

if TYPE_CHECKING:
    from ..roundtrip import FlowFuture
    from .loop import Engine
    from .options import _Handle
    from .stream import BodyStream
    from .uploads import _AsyncUpload

_BLANKS = ("Expect:", "Accept:")  # no "Expect: 100-continue" round trip, no default "Accept: */*"
_BLANK_LIST: list[str | bytes] = list(_BLANKS)
_INF = math.inf

# Transfer kinds: how the result goes back.
_SYNC = 0  # a thread waits (request(), map()): flag + lock
_FUTURE = 1  # submit(): an EngineFuture
_ASYNC = 2  # an asyncio future on the caller's loop

# Transfer states.
_QUEUED, _ACTIVE, _FINISHED = 0, 1, 2

# Body modes.
_BUFFERED, _STREAM, _SINK = 0, 1, 2

# Control operations applied by the driver.
_CANCEL, _UNPAUSE = 0, 1


class Group:
    """A waiter for several transfers (``Client.map``): ``ready`` when any completed; ``count`` completions.

    Futures from ``Engine.submit(request, waiter=group)`` and flows run with ``drive_future(steps, group)``
    wake it; its owner drives with ``Engine.wait(group, timeout)``, the loop thread leaves them alone.
    """

    __slots__ = ("blocker", "count", "engine", "ready", "redirects")

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.ready = False
        self.blocker: Any = None
        self.count = 0  # transfers finished; written by the driver only
        self.redirects = 0  # hops after the first started by flows (``drive_future``); driver only

    # ``roundtrip.Hops``: flows whose hops wake this group.
    def start_hop(self, request: Request, flow: FlowFuture[Any]) -> _Transfer:
        if flow.hops > 1:
            self.redirects += 1
        return self.engine.start_hop(request, flow, waiter=self)

    def wait(self, hop: Any, timeout: float | None) -> bool:
        return self.engine.wait(hop, timeout)

    def cancel(self, hop: Any, error: BaseException | None) -> None:
        self.engine.cancel(hop, error)


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
        "head_wait",
        "header_list",
        "kind",
        "limits",
        "lines",
        "mode",
        "passive",
        "pool_deadline",
        "progress",
        "primary_ip",
        "timing",
        "progress_at",
        "reader",
        "ready",
        "refused",
        "request",
        "result",
        "sent_all",
        "sink",
        "started",
        "state",
        "stream",
        "timeout",
        "upload",
        "waiter",
        "window_at",
        "window_bytes",
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
        self.future: FlowFuture[Any] | None = None
        self.aloop: asyncio.AbstractEventLoop | None = None
        self.afut: asyncio.Future[Any] | None = None
        self.started = 0.0
        self.reader: Any = None
        self.upload: _AsyncUpload | None = None
        self.passive = 0  # _FUTURE or _ASYNC: holds a token in that passive deque until finished
        self.pool_deadline = _INF
        self.header_list: list[str | bytes] = _BLANK_LIST
        self.body_size = -1
        self.sent_all = False
        self.digest: Any = None
        self.timeout: Timeout = DEFAULT_TIMEOUT  # the limits in force (set by Engine._transfer)
        self.limits: Timeout | None = None  # ... when _check_stalls has something to watch
        self.progress = -1  # bytes moved either way (head included) when last seen to move
        self.progress_at = 0.0
        self.refused: str | None = None  # why the SSRF guard refused an address (see _set_guard)
        self.head_wait = 0.0  # when the request was seen sent whole and the head not begun; 0: not
        self.window_at = 0.0  # start of the current min_rate window; 0: none open
        self.window_bytes = 0
        self.primary_ip = ""  # the connected address, kept for a stream head delivered after release
        self.timing: dict[str, float | int] | None = None  # likewise libcurl's timing, when asked for

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
                if is_interim(lines[self.head_start]):  # the status line, by parse_head's rules
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
        from ..exceptions import InvalidURL

        invalid = InvalidURL(f"{r.method} {redact_url(r.url)}: {exc}", url=redact_url(r.url))
        invalid.__cause__ = exc
        return invalid
    return exc


class _LazyDigestType:
    """Marker: digest a buffered body once, at the end (same result as incremental, less work)."""

    def update(self, data: bytes) -> None:  # pragma: no cover
        raise AssertionError


_LazyDigest: Any = _LazyDigestType()


def _resolve(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_result(None)


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:  # the loop is closed: nobody is waiting any more
        pass
