"""Planning: resolve references, list and filter tags, HEAD manifests, into independent image units.

A unit is a small frozen dataclass of strings: picklable (it can be shipped to another process or
machine) and idempotent (running it twice leaves the destination as running it once).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from .. import transport
from ..exceptions import OCITransportError
from ..name import Digest, Repository, Tag
from ..roundtrip import RoundTripper
from ..transport.ping import PingError
from .limits import LimitExceeded, children_of
from .manifests import (
    INDEX_TYPES,
    Descriptor,
    Manifest,
    ManifestError,
    filter_index,
    parse_platform,
    platform_matches,
)
from .options import RunOptions
from .referrers import MAX_REFERRER_DEPTH, FallbackIndex, discover, is_referrer_tag
from .session import DigestMismatch, MirrorError, Session, SizeMismatch, run_backoff
from .targets import LocalRepository, parse_reference, parse_repository
from .targets import has_identifier as _has_identifier

log = logging.getLogger("ocitransport.mirror")
#: Retries, one INFO record each as it happens (the command line shows them without -v).
retry_log = logging.getLogger("ocitransport.retry")
T = TypeVar("T")

_DEFAULT_BACKOFF = run_backoff(3)

#: Attempts of one planning step (a tag list, one image's HEADs and manifests, its referrers) that fails
#: for a transient reason.
PLAN_ATTEMPTS = 4


def transient(exc: BaseException) -> bool:
    """Whether another attempt may succeed where this one failed: what the retry layer retries (resets,
    timeouts, 5xx, 429), a ping that could not reach the registry for such a reason, and a blob body
    shorter or longer than declared (a proxy may cut or mislabel a body)."""
    if isinstance(exc, PingError):
        return bool(exc.errors) and transport.is_retryable(exc.errors[-1])
    return isinstance(exc, SizeMismatch) or transport.is_retryable(exc)


async def again(step: Callable[[], Awaitable[T]], what: str, attempts: int = PLAN_ATTEMPTS, *,
                backoff: transport.Backoff | None = None) -> T:
    """Run ``step`` (idempotent reads), again after a transient failure, at most ``attempts`` times,
    waiting as ``backoff`` says (the Session's: ``Session.backoff``; default ``run_backoff(3)``).

    Manifests, tag lists and referrers are read as streams (their size is bounded as they arrive), so a
    connection that breaks mid-body fails after the retry layer has returned; planning reads are
    cheap to repeat whole. Every attempt draws from one retry budget (``transport.retry_budget``): a
    request that already failed ``retries + 1`` times is not sent again, and the step fails with it."""
    with transport.retry_budget():
        for attempt in range(attempts):
            try:
                return await step()
            except Exception as exc:
                if attempt + 1 >= attempts or not transient(exc):
                    raise
                delay = (backoff or _DEFAULT_BACKOFF).delay(attempt)
                retry_log.info("planning %s: retrying in %.1fs (%d/%d) after: %s", what, delay, attempt + 1,
                               attempts - 1, describe(exc))
                await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


#: Reads of a manifest whose body does not parse or does not match its digest.
MANIFEST_READS = 3


async def read_manifest(session: Session, rt: RoundTripper, repo: Repository, ref: str) -> Manifest:
    """:meth:`Session.get_manifest`, read again (up to :data:`MANIFEST_READS` times) when the body does
    not parse or does not match its digest: a proxy that cut it short or mislabelled its length causes
    that as well as a broken registry, and a manifest costs one small GET."""
    for attempt in range(MANIFEST_READS):
        try:
            return await session.get_manifest(rt, repo, ref)
        except (ManifestError, DigestMismatch) as exc:
            if attempt + 1 >= MANIFEST_READS:
                raise
            session.retries += 1
            delay = session.backoff.delay(attempt)
            retry_log.info("reading %s:%s again in %.1fs after: %s", repo.name, ref, delay, describe(exc))
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


@dataclass(frozen=True)
class ImageUnit:
    """One image (or index) to copy.

    ``source`` / ``destination``: full references (``host/repo:tag`` or ``host/repo@sha256:...``).
    ``source_digest``: what the source reference resolved to when planned (the executor copies exactly
    that manifest). ``target_digest``: what the destination reference will point at: the source digest,
    or with a platform filter the single chosen child or a filtered index. ``up_to_date``: the
    destination already pointed at ``target_digest`` when planned (nothing to do).

    A referrer (a signature, SBOM, attestation; by digest, or a cosign ``sha256-<hex>.sig`` tag) has
    ``subject``: the destination reference of the manifest it refers to (``host/repo@sha256:...``), and
    ``depends_on``: the destination of the unit that copies that manifest. The executor runs it only
    after that unit finished well (when both are in the same run).
    """

    source: str
    destination: str
    source_digest: str = ""
    target_digest: str = ""
    media_type: str = ""
    up_to_date: bool = False
    platforms: tuple[str, ...] = ()
    insecure: bool = False
    subject: str = ""
    depends_on: str = ""

    # Parsed once per unit and kept (executors and the dask graph read them many times).
    @functools.cached_property
    def source_ref(self) -> Tag | Digest:
        """``source`` parsed (with ``insecure``)."""
        return parse_reference(self.source, insecure=self.insecure)

    @functools.cached_property
    def destination_ref(self) -> Tag | Digest:
        """``destination`` parsed (with ``insecure``)."""
        return parse_reference(self.destination, insecure=self.insecure)


def checked_stale(session: Session, unit: ImageUnit) -> bool:
    """Whether ``session``'s own planning found ``unit``'s destination not at ``unit.target_digest``.
    Answers ``True`` once per unit (a retried attempt asks the registry again)."""
    return session.stale.pop(unit.destination, None) == unit.target_digest != ""


@dataclass
class Plan:
    """The units of a run, plus what could not be planned as ``(reference, message)``, and the
    :class:`~ocitransport.mirror.options.RunOptions` every executor runs it with."""

    units: list[ImageUnit] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    options: RunOptions = field(default_factory=RunOptions)


def has_identifier(reference: str) -> bool:
    """Whether ``reference`` names a tag or digest (``repo:tag``, ``repo@digest``, ``oci:DIR:TAG``), not just a
    repository."""
    return _has_identifier(reference)


def identifier_of(ref: object) -> str:
    return ref.identifier  # type: ignore[attr-defined, no-any-return]


def choose_platforms(index: Manifest, platforms: Sequence[str]) -> tuple[list[Descriptor], Manifest | None]:
    """The children of ``index`` matching ``platforms``, and the filtered index to push when more than
    one matches (``None`` when exactly one does: that child goes under the tag). No match raises."""
    wanted = [parse_platform(p) for p in platforms]
    children = index.children()
    keep = [d for d in children if platform_matches(d.platform, wanted)]
    if not keep:
        have = ", ".join(sorted({d.platform_str for d in children if d.platform_str})) or "none"
        raise MirrorError(f"no manifest for platform {', '.join(platforms)} in the index (it has: {have})")
    if len(keep) == 1:
        return keep, None
    return keep, filter_index(index, keep)


def describe(exc: BaseException) -> str:
    """A one-line message for a failure (no traceback, no secrets)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, OCITransportError) else f"{type(exc).__name__}: {text}"


