"""Placing blobs at the destination: skip what is there, mount what the registry already has elsewhere,
stream the rest from the source GET into the destination upload, digest verified on the way.

Large blobs go up in chunks (``PATCH`` with ``Content-Range``, then ``PUT ?digest=``), and a transfer
that breaks part-way resumes instead of starting over: the registry is asked how much of the upload it
holds (``GET <upload>`` -> ``Range: 0-N``), the source is read again from there (``GET`` with
``Range: bytes=N+1-``), and the sha256 of the whole blob stays right because hash states are kept at
chunk boundaries (the bytes between the nearest one and the registry's offset are re-read and hashed,
not re-sent).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, fields
from typing import Any, Literal

from .. import transport
from .._numbers import header_number, parse_number
from ..exceptions import OCITransportError
from ..messages import Response
from ..name import Repository
from ..roundtrip import RoundTripper
from .manifests import Descriptor
from .ranged import RangedSource, ranged_for
from .session import MAX_BACKOFF as MAX_BACKOFF  # the cap of the run's backoff (was defined here)
from .session import DigestMismatch, MirrorError, Session, SizeMismatch, Upload

log = logging.getLogger("ocitransport.mirror")
#: Retries, one INFO record each as it happens (the command line shows them without -v).
retry_log = logging.getLogger("ocitransport.retry")

Outcome = Literal["transferred", "mounted", "skipped"]

#: Blobs larger than this are uploaded in chunks (resumable at chunk granularity at least).
CHUNK_THRESHOLD = 64 << 20
#: Bytes per ``PATCH`` of a chunked upload (raised to the registry's ``OCI-Chunk-Min-Length``).
CHUNK_SIZE = 16 << 20


@dataclass
class TransferStats:
    """What moved for blobs streamed from a source into a destination, re-sends and re-reads included.

    ``bytes_uploaded`` vs ``blob_bytes`` shows what resuming saved: after a break only the bytes the
    registry did not hold yet are sent again.
    """

    blobs: int = 0              #: blobs streamed (not skipped, not mounted)
    blob_bytes: int = 0         #: their total size
    bytes_uploaded: int = 0     #: request-body bytes handed to the destination
    bytes_downloaded: int = 0   #: response-body bytes received from the source
    uploads_resumed: int = 0    #: uploads continued from the registry's offset after a failure
    uploads_restarted: int = 0  #: uploads started over in a new session (the old one was gone)
    downloads_resumed: int = 0  #: broken source GETs continued with ``Range``

    def add(self, other: TransferStats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


def _resumable(exc: OCITransportError) -> bool:
    """Worth asking the registry where the upload stands: a broken connection or a temporary error, an
    upload it no longer knows (404), an offset it disagrees with (416), or a token that died while the
    body was on its way (401: a streamed body cannot be replayed by the Bearer layer, which drops the
    rejected token so that the resumed attempt fetches a new one)."""
    if isinstance(exc, transport.Error) and exc.status_code in (401, 404, 416):
        return True
    return transport.is_retryable(exc)


class BlobCopy:
    """Puts blobs into destination repositories, once per ``(registry, digest)`` at a time.

    * ``HEAD`` at the destination first: present -> ``skipped``.
    * Cross-repository mount when the source is on the destination registry, or when this run already
      placed the digest in another repository of the destination registry: 201 -> ``mounted``.
    * Otherwise the source GET streams into the upload: one ``PUT ?digest=`` up to ``chunk_threshold``
      bytes, ``PATCH`` requests of ``chunk_size`` bytes (at least the registry's
      ``OCI-Chunk-Min-Length``) then an empty ``PUT ?digest=`` above it. Memory is bounded by the
      engine's buffers (a few MiB per transfer), no temporary files. The sha256 and size of what flows
      are checked before the last byte goes out; on a mismatch the upload is aborted, never completed.
    * A broken upload resumes from what the registry holds, a broken source GET from where it stopped
      (``Range``); a fresh upload is started only when the registry has dropped the old one. At most
      ``retries`` failures in a row without progress, with backoff.
    * A second request for a digest already being placed on the same registry waits for the first,
      then skips (same repository) or mounts from where it landed.

    ``transfers`` bounds concurrent streamed uploads; ``on_bytes`` hears the progress of every streamed
    blob (bytes sent again after a break are not counted twice). ``stats`` totals what moved,
    ``blob_stats`` the same per digest.
    """

    def __init__(self, session: Session, *, transfers: int = 8, retries: int = 3,
                 on_bytes: Callable[[int], None] | None = None, chunk_threshold: int = CHUNK_THRESHOLD,
                 chunk_size: int = CHUNK_SIZE) -> None:
        if chunk_size < 1:
            raise ValueError("chunk_size must be greater than zero")
        self.session = session
        self.slots = asyncio.Semaphore(max(transfers, 1))
        self.retries = max(retries, 0)
        self.on_bytes = on_bytes
        self.chunk_threshold = max(chunk_threshold, 0)
        self.chunk_size = chunk_size
        self.stats = TransferStats()
        self.blob_stats: dict[str, TransferStats] = {}
        #: (registry name, digest) -> repository paths of that registry known to hold it in this run.
        self.placed: dict[tuple[str, str], list[str]] = {}
        self._inflight: dict[tuple[str, str], asyncio.Future[None]] = {}
        #: Transfers whose upload session is open (cancelled by :meth:`cancel_open` if left so).
        self._open: set[_BlobTransfer] = set()

    async def ensure(self, src: Repository, dst: Repository, blob: Descriptor) -> tuple[Outcome, int]:
        """Make ``dst`` hold ``blob`` (read from ``src`` if needed); the outcome and bytes transferred."""
        key = (dst.registry.name, blob.digest)
        while True:
            holders = self.placed.get(key, ())
            if dst.path in holders:
                return "skipped", 0
            pending = self._inflight.get(key)
            if pending is None:
                break
            await asyncio.shield(pending)
        fut = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            with transport.retry_lane(f"{dst.name}@{blob.digest}"):  # its own budget lane (shared POST URL)
                outcome, size = await self._place(src, dst, blob, list(self.placed.get(key, ())))
            self.placed.setdefault(key, []).append(dst.path)
            return outcome, size
        finally:
            del self._inflight[key]
            fut.set_result(None)

    def forget(self, dst: Repository, digests: list[str]) -> None:
        """Stop believing that ``dst`` holds ``digests`` (the registry said otherwise): the next
        :meth:`ensure` asks it again, and places the blob when it is missing."""
        for digest in digests:
            holders = self.placed.get((dst.registry.name, digest))
            if holders is not None and dst.path in holders:
                holders.remove(dst.path)

    async def _place(self, src: Repository, dst: Repository, blob: Descriptor,
                     holders: list[str]) -> tuple[Outcome, int]:
        session = self.session
        push = await session.push(dst)
        if await session.blob_exists(push, dst, blob.digest):
            return "skipped", 0
        mount_from: Repository | None = None
        if src.registry == dst.registry and src != dst:
            mount_from = src
        elif holders:
            mount_from = dst.registry.repo(holders[-1])
        if blob.size == 0 and blob.digest != _empty_digest(blob.digest):
            # Checked before anything is sent: an empty PUT would claim a digest it cannot have.
            raise DigestMismatch(f"{blob.digest}: declared size 0, but that is not the digest of empty content")
        transfer = _BlobTransfer(self, src, dst, push, blob)
        try:
            if mount_from is not None:
                rt = await session.push(dst, mount_from)
                upload = await self._begin(rt, dst, blob, mount_from)
                if upload is None:
                    log.debug("mounted %s into %s from %s", blob.digest, dst.name, mount_from.path)
                    return "mounted", 0
                transfer.rt = rt
                transfer.opened(upload)  # the refused mount opened a session: the source must answer now
            async with self.slots:
                # The source answers first (status and length checked): a blob missing or mislabelled
                # at the source never costs an upload session at the destination.
                await transfer.source.start()
                if not transfer.is_open:
                    upload = await self._begin(push, dst, blob, None)
                    assert upload is not None
                    transfer.opened(upload)
                await transfer.run()
        finally:
            self.stats.add(transfer.stats)
            self.blob_stats.setdefault(blob.digest, TransferStats()).add(transfer.stats)
            await transfer.close()
        return "transferred", blob.size

    async def _begin(self, rt: RoundTripper, dst: Repository, blob: Descriptor,
                     mount_from: Repository | None) -> Upload | None:
        """Open an upload (``None``: mounted), again after a transient failure."""
        session = self.session
        attempt = 0
        while True:
            try:
                upload = await _opened_or_cancelled(session, rt, dst, blob.digest, mount_from)
                assert upload is not None or mount_from is not None  # only a mount answers without one
                return upload
            except OCITransportError as exc:
                if attempt >= self.retries or not transport.is_retryable(exc):
                    raise
                attempt += 1
                session.retries += 1
                delay = session.backoff.delay(attempt - 1)
                retry_log.info("upload of %s to %s: retrying in %.1fs (%d/%d) after: %s", blob.digest, dst.name,
                               delay, attempt, self.retries, exc)
                await asyncio.sleep(delay)
            mount_from = None  # a mount refused once is not asked again on retries

    async def cancel_open(self) -> int:
        """Cancel (``DELETE``) every upload session this copier opened and did not finish; how many."""
        left = [t for t in self._open if t.is_open]
        self._open.clear()
        for transfer in left:
            await transfer.close()
        return len(left)


async def _opened_or_cancelled(session: Session, rt: RoundTripper, dst: Repository, digest: str,
                               mount_from: Repository | None) -> Upload | None:
    """``session.begin_upload``, safe against cancellation: when the task is cancelled while the POST
    is on its way, the POST still gets its answer, and the session it opened is cancelled (without
    this, a sibling cancelled at that moment left a session open that nobody knew the URL of)."""
    post = asyncio.ensure_future(session.begin_upload(rt, dst, digest=digest, mount_from=mount_from))
    try:
        return await asyncio.shield(post)
    except asyncio.CancelledError:
        try:
            upload = await post
        except Exception:  # noqa: BLE001 - nothing was opened
            raise asyncio.CancelledError from None
        if upload is not None:
            await session.cancel_upload(rt, upload)
        raise


def _empty_digest(digest: str) -> str:
    algorithm = digest.partition(":")[0]
    try:
        return f"{algorithm}:{hashlib.new(algorithm).hexdigest()}"
    except ValueError:
        return ""


class _BlobTransfer:
    """One blob streamed from a source repository into one destination upload, resumable.

    ``hashes`` maps offsets to the hash state of the blob's bytes before them. They describe the
    source's content, not what was sent, so any of them is a valid starting point: after a break the
    transfer goes on from the registry's offset, starting from the nearest state at or below it.
    """

    def __init__(self, owner: BlobCopy, src: Repository, dst: Repository, rt: RoundTripper,
                 blob: Descriptor) -> None:
        self.owner = owner
        self.session = owner.session
        self.src, self.dst, self.rt, self.blob = src, dst, rt, blob
        #: The upload session (valid once :meth:`opened`); ``is_open`` while it is neither finished nor
        #: cancelled.
        self.upload = Upload("")
        self.is_open = False
        self.algorithm, _, self.expected = blob.digest.partition(":")
        try:
            first = hashlib.new(self.algorithm)
        except ValueError:
            raise DigestMismatch(f"{blob.digest}: unsupported digest algorithm {self.algorithm!r}") from None
        self.hashes: dict[int, Any] = {0: first}
        self.chunked = blob.size > owner.chunk_threshold
        self.stats = TransferStats(blobs=1, blob_bytes=blob.size)
        single = _Source(self)
        # Large blobs: parallel ranged parts, in order (mirror/ranged.py); else one stream.
        self.source: _Source | RangedSource = ranged_for(self, single) or single
        self.reported = 0  # progress already told to on_bytes (a high-water mark: resumes don't count twice)

    def opened(self, upload: Upload) -> None:
        """The upload session this transfer sends into (cancelled by :meth:`close` unless finished)."""
        self.upload, self.is_open = upload, True
        self.owner._open.add(self)

    async def close(self) -> None:
        """Cancel the upload session unless it was finished, and close the source stream. Runs to its end
        even when the task is being cancelled (that is when a session is most often left open)."""
        try:
            if self.is_open:
                self.is_open = False
                self.owner._open.discard(self)
                await self.session.cancel_upload(self.rt, self.upload)
        finally:
            await self.source.aclose()

    async def run(self) -> None:
        """Send the blob, resuming after breaks; raises the last error once attempts run out (the
        caller's :meth:`close` then cancels the upload session)."""
        session = self.session
        failures = 0
        best = self.upload.offset
        recover = False
        while True:
            try:
                if recover:
                    recover = False
                    if not await self._recover():
                        break
                await self._send(self.upload)
                break
            except DigestMismatch:
                raise
            except OCITransportError as exc:
                if self.source.failed is not None:
                    raise self.source.failed from None
                if not _resumable(exc):
                    raise
                if self.upload.offset > best:
                    best, failures = self.upload.offset, 0
                failures += 1
                if failures > self.owner.retries:
                    raise
                session.retries += 1
                # The first failure after progress resumes at once (the status request has the retry
                # layer's own backoff); failures in a row back off.
                delay = session.backoff.delay(failures - 2) if failures > 1 else 0.0
                retry_log.info("upload of %s to %s broke after %d of %d bytes (%s); resuming in %.1fs",
                         self.blob.digest, self.dst.name, self.upload.offset, self.blob.size, exc, delay)
                await asyncio.sleep(delay)
                recover = True
        self.is_open = False  # finished: the registry holds the blob
        self.owner._open.discard(self)

    async def _recover(self) -> bool:
        """Where the upload stands after a failure: the registry's offset, or a new upload when the old
        one is gone. ``False`` when there is nothing left to do (the blob landed: the answer to the final
        PUT was lost)."""
        session, upload = self.session, self.upload
        if await session.upload_status(self.rt, upload) and upload.offset <= self.blob.size:
            self.stats.uploads_resumed += 1
            log.debug("upload of %s: the registry holds %d bytes", self.blob.digest, upload.offset)
        else:
            if await session.blob_exists(self.rt, self.dst, self.blob.digest):
                return False
            new = await session.begin_upload(self.rt, self.dst)
            assert new is not None
            await session.cancel_upload(self.rt, upload)  # gone by the registry's word; DELETE is harmless
            upload = self.upload = new
            self.stats.uploads_restarted += 1
            log.debug("upload of %s: the registry dropped the session, starting a new one", self.blob.digest)
        await self._hash_to(upload.offset)
        return True

    async def _send(self, upload: Upload) -> None:
        size, session = self.blob.size, self.session
        if upload.offset >= size and not self.chunked:
            # Everything is there already (a resume after the body went out but the answer got lost).
            await self._hash_to(size)
            await session.finish_upload(self.rt, upload.url, self.blob.digest, 0, b"")
            return
        if not self.chunked:
            start = upload.offset
            await session.finish_upload(self.rt, upload.url, self.blob.digest, size - start, self._body(start, size))
            return
        chunk = max(self.owner.chunk_size, upload.chunk_min)
        while upload.offset < size:
            start = upload.offset
            end = min(size, start + chunk)
            await session.upload_chunk(self.rt, upload, end - start, self._body(start, end))
            if upload.offset > size:
                raise MirrorError(f"{self.dst.name}: the registry holds {upload.offset} bytes of upload "
                                  f"{self.blob.digest} ({size} bytes)")
            await self._hash_to(upload.offset)
        await self._hash_to(size)  # verified: the digest was checked when hashing reached the end
        await session.finish_upload(self.rt, upload.url, self.blob.digest, 0, b"")

    async def _body(self, start: int, end: int) -> AsyncGenerator[bytes, None]:
        """The request body for bytes ``[start, end)``, hashed (and at the end verified) as it flows."""
        async for piece in self._hashed(start, end):
            self.stats.bytes_uploaded += len(piece)
            yield piece

    async def _hash_to(self, offset: int) -> None:
        """Make sure the hash state at ``offset`` is known: hash the source bytes between the nearest
        known state and ``offset`` (read, not uploaded)."""
        if offset in self.hashes:
            return
        start = max(k for k in self.hashes if k <= offset)
        async for _ in self._hashed(start, offset):
            pass

    async def _hashed(self, start: int, end: int) -> AsyncGenerator[bytes, None]:
        """Source bytes ``[start, end)``, hashed from the state at ``start``. The state at ``end`` is kept
        (and, at the end of the blob, the digest checked) *before* the last piece is handed on, so a
        mismatch stops the upload short of its declared length and the registry never completes it."""
        size = self.blob.size
        hasher = self.hashes[start].copy()
        pos = start
        async for piece in self.source.read(start, end):
            hasher.update(piece)
            pos += len(piece)
            if pos == end:
                if end == size and hasher.hexdigest() != self.expected:
                    raise DigestMismatch(f"{self.blob.digest}: source sent {size} bytes hashing to "
                                         f"{self.algorithm}:{hasher.hexdigest()}")
                self.hashes[end] = hasher
            self._progress(pos)
            yield piece

    def _progress(self, pos: int) -> None:
        if pos > self.reported:
            if self.owner.on_bytes is not None:
                self.owner.on_bytes(pos - self.reported)
            self.reported = pos


class _Source:
    """The source blob as bytes from any offset: one streaming GET read on while offsets follow each
    other, a ``Range`` GET when they jump or when the stream breaks (at most ``retries`` breaks in a
    row without progress). A source that ignores ``Range`` answers 200; its prefix is skipped."""

    def __init__(self, transfer: _BlobTransfer) -> None:
        self.transfer = transfer
        self.blob = transfer.blob
        self.response: Response | None = None
        self.stream: AsyncIterator[bytes] | None = None
        self.pos = 0            # blob offset of ``leftover``'s first byte (or the stream's next byte)
        self.leftover = b""
        self.skip = 0           # bytes still to drop from a 200 answer to a Range request
        self.failed: OCITransportError | None = None  # the error that made the source give up
        self.failures = 0
        self.fail_pos = -1

    async def start(self) -> None:
        """Open the source GET from the first byte (again after transient failures): status and length
        are known before any upload session is opened."""
        try:
            await self._open(0)
        except OCITransportError as exc:
            if self.failed is not None or isinstance(exc, DigestMismatch):
                raise
            await self._reopen_after(exc)

    async def read(self, start: int, end: int) -> AsyncGenerator[bytes, None]:
        """Yield the blob's bytes ``[start, end)``."""
        try:
            if self.stream is None or self.pos != start:
                await self._open(start)
            while self.pos < end:
                piece = self.leftover or await self._next()
                self.leftover = b""
                room = end - self.pos
                if len(piece) > room:
                    piece, self.leftover = piece[:room], piece[room:]
                self.pos += len(piece)
                if self.pos == self.blob.size and self.leftover:
                    raise SizeMismatch(f"{self.blob.digest}: source sent more than the {self.blob.size} "
                                         "bytes the manifest declares")
                yield piece
        except GeneratorExit:
            raise  # abandoned at a piece boundary: position and leftover are consistent
        except BaseException:
            # Interrupted inside a read (a cancelled upload, an error): the stream may have lost a chunk.
            await self.aclose()
            raise

    async def _next(self) -> bytes:
        """The next chunk of the stream at ``pos``, resuming the GET with Range when it breaks."""
        while True:
            assert self.stream is not None
            try:
                chunk = await self.stream.__anext__()
            except StopAsyncIteration:
                raise SizeMismatch(f"{self.blob.digest}: source sent {self.pos} bytes, the manifest "
                                     f"declares {self.blob.size}") from None
            except OCITransportError as exc:
                await self._reopen_after(exc)
                continue
            self.transfer.stats.bytes_downloaded += len(chunk)
            if self.skip:
                dropped = min(self.skip, len(chunk))
                self.skip -= dropped
                chunk = chunk[dropped:]
                if not chunk:
                    continue
            return chunk

    async def _reopen_after(self, exc: OCITransportError) -> None:
        while True:
            if not transport.is_retryable(exc):
                self.failed = exc
                raise exc
            if self.pos > self.fail_pos:
                self.fail_pos, self.failures = self.pos, 0
            self.failures += 1
            if self.failures > self.transfer.owner.retries:
                self.failed = exc
                raise exc
            self.transfer.session.retries += 1
            delay = self.transfer.session.backoff.delay(self.failures - 1)
            log.info("source GET of %s broke at %d of %d bytes (%s); resuming in %.1fs", self.blob.digest,
                     self.pos, self.blob.size, exc, delay)
            await asyncio.sleep(delay)
            try:
                await self._open(self.pos)
            except OCITransportError as again:
                exc = again
                continue
            self.transfer.stats.downloads_resumed += 1
            return

    async def _open(self, offset: int) -> None:
        await self.aclose()
        t = self.transfer
        pull = await t.session.pull(t.src)
        try:
            response = await t.session.open_blob(pull, t.src, self.blob.digest, offset=offset)
        except OCITransportError as exc:
            if not transport.is_retryable(exc):
                self.failed = exc
            raise
        self.response = response
        if response.status == 206:
            first = _content_range_start(response.headers.get("Content-Range"))
            if first != offset:
                self.failed = MirrorError(f"{t.src.name}: GET {self.blob.digest} with Range from {offset} "
                                          f"answered Content-Range {response.headers.get('Content-Range')!r}")
                raise self.failed
            self.skip, expected = 0, self.blob.size - offset
        else:
            self.skip, expected = offset, self.blob.size
        declared = header_number(response.headers.get("Content-Length"))  # a bad one: libcurl's to judge
        if declared is not None and not response.headers.get("Content-Encoding") and declared != expected:
            raise SizeMismatch(f"{self.blob.digest}: source declares {declared + self.blob.size - expected}"
                                 f" bytes, the manifest {self.blob.size}")
        self.stream = response.aiter_bytes()
        self.pos, self.leftover = offset, b""

    async def aclose(self) -> None:
        stream, response = self.stream, self.response
        self.stream = self.response = None
        self.leftover = b""
        if response is not None:
            response.close()
        if stream is not None:
            try:
                await stream.aclose()  # type: ignore[attr-defined]
            except RuntimeError:
                # "aclose(): asynchronous generator is already running": the upload's body pump is
                # inside it (its task is being cancelled too); the response closed above ends it.
                pass


def _content_range_start(value: str | None) -> int | None:
    """First byte of ``Content-Range: bytes FIRST-LAST/TOTAL``."""
    if not value:
        return None
    unit, _, spec = value.strip().partition(" ")
    first = parse_number(spec.partition("-")[0].strip())
    return first if unit.lower() == "bytes" else None
