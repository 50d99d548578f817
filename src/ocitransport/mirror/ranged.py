"""Parallel ranged downloads of a large blob, handed to the upload in order.

Object stores and CDNs cap the rate of one stream (tens of MiB/s), and far away one stream also waits a
round trip per window. A blob of at least :data:`RANGED_THRESHOLD` bytes is therefore read as parts of
:data:`RANGED_PART` bytes, :data:`RANGED_STREAMS` ``GET``\\ s with ``Range: bytes=A-B`` (RFC 9110 section
14.2) in flight at a time, and the parts are handed on strictly in order: at most ``RANGED_STREAMS``
parts are held (bounded memory), the digest is checked as before by the transfer that reads them
(mirror/blobs.py), a part cut mid-way is asked for again from its first missing byte, and a source that
ignores ``Range`` (``200`` to a ranged request) gets the single stream of :class:`~.blobs._Source`
from there on. A ``Content-Range`` whose total is not the blob's size (the blob changed, or is not
what the manifest says) stops the transfer with :class:`~.blobs.SizeMismatch`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import transport
from .._numbers import parse_number
from ..exceptions import OCITransportError
from ..messages import Request
from .session import MirrorError, SizeMismatch, _check_blob_answer

if TYPE_CHECKING:
    from .blobs import _BlobTransfer, _Source

log = logging.getLogger("ocitransport.mirror")

#: Blobs at least this large are read in ranged parts.
RANGED_THRESHOLD = 32 << 20
#: Bytes per ranged part.
RANGED_PART = 8 << 20
#: Ranged parts in flight (and held) at a time per blob: memory per blob is at most this times the part.
RANGED_STREAMS = 8


#: Bytes handed to the upload at a time.
_PIECE = 1 << 20


class _NoRange(Exception):
    """The source answered a ranged request with the whole blob (``200``)."""


def _content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """``Content-Range: bytes FIRST-LAST/TOTAL`` as ``(first, last, total)`` (total ``None`` for ``*``)."""
    if not value:
        return None
    unit, _, spec = value.strip().partition(" ")
    span, _, total_text = spec.partition("/")
    first_text, _, last_text = span.partition("-")
    first, last = parse_number(first_text.strip()), parse_number(last_text.strip())
    if unit.lower() != "bytes" or first is None or last is None:
        return None
    total = None if total_text.strip() == "*" else parse_number(total_text.strip())
    return first, last, total


class RangedSource:
    """The source blob as ordered bytes from parallel ranged parts (the interface of ``_Source``:
    ``start``, ``read``, ``aclose``, ``failed``); falls back to ``fallback`` (a ``_Source``) when the
    source ignores ``Range``."""

    def __init__(self, transfer: _BlobTransfer, fallback: _Source, *, part: int = RANGED_PART,
                 streams: int = RANGED_STREAMS) -> None:
        self.transfer = transfer
        self.blob = transfer.blob
        self.fallback = fallback
        self.part = max(part, 1)
        self.streams = max(streams, 1)
        self.parts: dict[int, asyncio.Task[bytearray]] = {}
        self.ranged = True
        self.failed: OCITransportError | None = None

    @property
    def count(self) -> int:
        return -(-self.blob.size // self.part)

    async def start(self) -> None:
        """The first part's answer: status, range and total known before an upload session is opened."""
        try:
            await self._part(0)
        except _NoRange:
            await self._fall_back()
            await self.fallback.start()

    async def _fall_back(self) -> None:
        log.info("%s: the source ignores Range; one stream instead of ranged parts", self.blob.digest)
        self.ranged = False
        await self._cancel_parts()

    def _ensure(self, first: int) -> None:
        """Parts ``first`` .. ``first + streams - 1`` requested (older ones are dropped by the reader)."""
        for idx in range(first, min(first + self.streams, self.count)):
            if idx not in self.parts:
                self.parts[idx] = asyncio.ensure_future(self._fetch(idx))

    async def _part(self, idx: int) -> bytearray:
        self._ensure(idx)
        task = self.parts[idx]
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():
                task.cancel()
            raise

    async def read(self, start: int, end: int) -> AsyncGenerator[bytes, None]:
        """Yield the blob's bytes ``[start, end)``, in order."""
        pos = start
        while pos < end:
            if not self.ranged:
                async for piece in self.fallback.read(pos, end):
                    yield piece
                return
            idx = pos // self.part
            try:
                data = await self._part(idx)
            except _NoRange:
                await self._fall_back()
                continue
            for old in [i for i in self.parts if i < idx]:  # bounded: only the window is kept
                self.parts.pop(old).cancel()
            offset = pos - idx * self.part
            # Handed on in pieces of at most _PIECE bytes: one copy of a piece at a time, not of a part.
            piece = bytes(memoryview(data)[offset:offset + min(end - pos, _PIECE)])
            pos += len(piece)
            if pos >= (idx + 1) * self.part or pos >= self.blob.size:
                self.parts.pop(idx, None)
            yield piece

    async def _fetch(self, idx: int) -> bytearray:
        """Part ``idx``, asked for again from its first missing byte after a break (at most ``retries``
        breaks in a row without progress)."""
        t = self.transfer
        first = idx * self.part
        last = min(first + self.part, self.blob.size) - 1
        want = last - first + 1
        got = bytearray()
        failures = 0
        while True:
            have = len(got)
            try:
                await self._get(first + have, last, got)
            except OCITransportError as exc:
                if isinstance(exc, MirrorError) or not transport.is_retryable(exc):
                    self.failed = exc
                    raise
                if len(got) > have:
                    failures = 0
                failures += 1
                if failures > t.owner.retries:
                    self.failed = exc
                    raise
                t.session.retries += 1
                t.stats.downloads_resumed += 1
                log.info("ranged GET of %s bytes %d-%d broke at %d (%s); asking again", self.blob.digest,
                         first, last, first + len(got), exc)
                await asyncio.sleep(t.session.backoff.delay(failures - 1))
                continue
            if len(got) == want:
                return got  # not copied: a part is held once
            # The answer ended early without an error: a cut the transport did not see.
            failures += 1
            if failures > t.owner.retries:

                self.failed = SizeMismatch(f"{self.blob.digest}: source sent {len(got)} of bytes {first}-{last} "
                                           f"of {self.blob.size}")
                raise self.failed

    async def _get(self, first: int, last: int, into: bytearray) -> None:

        t = self.transfer
        session = t.session
        pull = await session.pull(t.src)
        url = session.url(t.src, "blobs", self.blob.digest)
        response = await session._follow(pull, t.src, Request("GET", url, {"Range": f"bytes={first}-{last}"},
                                                             stream=True))
        try:
            if response.status == 200:
                raise _NoRange
            if response.status == 416:
                raise SizeMismatch(f"{self.blob.digest}: source refused bytes {first}-{last} (416): it holds "
                                   f"fewer than the {self.blob.size} bytes the manifest declares")
            if response.status != 206:
                await _check_blob_answer(response, url)
                raise MirrorError(f"{t.src.name}: GET {self.blob.digest} bytes {first}-{last} answered "
                                  f"{response.status}")
            span = _content_range(response.headers.get("Content-Range"))
            if span is None or span[0] != first or span[1] > last:
                raise MirrorError(f"{t.src.name}: GET {self.blob.digest} bytes {first}-{last} answered "
                                  f"Content-Range {response.headers.get('Content-Range')!r}")
            if span[2] is not None and span[2] != self.blob.size:
                raise SizeMismatch(f"{self.blob.digest}: source holds {span[2]} bytes, the manifest declares "
                                   f"{self.blob.size}")
            room = last - first + 1
            async for chunk in response.aiter_bytes():
                t.stats.bytes_downloaded += len(chunk)
                if len(chunk) > room:
                    raise SizeMismatch(f"{self.blob.digest}: source sent more than bytes {first}-{last}")
                room -= len(chunk)
                into += chunk
        finally:
            response.close()

    async def _cancel_parts(self) -> None:
        tasks = list(self.parts.values())
        self.parts.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def aclose(self) -> None:
        """Cancel parts in flight and close the fallback stream."""
        try:
            await self._cancel_parts()
        finally:
            await self.fallback.aclose()


@dataclass(frozen=True)
class RangedSettings:
    """When and how blobs are read in ranged parts (defaults: the module constants; ``threshold`` 0: never)."""

    threshold: int = RANGED_THRESHOLD
    part: int = RANGED_PART
    streams: int = RANGED_STREAMS


_current = RangedSettings()


def use(settings: RangedSettings) -> RangedSettings:
    """Put ``settings`` in force for this process; the previous ones (as ``limits.use``)."""
    global _current
    previous, _current = _current, settings
    return previous


def ranged_for(transfer: _BlobTransfer, fallback: _Source) -> RangedSource | None:
    """A :class:`RangedSource` for ``transfer`` when its blob is large enough (and ranged reads are on)."""
    settings = _current
    if settings.threshold <= 0 or transfer.blob.size < settings.threshold or \
            not transfer.session.supports_ranges(transfer.src):
        return None
    return RangedSource(transfer, fallback, part=settings.part, streams=settings.streams)


__all__ = ["RANGED_PART", "RANGED_STREAMS", "RANGED_THRESHOLD", "RangedSettings", "RangedSource", "ranged_for", "use"]