#: Bytes of source manifests a pipelined run keeps from planning for its executor (one GET per manifest
#: per run); past this, manifests are read again when copied.
KEPT_MANIFEST_BYTES = 64 << 20
_kept_bytes: weakref.WeakKeyDictionary[Session, int] = weakref.WeakKeyDictionary()


def keep_manifest(session: Session, manifest: Manifest) -> None:
    """Keep ``manifest`` in ``session.known_manifests`` (its copy then reads no second time), within
    :data:`KEPT_MANIFEST_BYTES` per session."""
    if manifest.digest in session.known_manifests:
        return
    used = _kept_bytes.get(session, 0) + len(manifest.raw)
    if used <= KEPT_MANIFEST_BYTES:
        _kept_bytes[session] = used
        session.known_manifests[manifest.digest] = manifest


async def plan_image(session: Session, source: str, destination: str, *, platforms: Sequence[str] = (),
                     insecure: bool = False, check_destination: bool = True, keep: bool = False) -> ImageUnit:
    """Resolve one copy: HEAD the source (and, with a platform filter on an index, GET it), HEAD the
    destination. Raises ``MirrorError`` for a source that does not exist.

    ``keep`` (a pipelined run): the destination is asked first, and when it does not have the reference
    (or cannot say), the source manifest is read with GET instead of HEAD and kept for the copy
    (:func:`keep_manifest`): the copy then starts without another round trip to the source. A reference
    the destination has is HEADed as always: Docker Hub's pull quota counts manifest GETs, not HEADs, and
    an up-to-date tag must not cost a pull (the destination is usually the near side: its answer costs
    less than a second round trip to the source)."""
    src = parse_reference(source, insecure=insecure)
    if not has_identifier(destination):
        destination = f"{parse_repository(destination, insecure=insecure).name}" + (
            f"@{identifier_of(src)}" if "@" in source else f":{identifier_of(src)}")
    dst = parse_reference(destination, insecure=insecure)

    async def at_destination() -> tuple[str, str] | Exception | None:
        try:
            rt = await session.push(dst.repository)
            return await session.head_manifest(rt, dst.repository, identifier_of(dst))
        except Exception as exc:  # noqa: BLE001 - an unreadable destination is simply not up to date
            return exc

    # Both HEADs go out together: a tag costs one round trip to plan, not two in a row.
    checking = asyncio.ensure_future(at_destination()) if check_destination else None
    try:
        pull = await session.pull(src.repository)
        top: Manifest | None = None
        fetch = keep and not isinstance(src.repository, LocalRepository)  # a layout costs no round trip
        if fetch and checking is not None:
            current = await asyncio.shield(checking)
            fetch = current is None or isinstance(current, Exception)
        if fetch:
            top = await _read_or_none(session, pull, src.repository, identifier_of(src))
            found = None if top is None else (top.digest, top.media_type)
        else:
            found = await session.head_manifest(pull, src.repository, identifier_of(src))
        if found is None:
            what = "digest" if "@" in source else "tag"
            raise MirrorError(f"{src.name}: {what} not found in {src.repository.name} (MANIFEST_UNKNOWN)")
        digest, media_type = found
        target = digest
        if platforms:
            if top is None:
                top = await read_manifest(session, pull, src.repository, digest)
            media_type = top.media_type
            if top.is_index:
                children_of(top, f"{src.repository.name}@{top.digest}", 1)
                chosen, filtered = choose_platforms(top, platforms)
                target = filtered.digest if filtered is not None else chosen[0].digest
        if isinstance(dst, Tag) is False and identifier_of(dst) != target:
            raise MirrorError(f"{dst.name}: the destination digest cannot hold {target} "
                              "(a platform filter changes the manifest; copy to a tag instead)")
    except BaseException:
        if checking is not None:
            checking.cancel()
        raise
    if keep and top is not None:
        keep_manifest(session, top)
    up_to_date = False
    if checking is not None:
        current = await checking
        if not isinstance(current, Exception):
            up_to_date = current is not None and current[0] == target
            if not up_to_date:
                session.stale[dst.name] = target
    return ImageUnit(src.name, dst.name, digest, target, media_type, up_to_date, tuple(platforms), insecure)


