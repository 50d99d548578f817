"""Request bodies going out: READFUNCTION/SEEKFUNCTION readers over bytes, files, iterators and async
iterators (the last through a bounded queue pumped on the caller's event loop).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import io
from collections.abc import AsyncIterable, Iterable
from typing import TYPE_CHECKING, Any

import pycurl

from .._numbers import header_number
from .transfer import _FINISHED, _call_soon, _resolve

if TYPE_CHECKING:
    from .driver import Driver
    from .transfer import _Transfer

#: Async request bodies: the pump stops reading the source above this many queued bytes ...
UPLOAD_HIGH_WATER = 4 << 20
#: ... and goes on once libcurl has taken the queue down to this many.
UPLOAD_LOW_WATER = 1 << 20


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

    def __init__(self, engine: Driver, transfer: _Transfer, loop: asyncio.AbstractEventLoop,
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
            self.engine.cancel(self.transfer, exc)
            return
        self.eof = True
        self._resume()

    def _resume(self) -> None:
        if self.paused:
            self.paused = False
            self.engine.unpause(self.transfer)

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


class _PendingAsync:
    __slots__ = ("digest", "source")

    def __init__(self, source: AsyncIterable[bytes], digest: Any) -> None:
        self.source = source
        self.digest = digest

    def read(self, size: int) -> Any:  # pragma: no cover - only reachable from a sync face
        return pycurl.READFUNC_ABORT


def _declared_length(items: list[tuple[str, str]]) -> int:
    for name, value in items:
        if name.lower() == "content-length":
            length = header_number(value)
            return -1 if length is None else length
    return -1  # unknown: chunked on HTTP/1.1
