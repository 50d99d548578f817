"""Placing blobs at the destination: skip what is there, mount what the registry already has elsewhere,
stream the rest from the source GET into the destination upload, digest verified on the way."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncGenerator, Callable
from typing import Literal

from .. import transport
from ..exceptions import OCITransportError
from ..messages import Response
from ..name import Repository
from ..roundtrip import RoundTripper
from .manifests import Descriptor
from .session import DigestMismatch, Session

log = logging.getLogger("ocitransport.mirror")

Outcome = Literal["transferred", "mounted", "skipped"]


class BlobCopy:
    """Puts blobs into destination repositories, once per ``(registry, digest)`` at a time.

    * ``HEAD`` at the destination first: present -> ``skipped``.
    * Cross-repository mount when the source is on the destination registry, or when this run already
      placed the digest in another repository of the destination registry: 201 -> ``mounted``.
    * Otherwise the source GET streams into a monolithic ``PUT ?digest=``; memory is bounded by the
      engine's buffers (a few MiB per transfer), no temporary files. The sha256 and size of what flows
      are checked; on a mismatch the body iterator raises, which aborts the upload.
    * A second request for a digest already being placed on the same registry waits for the first,
      then skips (same repository) or mounts from where it landed.

    ``transfers`` bounds concurrent streamed uploads; ``on_bytes`` hears every chunk's size.
    """

    def __init__(self, session: Session, *, transfers: int = 8, retries: int = 3,
                 on_bytes: Callable[[int], None] | None = None) -> None:
        self.session = session
        self.slots = asyncio.Semaphore(max(transfers, 1))
        self.retries = max(retries, 0)
        self.on_bytes = on_bytes
        #: (registry name, digest) -> repository paths of that registry known to hold it in this run.
        self.placed: dict[tuple[str, str], list[str]] = {}
        self._inflight: dict[tuple[str, str], asyncio.Future[None]] = {}

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
            outcome, size = await self._place(src, dst, blob, list(self.placed.get(key, ())))
            self.placed.setdefault(key, []).append(dst.path)
            return outcome, size
        finally:
            del self._inflight[key]
            fut.set_result(None)

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
        attempt = 0
        while True:
            try:
                if mount_from is not None:
                    rt = await session.push(dst, mount_from)
                    location = await session.start_upload(rt, dst, digest=blob.digest, mount_from=mount_from)
                    if location is None:
                        log.debug("mounted %s into %s from %s", blob.digest, dst.name, mount_from.path)
                        return "mounted", 0
                    mount_from = None  # a mount refused once is not asked again on retries
                else:
                    rt = push
                    location = await session.start_upload(rt, dst)
                assert location is not None  # only a mount answers without an upload URL
                async with self.slots:
                    size = await self._stream(src, rt, location, blob)
                return "transferred", size
            except DigestMismatch:
                raise
            except OCITransportError as exc:
                if attempt >= self.retries or not transport.is_retryable(exc):
                    raise
                attempt += 1
                session.retries += 1
                delay = 0.5 * (2 ** (attempt - 1))
                log.info("retrying %s -> %s after: %s (attempt %d in %.1fs)", blob.digest, dst.name, exc,
                         attempt + 1, delay)
                await asyncio.sleep(delay)

    async def _stream(self, src: Repository, dst_rt: RoundTripper, location: str,
                      blob: Descriptor) -> int:
        session = self.session
        pull = await session.pull(src)
        response = await session.open_blob(pull, src, blob.digest)
        counted = [0]
        body = self._verified(response, blob, counted)
        try:
            await session.finish_upload(dst_rt, location, blob.digest, blob.size, body)
        finally:
            response.close()
            await body.aclose()
        return counted[0]

    async def _verified(self, response: Response, blob: Descriptor, counted: list[int]) -> AsyncGenerator[bytes, None]:
        """The source body, hashed as it flows; raises ``DigestMismatch`` instead of ending when the
        bytes are not what the digest (or size) says, so the upload is aborted and never completed."""
        algorithm, _, expected = blob.digest.partition(":")
        try:
            hasher = hashlib.new(algorithm)
        except ValueError:
            raise DigestMismatch(f"{blob.digest}: unsupported digest algorithm {algorithm!r}") from None
        on_bytes = self.on_bytes
        size = 0
        async for chunk in response.aiter_bytes():
            hasher.update(chunk)
            size += len(chunk)
            if size > blob.size:
                raise DigestMismatch(f"{blob.digest}: source sent more than the {blob.size} bytes the "
                                     "manifest declares")
            counted[0] = size
            if on_bytes is not None:
                on_bytes(len(chunk))
            yield chunk
        if size != blob.size or hasher.hexdigest() != expected:
            raise DigestMismatch(f"{blob.digest}: source sent {size} bytes hashing to "
                                 f"{algorithm}:{hasher.hexdigest()} (manifest says {blob.size} bytes)")