async def _read_or_none(session: Session, rt: RoundTripper, repo: Repository, ref: str) -> Manifest | None:
    """:func:`read_manifest`, or ``None`` when the registry answers 404 (the manifest does not exist)."""
    try:
        return await read_manifest(session, rt, repo, ref)
    except transport.Error as exc:
        if exc.status_code == 404:
            return None
        raise


async def _subjects(session: Session, unit: ImageUnit) -> list[str]:
    """The digests ``unit`` puts at its destination that may have referrers at the source: the top
    manifest (unless a platform filter replaces it) and the children of an index that are copied."""
    out = [unit.source_digest] if unit.source_digest and unit.target_digest == unit.source_digest else []
    if unit.media_type in INDEX_TYPES:
        src = unit.source_ref.repository
        index = await read_manifest(session, await session.pull(src), src, unit.source_digest)
        children = children_of(index, f"{src.name}@{index.digest}", 1)
        if unit.platforms:
            children = choose_platforms(index, unit.platforms)[0]
        out.extend(d.digest for d in children if d.digest not in out)
    return out


async def plan_referrers(session: Session, unit: ImageUnit, *, known_tags: Collection[str] | None = None,
                         max_depth: int = MAX_REFERRER_DEPTH, jobs: int = 8) -> tuple[Plan, set[str]]:
    """Units for the referrers of what ``unit`` copies (signatures, SBOMs, attestations: by the OCI 1.1
    referrers API, else the ``sha256-<hex>`` fallback tag, plus cosign's ``.sig`` / ``.att`` / ``.sbom``
    tags), and their referrers, ``max_depth`` levels deep. Each unit waits for its subject's unit.

    Also returns the source tags this accounts for (cosign tags planned, fallback tags read), which a
    repository mirror does not copy again as plain tags. ``known_tags``: every tag of the source
    repository, when listed (saves probing tags that do not exist). Failures are in ``Plan.errors``.
    """
    plan = Plan()
    consumed: set[str] = set()
    src = unit.source_ref.repository
    dst = unit.destination_ref.repository
    try:
        pull = await again(lambda: session.pull(src), src.name, backoff=session.backoff)
        frontier = [(digest, unit.destination)
                    for digest in await again(lambda: _subjects(session, unit), unit.source,
                                              backoff=session.backoff)]
    except LimitExceeded:  # the image's own unit fails with this line; saying it twice helps no one
        return plan, consumed
    except Exception as exc:  # noqa: BLE001 - the image itself is still copied
        plan.errors.append((unit.source, f"referrers: {describe(exc)}"))
        return plan, consumed
    fallback = FallbackIndex(session)
    listed: dict[str, set[str] | None] = {}  # subject -> what the destination's fallback tag lists
    seen = {unit.destination}
    limit = asyncio.Semaphore(max(jobs, 1))

    async def destination_has(found_digest: str, tag: str, subject: str) -> bool:
        try:
            push = await session.push(dst)
            current = await session.head_manifest(push, dst, tag or found_digest)
            if current is None or current[0] != found_digest:
                return False
            if tag or not await fallback.needed(push, dst, subject):
                return True
            if subject not in listed:
                listed[subject] = await fallback.listed(push, dst, subject)
            return found_digest in (listed[subject] or ())
        except Exception:  # noqa: BLE001 - an unreadable destination is simply not up to date
            return False

    async def one(subject: str, depends_on: str) -> list[ImageUnit] | tuple[str, str]:
        async with limit:
            try:
                found, read_tag = await again(
                    lambda: discover(session, pull, src, subject, known_tags=known_tags), f"{src.name}@{subject}",
                    backoff=session.backoff)
                if read_tag:
                    consumed.add(read_tag)
                units = []
                for item in found:
                    ident = f":{item.tag}" if item.tag else f"@{item.digest}"
                    units.append(ImageUnit(
                        f"{src.name}{ident}", f"{dst.name}{ident}", item.digest, item.digest, item.media_type,
                        await destination_has(item.digest, item.tag, subject), (), unit.insecure,
                        subject=f"{dst.name}@{subject}", depends_on=depends_on))
                    if item.tag:
                        consumed.add(item.tag)
                return units
            except Exception as exc:  # noqa: BLE001 - reported per subject
                return (f"{src.name}@{subject}", f"referrers: {describe(exc)}")

    for _ in range(max_depth):
        if not frontier:
            break
        results = await asyncio.gather(*(one(d, after) for d, after in frontier))
        frontier = []
        for result in results:
            if isinstance(result, tuple):
                plan.errors.append(result)
                continue
            for ref_unit in result:
                if ref_unit.destination in seen:
                    continue
                seen.add(ref_unit.destination)
                plan.units.append(ref_unit)
                frontier.append((ref_unit.source_digest, ref_unit.destination))
    return plan, consumed


