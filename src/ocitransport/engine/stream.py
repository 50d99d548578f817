"""``BodyStream``: a response body still arriving, with back-pressure on the transfer."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import TYPE_CHECKING, Any

import pycurl

from ..exceptions import RequestCancelled

if TYPE_CHECKING:
    from .driver import Driver
    from .transfer import _Transfer

__all__ = ["HIGH_WATER", "LOW_WATER", "BodyStream"]

#: Streaming response bodies pause the transfer above this many buffered bytes ...
HIGH_WATER = 4 << 20
#: ... and resume it once the consumer has drained the buffer to this many.
LOW_WATER = 1 << 20


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

    def __init__(self, engine: Driver, transfer: _Transfer) -> None:
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
            self._engine.touched(self)
        return None

    def _finish(self, error: BaseException | None) -> None:
        self._error = error
        self._eof = True
        # The transfer is over: drop the stream -> transfer -> response -> stream cycle, so a
        # finished response is freed by reference counting, not left to the cyclic GC.
        self._transfer = None
        if not self.ready:
            self.ready = True
        self._engine.touched(self)

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
                raise RequestCancelled("the response stream was closed") from None
            raise
        self._consumed += len(data)
        if self._paused and self._received - self._consumed <= LOW_WATER:
            self._paused = False
            t = self._transfer
            if t is not None:
                self._engine.unpause(t)
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
            self._engine.wait(self, None)

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
            engine.watch_async(self)
            try:
                await fut
            finally:
                engine.unwatch_async(self)
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
            self._engine.cancel(t, None)

    def __del__(self) -> None:
        if not self._closed and not self._eof:
            with contextlib.suppress(Exception):  # interpreter shutdown
                self.close()
