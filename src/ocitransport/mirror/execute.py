"""Executing units: a bounded pool of image workers on one event loop, sharing one Session and one
``BlobCopy`` (so dedup and mounts work across images). Every transfer goes through the Client's
single engine."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Protocol

from ..name import Repository, parse_reference
from .blobs import BlobCopy
from .manifests import Descriptor, Manifest
from .plan import ImageUnit, choose_platforms, describe, identifier_of
from .report import ImageResult, Report
from .session import MirrorError, Session

log = logging.getLogger("ocitransport.mirror")


class Progress(Protocol):
    """What the executor tells a progress display (all methods are called on the event loop thread)."""

    def planned(self, units: list[ImageUnit]) -> None: ...
    def image_done(self, result: ImageResult) -> None: ...
    def bytes_done(self, n: int) -> None: ...


class Executor:
    """Runs image units concurrently: at most ``jobs`` images and ``jobs`` blob streams at a time.

    ``keep_going=False`` stops taking new units after the first failure (units in flight finish;
    the rest are counted in ``Report.images_not_attempted``).
    """

    def __init__(self, session: Session, *, jobs: int = 8, retries: int = 3,
                 include_nondistributable: bool = False, keep_going: bool = True,
                 progress: Progress | None = None) -> None:
        if jobs < 1:
            raise ValueError("jobs must be greater than zero")
        self.session = session
        self.jobs = jobs
        self.keep_going = keep_going
        self.include_nondistributable = include_nondistributable
        self.progress = progress
        self.blobs = BlobCopy(session, transfers=jobs, retries=retries,
                              on_bytes=progress.bytes_done if progress is not None else None)

    async def run(self, units: Iterable[ImageUnit], report: Report | None = None) -> Report:
        """Run every unit; results are added to ``report`` (a new one unless given)."""
        report = report if report is not None else Report()
        started = time.monotonic()
        queue = list(units)
        position = 0
        stop = False

        async def worker() -> None:
            nonlocal position, stop
            while not stop and position < len(queue):
                unit = queue[position]
                position += 1
                result = await self.run_unit(unit)
                report.add(result)
                if self.progress is not None:
                    self.progress.image_done(result)
                if result.status == "failed" and not self.keep_going:
                    stop = True

        await asyncio.gather(*(worker() for _ in range(min(self.jobs, max(len(queue), 1)))))
        report.images_not_attempted += len(queue) - position
        report.retries = self.session.retries
        report.duration += time.monotonic() - started
        return report

    async def run_unit(self, unit: ImageUnit) -> ImageResult:
        """Copy one unit; never raises (a failure is the result's ``error``)."""
        result = ImageResult(unit.source, unit.destination, "copied", unit.target_digest, unit.media_type,
                             list(unit.platforms))
        if unit.up_to_date:
            result.status = "skipped"
            result.note = "destination already up to date"
            log.info("skip %s: %s is up to date", unit.source, unit.destination)
            return result
        try:
            await self._copy(unit, result)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - one image's failure is reported, the run goes on
            result.status = "failed"
            result.error = describe(exc)
            log.warning("failed %s -> %s: %s", unit.source, unit.destination, result.error)
        else:
            log.info("%s %s -> %s (%s)", result.status, unit.source, unit.destination, result.digest)
        return result

    async def _copy(self, unit: ImageUnit, result: ImageResult) -> None:
        session = self.session
        src_ref = parse_reference(unit.source, insecure=unit.insecure)
        dst_ref = parse_reference(unit.destination, insecure=unit.insecure)
        src, dst = src_ref.repository, dst_ref.repository
        pull = await session.pull(src)
        push = await session.push(dst)
        dst_id = identifier_of(dst_ref)
        if unit.target_digest:
            current = await session.head_manifest(push, dst, dst_id)
            if current is not None and current[0] == unit.target_digest:
                result.status = "skipped"
                result.note = "destination already up to date"
                return
        top = await session.get_manifest(pull, src, unit.source_digest or identifier_of(src_ref))
        result.media_type = top.media_type
        if top.is_index and unit.platforms:
            keep, filtered = choose_platforms(top, unit.platforms)
            if filtered is None:
                child = await session.get_manifest(pull, src, keep[0].digest)
                await self._copy_tree(src, dst, child, result)
                await session.put_manifest(push, dst, dst_id, child)
                result.digest = child.digest
                result.media_type = child.media_type
                result.note = f"platform {keep[0].platform_str} of index {top.digest}"
                return
            await asyncio.gather(*(self._copy_child(src, dst, d, result) for d in keep))
            result.note = f"index {top.digest} filtered to {len(keep)} platforms"
            top = filtered
        else:
            await self._copy_tree(src, dst, top, result)
        await session.put_manifest(push, dst, dst_id, top)
        result.digest = top.digest

    async def _copy_tree(self, src: Repository, dst: Repository, manifest: Manifest,
                         result: ImageResult) -> None:
        """Everything ``manifest`` references, present at ``dst`` before the manifest itself is pushed."""
        if manifest.is_index:
            await asyncio.gather(*(self._copy_child(src, dst, d, result) for d in manifest.children()))
            return
        await asyncio.gather(*(self._copy_blob(src, dst, b, result) for b in manifest.blobs()))

    async def _copy_child(self, src: Repository, dst: Repository, child: Descriptor, result: ImageResult) -> None:
        session = self.session
        push = await session.push(dst)
        if await session.head_manifest(push, dst, child.digest) is not None:
            return
        pull = await session.pull(src)
        manifest = await session.get_manifest(pull, src, child.digest)
        await self._copy_tree(src, dst, manifest, result)
        await session.put_manifest(push, dst, child.digest, manifest)

    async def _copy_blob(self, src: Repository, dst: Repository, blob: Descriptor, result: ImageResult) -> None:
        if blob.nondistributable and not self.include_nondistributable:
            log.debug("not copying non-distributable layer %s", blob.digest)
            return
        outcome, size = await self.blobs.ensure(src, dst, blob)
        if outcome == "transferred":
            result.blobs_transferred += 1
            result.bytes_transferred += size
        elif outcome == "mounted":
            result.blobs_mounted += 1
        else:
            result.blobs_skipped += 1


__all__ = ["Executor", "MirrorError", "Progress"]