#: What a streaming planner yields: a unit, or a planning failure ``(reference, message)``.
PlanItem = ImageUnit | tuple[str, str]
#: Where a planner puts what it found: ``emit(key, item)``; ``key`` orders the items of a collected
#: :class:`Plan` as plan-then-execute always ordered them (images by tag, then referrers, then left-over
#: referrer tags), whatever order they were found in.
Emit = Callable[[tuple[int, ...], PlanItem], None]


async def _plan_reference_into(emit: Emit, session: Session, source: str, destination: str, *,
                               platforms: Sequence[str] = (), insecure: bool = False, referrers: bool = True,
                               known_tags: Collection[str] | None = None, keep: bool = False) -> None:
    try:
        unit = await again(lambda: plan_image(session, source, destination, platforms=platforms,
                                              insecure=insecure, keep=keep), source, backoff=session.backoff)
    except (OCITransportError, ValueError) as exc:
        emit((0,), (source, describe(exc)))
        return
    emit((0,), unit)  # its copy may start now; its referrers are asked for meanwhile
    if referrers:
        more, _ = await plan_referrers(session, unit, known_tags=known_tags)
        found: list[PlanItem] = [*more.units, *more.errors]
        for n, item in enumerate(found):
            emit((1, n), item)


def collected(items: list[tuple[tuple[int, ...], PlanItem]]) -> Plan:
    """A :class:`Plan` of what a planner emitted, in key order; a destination planned twice (two tags of
    one image find the same referrers) is kept once, the first."""
    plan = Plan()
    seen: set[str] = set()
    for _, item in sorted(items, key=lambda pair: pair[0]):
        if isinstance(item, ImageUnit):
            if item.destination not in seen:
                seen.add(item.destination)
                plan.units.append(item)
        else:
            plan.errors.append(item)
    return plan


