"""Executing units: a bounded pool of image workers on one event loop, sharing one Session and one
``BlobCopy`` (so dedup and mounts work across images). Every transfer goes through the Client's
single engine."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import logging
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from typing import Protocol

from .. import transport
from ..name import Repository
from ..transport.autotune import ConcurrencyController
from .blobs import CHUNK_SIZE, CHUNK_THRESHOLD, BlobCopy
from .concurrency import AUTO, Gate, Jobs, check_jobs, most_jobs
from .limits import blobs_of, children_of, gather_or_cancel
from .manifests import Descriptor, Manifest
from .options import RunOptions
from .plan import (
    ImageUnit,
    Plan,
    PlanItem,
    checked_stale,
    choose_platforms,
    describe,
    identifier_of,
    read_manifest,
    transient,
)
from .referrers import FallbackIndex, fallback_tag
from .report import ImageResult, Report
from .session import MirrorError, Session

log = logging.getLogger("ocitransport.mirror")
#: Retries, one INFO record each as it happens (the command line shows them without -v).
retry_log = logging.getLogger("ocitransport.retry")

#: The child copies of one unit, by digest (each distinct child is copied once per unit).
_Tree = dict[str, "asyncio.Future[None]"]

#: Times a manifest PUT refused for an unknown blob is tried again after its references were checked.
MANIFEST_RECHECKS = 2
#: Registry error codes saying that something a pushed manifest references is not there.
_UNKNOWN_REFERENCE_CODES = frozenset({"MANIFEST_BLOB_UNKNOWN", "BLOB_UNKNOWN", "MANIFEST_UNKNOWN"})


def references_unknown(exc: BaseException) -> bool:
    """Whether a manifest PUT was refused because the registry does not know a blob or child manifest
    it references.

    distribution also answers so (``DIGEST_INVALID; MANIFEST_BLOB_UNKNOWN``) when the blob is there but
    another client was writing it into the same repository at that moment (an upload or mount of the
    same digest rewrites the repository's link to it, and the PUT read the link half-written)."""
    return isinstance(exc, transport.Error) and exc.status_code == 400 and any(
        str(d.code) in _UNKNOWN_REFERENCE_CODES for d in exc.errors)


async def put_manifest_checked(session: Session, dst: Repository, ref: str, manifest: Manifest,
                               recheck: Callable[[], Awaitable[None]], *, listed: bool = False) -> None:
    """PUT ``manifest`` as ``dst``'s ``ref``; when the registry says a reference is unknown, ``recheck``
    (asks the registry again for every blob and child, placing what is missing) and PUT again, at most
    :data:`MANIFEST_RECHECKS` times. A manifest is thus only pushed again once its references were
    found (or put) at the destination, never on the strength of what this run believed. ``listed``: the
    image a unit names (see :meth:`Session.put_manifest`)."""
    push = await session.push(dst)
    for attempt in range(MANIFEST_RECHECKS + 1):
        try:
            await session.put_manifest(push, dst, ref, manifest, listed=listed)
            return
        except transport.Error as exc:
            if attempt >= MANIFEST_RECHECKS or not references_unknown(exc):
                raise
            session.retries += 1
            retry_log.info("%s:%s: the registry does not know a reference (%s); checking them again", dst.name,
                           ref, exc)
            await asyncio.sleep(session.backoff.delay(attempt))  # let a concurrent writer of the blob finish
            await recheck()


class TreeCopy:
    """The one manifest-tree copy: index -> children -> blobs -> manifest last. The local executor runs
    it for every unit, and the dask tasks run it on their worker's Session and BlobCopy (a child manifest
    task is :meth:`child`), so both executors copy a tree the same way.

    ``blobs``: the BlobCopy to place blobs with (given: shared by every tree of the run or worker).
    Counts go into the ``ImageResult`` each call is given."""

    def __init__(self, session: Session, blobs: BlobCopy, *, include_nondistributable: bool = False,
                 blob_sized: Callable[[ImageUnit, int], None] | None = None) -> None:
        self.session = session
        self.blobs = blobs
        self.include_nondistributable = include_nondistributable
        #: A progress display's byte totals: +size before a blob's copy, -size when it moved no bytes.
        self.blob_sized = blob_sized

    async def tree(self, src: Repository, dst: Repository, manifest: Manifest, result: ImageResult,
                   tree: _Tree, depth: int) -> None:
        """Everything ``manifest`` (found ``depth`` levels deep) references, present at ``dst`` before the
        manifest itself is pushed. ``tree`` holds the child copies of this unit, so a child listed many
        times (by one index or by several) is read and copied once. The first failure cancels the
        manifest's other copies (their upload sessions are cancelled too)."""
        where = f"{src.name}@{manifest.digest}"
        if manifest.is_index:
            children = children_of(manifest, where, depth)
            await gather_or_cancel(self.child(src, dst, d, result, tree, depth + 1) for d in children)
            return
        await gather_or_cancel(self.blob(src, dst, b, result) for b in blobs_of(manifest, where))

    async def child(self, src: Repository, dst: Repository, child: Descriptor, result: ImageResult,
                    tree: _Tree, depth: int) -> None:
        """Copy child manifest ``child`` (found ``depth`` levels deep) and its tree, then push it by
        digest; ``tree`` makes each distinct child of one walk one copy."""
        task = tree.get(child.digest)
        if task is None:
            task = tree[child.digest] = asyncio.ensure_future(
                self._child_once(src, dst, child, result, tree, depth))
        await task

    async def _child_once(self, src: Repository, dst: Repository, child: Descriptor, result: ImageResult,
                          tree: _Tree, depth: int) -> None:
        session = self.session
        push = await session.push(dst)
        if await session.head_manifest(push, dst, child.digest) is not None:
            return
        pull = await session.pull(src)
        manifest = await read_manifest(session, pull, src, child.digest)
        await self.tree(src, dst, manifest, result, tree, depth)
        await self.put(src, dst, child.digest, manifest, result, depth)

    async def put(self, src: Repository, dst: Repository, ref: str, manifest: Manifest,
                  result: ImageResult, depth: int, *, listed: bool = False) -> None:
        """PUT ``manifest`` after its tree; if the registry misses a reference, the tree is checked at
        the registry (this run's bookkeeping of placed blobs forgotten) and copied again where needed.
        ``listed``: ``manifest`` is the image the unit names, not a child of it."""
        async def recheck() -> None:
            self.blobs.forget(dst, [b.digest for b in manifest.blobs()] if not manifest.is_index else [])
            again = ImageResult(result.source, result.destination, "copied", result.digest)
            await self.tree(src, dst, manifest, again, {}, depth)
            result.blobs_transferred += again.blobs_transferred
            result.bytes_transferred += again.bytes_transferred
            result.blobs_mounted += again.blobs_mounted

        await put_manifest_checked(self.session, dst, ref, manifest, recheck, listed=listed)

    async def blob(self, src: Repository, dst: Repository, blob: Descriptor, result: ImageResult) -> None:
        """Place one blob at ``dst`` (skipped, mounted or streamed: :meth:`BlobCopy.ensure`) and count it."""
        if blob.nondistributable and not self.include_nondistributable:
            log.debug("not copying non-distributable layer %s", blob.digest)
            return
        sized = self.blob_sized
        unit = current_unit.get() if sized is not None else None
        if sized is not None and unit is not None:
            sized(unit, blob.size)
        moved = False
        try:
            outcome, size = await self.blobs.ensure(src, dst, blob)
            moved = outcome == "transferred"
        finally:
            if sized is not None and unit is not None and not moved:
                sized(unit, -blob.size)
        if outcome == "transferred":
            result.blobs_transferred += 1
            result.bytes_transferred += size
        elif outcome == "mounted":
            result.blobs_mounted += 1
        else:
            result.blobs_skipped += 1


class Progress(Protocol):
    """What the executor tells a progress display (all methods are called on the event loop thread).

    A display may also have ``image_started(unit)`` and ``image_bytes(unit, n)``: the executor calls
    them when present (per-image rows)."""

    def planned(self, units: list[ImageUnit]) -> None: ...
    def image_done(self, result: ImageResult) -> None: ...
    def bytes_done(self, n: int) -> None: ...


#: The unit a worker task is copying (visible to the blob streams it starts), for per-image progress.
current_unit: contextvars.ContextVar[ImageUnit | None] = contextvars.ContextVar("ocitransport_unit",
                                                                                 default=None)


class Executor:
    """Runs image units concurrently: at most ``jobs`` images and ``jobs`` blob streams at a time;
    ``jobs="auto"`` (the default) lets a :class:`~ocitransport.transport.autotune.ConcurrencyController`
    fed by every answer's latency choose the images in flight, up to its ceiling.

    ``keep_going=False`` stops taking new units after the first failure (units in flight finish;
    the rest are counted in ``Report.images_not_attempted``). Blobs above ``chunk_threshold`` bytes
    are uploaded in ``chunk_size`` chunks (see :class:`~ocitransport.mirror.blobs.BlobCopy`).
    """

    def __init__(self, session: Session, *, jobs: Jobs = AUTO, retries: int = 3,
                 include_nondistributable: bool = False, keep_going: bool = True,
                 progress: Progress | None = None, chunk_threshold: int = CHUNK_THRESHOLD,
                 chunk_size: int = CHUNK_SIZE, blobs: BlobCopy | None = None) -> None:
        check_jobs(jobs)
        self.session = session
        # ``auto``: up to the ceiling of workers, admitted by the controller's limit (mirror/concurrency.py).
        self.controller = ConcurrencyController() if jobs == AUTO else None
        self.gate = Gate(self.controller) if self.controller is not None else None
        self.jobs = most_jobs(jobs)
        self.keep_going = keep_going
        self.include_nondistributable = include_nondistributable
        self.progress = progress
        self.retries = max(retries, 0)
        self._image_started = getattr(progress, "image_started", None)
        self._image_bytes = getattr(progress, "image_bytes", None)
        # Optional: blob sizes as manifests are read (+size before a copy, -size when it moved no bytes),
        # so a progress display has byte totals and an ETA by bytes.
        self._blob_sized = getattr(progress, "blob_sized", None)
        #: The blob copier (given: shared with other executors, as a dask worker's tasks share one).
        self.blobs = blobs if blobs is not None else BlobCopy(
            session, transfers=self.jobs, retries=retries, on_bytes=self._on_bytes if progress is not None else None,
            chunk_threshold=chunk_threshold, chunk_size=chunk_size)
        #: The tree copy every unit runs (the same code the dask tasks run).
        self.trees = TreeCopy(session, self.blobs, include_nondistributable=include_nondistributable,
                              blob_sized=self._blob_sized)

    @classmethod
    def of(cls, session: Session, options: RunOptions, *, keep_going: bool = True,
           progress: Progress | None = None, blobs: BlobCopy | None = None) -> Executor:
        """An executor honouring ``options`` (a Plan's :class:`RunOptions`)."""
        return cls(session, jobs=options.jobs, retries=options.retries,
                   include_nondistributable=options.include_nondistributable, keep_going=keep_going,
                   progress=progress, chunk_threshold=options.chunk_threshold, chunk_size=options.chunk_size,
                   blobs=blobs)

    def _on_bytes(self, n: int) -> None:
        assert self.progress is not None
        self.progress.bytes_done(n)
        if self._image_bytes is not None:
            unit = current_unit.get()
            if unit is not None:
                self._image_bytes(unit, n)

    async def run(self, units: Iterable[ImageUnit] | AsyncIterable[PlanItem],
                  report: Report | None = None) -> Report:
        """Run every unit; results are added to ``report`` (a new one unless given).

        A unit whose ``depends_on`` names another unit of this run (a referrer and its subject's unit)
        waits, without holding a worker, until that unit is done; when it did not go well, the referrer
        is skipped with a note saying so (a signature is never pushed without its image).

        ``units`` may be a planner's stream (:func:`~ocitransport.mirror.plan.stream_repositories`): each
        unit starts as soon as it arrives, a planning failure ``(reference, message)`` goes into the
        report (and, without ``keep_going``, stops the run as an image failure does), and progress hears
        ``planned`` again, with every unit so far, whenever one arrives. A unit must arrive after the unit
        it ``depends_on`` (planners emit a subject's unit before its referrers')."""
        report = report if report is not None else Report()
        started = time.monotonic()
        queue: collections.deque[ImageUnit] = collections.deque()
        arrived: list[ImageUnit] = []
        destinations: set[str] = set()
        stream = units if isinstance(units, AsyncIterable) else None
        if stream is None:
            queue.extend(units)  # type: ignore[arg-type]
            destinations.update(u.destination for u in queue)
        total = len(queue)
        ok: dict[str, bool] = {}  # destination -> the unit finished well (copied, or up to date)
        parked: dict[str, list[ImageUnit]] = {}  # destination -> units waiting for it
        ready: collections.deque[ImageUnit] = collections.deque()
        changed = asyncio.Condition()
        in_flight = attempted = 0
        stop = False
        feeding = stream is not None

        async def feed() -> None:
            nonlocal total, stop, feeding
            assert stream is not None
            try:
                async for item in stream:
                    if isinstance(item, ImageUnit):
                        queue.append(item)
                        arrived.append(item)
                        destinations.add(item.destination)
                        total += 1
                        if self.progress is not None:
                            self.progress.planned(arrived)
                    else:
                        report.fail(*item)
                        if not self.keep_going:
                            stop = True
                    async with changed:
                        changed.notify_all()
                    if stop:
                        break
            finally:
                feeding = False
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    await aclose()  # cancels planning still going on
            async with changed:
                changed.notify_all()

        def take() -> ImageUnit | None:
            while ready or queue:
                unit = ready.popleft() if ready else queue.popleft()
                after = unit.depends_on
                if after and after != unit.destination and after in destinations and after not in ok:
                    parked.setdefault(after, []).append(unit)
                    continue
                return unit
            return None

        def may_move() -> bool:
            return stop or bool(ready) or bool(queue) or (in_flight == 0 and not feeding)

        gate = self.gate

        async def worker() -> None:
            nonlocal in_flight, attempted, stop
            while not stop:
                if gate is not None:
                    await gate.enter()
                unit = take()
                if unit is None:
                    if gate is not None:
                        await gate.leave()
                    if in_flight == 0 and not feeding:
                        return
                    async with changed:
                        await changed.wait_for(may_move)
                    continue
                in_flight += 1
                try:
                    if unit.depends_on in ok and not ok[unit.depends_on]:
                        result = self._not_after(unit)
                        well = False
                    else:
                        result = await self.run_unit(unit)
                        well = result.status != "failed"
                finally:
                    in_flight -= 1
                    if gate is not None:
                        await gate.leave()
                attempted += 1
                ok[unit.destination] = well
                ready.extend(parked.pop(unit.destination, ()))
                report.add(result)
                if self.progress is not None:
                    self.progress.image_done(result)
                if result.status == "failed" and not self.keep_going:
                    stop = True
                async with changed:
                    changed.notify_all()

        observe = self.session.observe
        if self.controller is not None:
            controller = self.controller
            observe.controller = controller
            observe.on_change = gate.wake if gate is not None else None
            # Only rounds in which the limit held images back are judged: while a pipelined plan is still
            # arriving, fewer images than allowed may be in flight, and more room would change nothing.
            observe.limited = lambda: bool(queue or ready) or in_flight >= controller.limit
        feeder = asyncio.ensure_future(feed()) if stream is not None else None
        try:
            # A stream's size is unknown: every worker waits for units (an idle one costs nothing).
            await asyncio.gather(*(worker() for _ in range(self.jobs if feeder else min(self.jobs, max(total, 1)))))
            if feeder is not None and not stop:
                await feeder  # it has ended (or is ending): a planner's own failure is raised here
        finally:
            if feeder is not None and not feeder.done():
                feeder.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await feeder
            if self.controller is not None:
                observe.controller = observe.on_change = observe.limited = None
            # Every transfer cancels its own session when it fails; this is the run's guarantee that
            # none it opened stays open at the destination (registries keep them for days).
            left = await self.blobs.cancel_open()
            if left:
                log.info("cancelled %d upload session%s left open", left, "" if left == 1 else "s")
        report.images_not_attempted += total - attempted
        report.retries = self.session.retries
        report.note_limits(self.session.limits.stats())
        report.note_pull_quota(self.session.pull_quota)
        report.note_concurrency(self.controller.describe() if self.controller is not None else str(self.jobs),
                                observe.connections.counts())
        report.duration += time.monotonic() - started
        return report

    @staticmethod
    def _not_after(unit: ImageUnit) -> ImageResult:
        """The result of a referrer whose subject's unit failed: skipped, and the note says why."""
        result = ImageResult(unit.source, unit.destination, "skipped", unit.target_digest, unit.media_type,
                             list(unit.platforms))
        result.note = (f"not copied: its subject {unit.subject or unit.depends_on} was not copied "
                       f"({unit.depends_on} did not succeed)")
        log.warning("skip %s: %s", unit.source, result.note)
        return result

    def _fallback(self) -> FallbackIndex:
        index: FallbackIndex | None = getattr(self, "_fallback_index", None)
        if index is None:
            index = self._fallback_index = FallbackIndex(self.session)
        return index

    async def _list_referrer(self, unit: ImageUnit, result: ImageResult) -> None:
        """After a referrer was pushed by digest: on a registry without the referrers API, list it in
        its subject's fallback tag (``sha256-<hex>``), as the distribution spec asks of clients."""
        if not unit.subject or "@" not in unit.destination or "@" not in unit.subject:
            return
        dst = unit.destination_ref.repository
        subject = unit.subject.rsplit("@", 1)[1]
        push = await self.session.push(dst)
        fallback = self._fallback()
        if await fallback.needed(push, dst, subject) and \
                await fallback.record(push, dst, subject, unit.target_digest):
            listed = f"listed in {fallback_tag(subject)}"
            result.note = f"{result.note}; {listed}" if result.note else listed
            if result.status == "skipped":
                result.status = "copied"  # the manifest was there, the destination still changed

    async def run_unit(self, unit: ImageUnit) -> ImageResult:
        """Copy one unit; never raises (a failure is the result's ``error``)."""
        if self._image_started is not None and not unit.up_to_date:
            self._image_started(unit)
        token = current_unit.set(unit)
        try:
            # One retry budget for the unit: its per-image attempts re-send no request that already
            # failed ``retries + 1`` times (transport.retry_budget).
            with transport.retry_budget():
                return await self._run_unit(unit)
        finally:
            current_unit.reset(token)

    async def _run_unit(self, unit: ImageUnit) -> ImageResult:
        result = ImageResult(unit.source, unit.destination, "copied", unit.target_digest, unit.media_type,
                             list(unit.platforms))
        if unit.up_to_date:
            result.status = "skipped"
            result.note = "destination already up to date"
            log.info("skip %s: %s is up to date", unit.source, unit.destination)
            return result
        for attempt in range(self.retries + 1):
            try:
                await self._copy(unit, result)
                await self._list_referrer(unit, result)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - one image's failure is reported, the run goes on
                # A transient failure the request layers could not retry (a body that broke while it
                # streamed or came short, a retry budget spent in a burst, a ping that failed) gets the
                # whole image again: every step is idempotent, and what is already there is skipped.
                if attempt < self.retries and transient(exc):
                    self.session.retries += 1
                    delay = self.session.backoff.delay(attempt)
                    retry_log.info("%s: retrying the image in %.1fs (%d/%d) after: %s", unit.source, delay,
                                   attempt + 1, self.retries, describe(exc))
                    await asyncio.sleep(delay)
                    continue
                result.status = "failed"
                result.error = describe(exc)
                log.warning("failed %s -> %s: %s", unit.source, unit.destination, result.error)
            else:
                if attempt and result.status == "skipped":  # an earlier attempt put the manifest
                    result.status, result.note = "copied", ""
                log.info("%s %s -> %s (%s)", result.status, unit.source, unit.destination, result.digest)
            break
        return result

    async def _copy(self, unit: ImageUnit, result: ImageResult) -> None:
        session = self.session
        src_ref = unit.source_ref
        dst_ref = unit.destination_ref
        src, dst = src_ref.repository, dst_ref.repository
        pull = await session.pull(src)
        push = await session.push(dst)
        dst_id = identifier_of(dst_ref)
        if unit.target_digest and not checked_stale(session, unit):
            current = await session.head_manifest(push, dst, dst_id)
            if current is not None and current[0] == unit.target_digest:
                result.status = "skipped"
                result.note = "destination already up to date"
                return
        top = await read_manifest(session, pull, src, unit.source_digest or identifier_of(src_ref))
        result.media_type = top.media_type
        tree: _Tree = {}
        if top.is_index and unit.platforms:
            children_of(top, f"{src.name}@{top.digest}", 1)
            keep, filtered = choose_platforms(top, unit.platforms)
            if filtered is None:
                child = await read_manifest(session, pull, src, keep[0].digest)
                await self.trees.tree(src, dst, child, result, tree, 2)
                await self.trees.put(src, dst, dst_id, child, result, 2, listed=True)
                result.digest = child.digest
                result.media_type = child.media_type
                result.note = f"platform {keep[0].platform_str} of index {top.digest}"
                return
            await gather_or_cancel(self.trees.child(src, dst, d, result, tree, 2) for d in keep)
            result.note = f"index {top.digest} filtered to {len(keep)} platforms"
            top = filtered
        else:
            await self.trees.tree(src, dst, top, result, tree, 1)
        await self.trees.put(src, dst, dst_id, top, result, 1, listed=True)
        result.digest = top.digest


async def execute_plan(session: Session, plan: Plan, *, keep_going: bool, dry_run: bool,
                       progress: Progress | None, started: float) -> Report:
    """Run a plan on this event loop with one :class:`Executor` honouring ``plan.options`` (or only list
    it, with ``dry_run``).

    Planning failures are in the report first; with ``keep_going=False`` they stop the run before any
    unit starts (the units are counted as not attempted)."""
    report = Report.of_plan(plan.errors, dry_run=dry_run)
    if progress is not None:
        progress.planned(plan.units)
    if dry_run or (plan.errors and not keep_going):
        # Nothing is written: a layout or archive planning opened is closed now, not when collected (an
        # archive's working directory made for planning is removed; one a killed run left stays).
        for target, message in await session.close_targets(commit=False):
            report.fail(target, message)
    if dry_run:
        report.list_planned(plan.units)
        report.retries = session.retries
        report.note_pull_quota(session.pull_quota)
        report.duration = time.monotonic() - started
        return report
    if plan.errors and not keep_going:
        return report.not_started(len(plan.units), started)
    executor = Executor.of(session, plan.options, keep_going=keep_going, progress=progress)
    return await _run_closing(session, executor, plan.units, report, started)


async def execute_stream(session: Session, items: AsyncIterable[PlanItem], options: RunOptions, *,
                         keep_going: bool, progress: Progress | None, started: float) -> Report:
    """Run a planner's stream (:func:`~ocitransport.mirror.plan.stream_repositories`) as it is planned,
    with one :class:`Executor` honouring ``options``: each image's copy starts as soon as that image is
    planned. Planning failures are in the report; with ``keep_going=False`` the first one, or the first
    failed image, stops the run (planning too; images in flight finish)."""
    executor = Executor.of(session, options, keep_going=keep_going, progress=progress)
    return await _run_closing(session, executor, items, Report(), started)


async def _run_closing(session: Session, executor: Executor, items: Iterable[ImageUnit] | AsyncIterable[PlanItem],
                       report: Report, started: float) -> Report:
    """``executor.run``, then the session's local targets closed (an oci-archive destination is packed
    here), whatever happened; a target that cannot be closed is a failure in the report."""
    try:
        await executor.run(items, report)
    finally:
        closed = await session.close_targets()
    for target, message in closed:
        report.fail(target, message)
    report.duration = time.monotonic() - started
    return report


__all__ = ["MANIFEST_RECHECKS", "Executor", "TreeCopy", "MirrorError", "Progress", "current_unit", "execute_plan",
           "execute_stream",
           "put_manifest_checked", "references_unknown", "transient"]