async def streamed(produce: Callable[[Emit], Awaitable[None]]) -> AsyncIterator[PlanItem]:
    """What ``produce`` emits, as it emits it (a unit whose destination came before is dropped), for an
    executor that starts copying while planning goes on. Closing the iterator cancels the planning."""
    queue: asyncio.Queue[PlanItem | None] = asyncio.Queue()

    async def run() -> None:
        try:
            await produce(lambda _, item: queue.put_nowait(item))
        finally:
            queue.put_nowait(None)

    task = asyncio.ensure_future(run())
    seen: set[str] = set()
    try:
        while (item := await queue.get()) is not None:
            if isinstance(item, ImageUnit):
                if item.destination in seen:
                    continue
                seen.add(item.destination)
            yield item
        await task  # a planner's own failure
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def plan_reference(session: Session, source: str, destination: str, *, platforms: Sequence[str] = (),
                         insecure: bool = False, referrers: bool = True,
                         known_tags: Collection[str] | None = None) -> Plan:
    """:func:`plan_image` plus, with ``referrers``, the units of its referrers (:func:`plan_referrers`).
    A source that cannot be planned is in ``Plan.errors``."""
    items: list[tuple[tuple[int, ...], PlanItem]] = []
    await _plan_reference_into(lambda key, item: items.append((key, item)), session, source, destination,
                               platforms=platforms, insecure=insecure, referrers=referrers, known_tags=known_tags)
    return collected(items)


def stream_reference(session: Session, source: str, destination: str, *, platforms: Sequence[str] = (),
                     insecure: bool = False, referrers: bool = True) -> AsyncIterator[PlanItem]:
    """:func:`plan_reference` as it goes: the image's unit as soon as it is planned (its source manifest
    kept for the copy), then its referrers' units and any failures."""
    return streamed(lambda emit: _plan_reference_into(emit, session, source, destination, platforms=platforms,
                                                      insecure=insecure, referrers=referrers, keep=True))


def _filter_tags(tags: list[str], include: Sequence[str] | None, exclude: Sequence[str] | None) -> list[str]:
    inc = [re.compile(p) for p in include or ()]
    exc = [re.compile(p) for p in exclude or ()]
    out = []
    for tag in tags:
        if inc and not any(r.search(tag) for r in inc):
            continue
        if any(r.search(tag) for r in exc):
            continue
        out.append(tag)
    return out


async def _plan_repository_into(emit: Emit, session: Session, source: str, destination: str, *,
                                tags: Sequence[str] | None = None, include: Sequence[str] | None = None,
                                exclude: Sequence[str] | None = None, platforms: Sequence[str] = (),
                                insecure: bool = False, jobs: int = 8, referrers: bool = True,
                                keep: bool = False) -> None:
    """The one repository planner (see :func:`plan_repository`), emitting each unit when it is planned.

    Every tag is planned at once (at most ``4 * jobs`` at a time) once the tag list is read; an image's
    referrers are asked for as soon as its unit was emitted. A failed tag list raises."""
    src_repo = parse_repository(source, insecure=insecure)
    dst_repo = parse_repository(destination, insecure=insecure)
    limit = asyncio.Semaphore(max(jobs, 1) * 4)
    known: set[str] | None = None
    consumed: set[str] = set()
    order: dict[str, int] = {}  # tag -> its place (each tag is planned once, however often it is given)
    deferred: list[str] = []
    tasks: set[asyncio.Future[None]] = set()

    def spawn(step: Awaitable[None]) -> None:
        task = asyncio.ensure_future(step)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def image(tag: str, key: tuple[int, ...], follow: bool) -> None:
        async with limit:
            try:
                unit = await again(lambda: plan_image(session, f"{src_repo.name}:{tag}", f"{dst_repo.name}:{tag}",
                                                      platforms=platforms, insecure=insecure, keep=keep),
                                   f"{src_repo.name}:{tag}", backoff=session.backoff)
            except Exception as exc:  # noqa: BLE001 - reported per tag
                emit(key, (f"{src_repo.name}:{tag}", describe(exc)))
                return
        emit(key, unit)
        if follow:
            spawn(referrers_of(unit, key[1]))

    async def referrers_of(unit: ImageUnit, place: int) -> None:
        async with limit:
            # Concurrency comes from the many units here; a unit's own subjects go two at a time.
            part, used = await plan_referrers(session, unit, known_tags=known, jobs=2)
        consumed.update(used)
        found: list[PlanItem] = [*part.units, *part.errors]
        for n, item in enumerate(found):
            emit((1, place, n), item)

    def take(names: list[str]) -> None:
        for tag in _filter_tags(names, include, exclude):
            if tag in order:
                continue
            order[tag] = len(order)
            if referrers and is_referrer_tag(tag):
                # Fallback and cosign tags wait: most belong to an image planned here and come as its referrers.
                deferred.append(tag)
            else:
                spawn(image(tag, (0, order[tag]), referrers))

    async def settle() -> None:
        while tasks:
            await asyncio.gather(*list(tasks))

    try:
        if tags is None:
            async def listing() -> list[str]:
                pull = await session.pull(src_repo)
                for attempt in range(MANIFEST_READS):
                    try:
                        return await session.list_tags(pull, src_repo)
                    except MirrorError as exc:  # a page that does not parse: maybe cut short on the way
                        if attempt + 1 >= MANIFEST_READS or isinstance(exc, LimitExceeded):
                            raise
                        session.retries += 1
                        delay = session.backoff.delay(attempt)
                        retry_log.info("listing the tags of %s again in %.1fs after: %s", src_repo.name, delay,
                                       describe(exc))
                        await asyncio.sleep(delay)
                raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

            # The whole list first: one over the limits (MAX_TAGS, MAX_TAG_LIST_BYTES) plans nothing, so
            # an endless list from a hostile registry costs no manifest request (tests/hostile/test_bounds.py).
            names = await again(listing, f"tags of {src_repo.name}", backoff=session.backoff)
            known = set(names)
            take(names)
        else:
            take(list(dict.fromkeys(tags)))
        await settle()
        for tag in deferred:
            if tag not in consumed:
                spawn(image(tag, (2, order[tag]), False))
        await settle()
    finally:
        for task in list(tasks):
            task.cancel()


async def plan_repository(session: Session, source: str, destination: str, *,
                          tags: Sequence[str] | None = None, include: Sequence[str] | None = None,
                          exclude: Sequence[str] | None = None, platforms: Sequence[str] = (),
                          insecure: bool = False, jobs: int = 8, referrers: bool = True) -> Plan:
    """Units for every tag of ``source`` (or the ``tags`` given), filtered by ``include`` / ``exclude``
    regular expressions (``re.search``), to the same tag in ``destination``.

    With ``referrers`` (the default), each image's referrers follow it (:func:`plan_referrers`); the
    fallback and cosign tags of an image that is planned are then not planned again as plain tags."""
    items: list[tuple[tuple[int, ...], PlanItem]] = []
    await _plan_repository_into(lambda key, item: items.append((key, item)), session, source, destination,
                                tags=tags, include=include, exclude=exclude, platforms=platforms,
                                insecure=insecure, jobs=jobs, referrers=referrers)
    return collected(items)


def stream_repositories(session: Session, pairs: Sequence[tuple[str, str]], *, tags: Sequence[str] | None = None,
                        include: Sequence[str] | None = None, exclude: Sequence[str] | None = None,
                        platforms: Sequence[str] = (), insecure: bool = False, jobs: int = 8,
                        referrers: bool = True) -> AsyncIterator[PlanItem]:
    """:func:`plan_repository` for each ``(source, destination)`` pair, as it goes: each unit as soon as
    it is planned (its source manifest kept for the copy); a repository whose tags cannot be listed is
    one failure ``(source, message)``."""
    async def produce(emit: Emit) -> None:
        for source, destination in pairs:
            try:
                await _plan_repository_into(emit, session, source, destination, tags=tags, include=include,
                                            exclude=exclude, platforms=platforms, insecure=insecure, jobs=jobs,
                                            referrers=referrers, keep=True)
            except (OCITransportError, ValueError) as exc:
                emit((), (source, describe(exc)))
    return streamed(produce)
