"""Planning: resolve references, list and filter tags, HEAD manifests, into independent image units.

A unit is a small frozen dataclass of strings: picklable (it can be shipped to another process or
machine) and idempotent (running it twice leaves the destination as running it once).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Awaitable, Callable, Collection, Sequence
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
from .targets import has_identifier as _has_identifier
from .targets import parse_reference, parse_repository

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


async def plan_image(session: Session, source: str, destination: str, *, platforms: Sequence[str] = (),
                     insecure: bool = False, check_destination: bool = True) -> ImageUnit:
    """Resolve one copy: HEAD the source (and, with a platform filter on an index, GET it), HEAD the
    destination. Raises ``MirrorError`` for a source that does not exist."""
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
        found = await session.head_manifest(pull, src.repository, identifier_of(src))
        if found is None:
            what = "digest" if "@" in source else "tag"
            raise MirrorError(f"{src.name}: {what} not found in {src.repository.name} (MANIFEST_UNKNOWN)")
        digest, media_type = found
        target = digest
        if platforms:
            top = await read_manifest(session, pull, src.repository, digest)
            media_type = top.media_type
            if top.is_index:
                children_of(top, f"{src.repository.name}@{top.digest}", 1)
                keep, filtered = choose_platforms(top, platforms)
                target = filtered.digest if filtered is not None else keep[0].digest
        if isinstance(dst, Tag) is False and identifier_of(dst) != target:
            raise MirrorError(f"{dst.name}: the destination digest cannot hold {target} "
                              "(a platform filter changes the manifest; copy to a tag instead)")
    except BaseException:
        if checking is not None:
            checking.cancel()
        raise
    up_to_date = False
    if checking is not None:
        current = await checking
        if not isinstance(current, Exception):
            up_to_date = current is not None and current[0] == target
            if not up_to_date:
                session.stale[dst.name] = target
    return ImageUnit(src.name, dst.name, digest, target, media_type, up_to_date, tuple(platforms), insecure)


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


async def plan_reference(session: Session, source: str, destination: str, *, platforms: Sequence[str] = (),
                         insecure: bool = False, referrers: bool = True,
                         known_tags: Collection[str] | None = None) -> Plan:
    """:func:`plan_image` plus, with ``referrers``, the units of its referrers (:func:`plan_referrers`).
    A source that cannot be planned is in ``Plan.errors``."""
    plan = Plan()
    try:
        unit = await again(lambda: plan_image(session, source, destination, platforms=platforms,
                                              insecure=insecure), source, backoff=session.backoff)
    except (OCITransportError, ValueError) as exc:
        plan.errors.append((source, describe(exc)))
        return plan
    plan.units.append(unit)
    if referrers:
        more, _ = await plan_referrers(session, unit, known_tags=known_tags)
        plan.units.extend(more.units)
        plan.errors.extend(more.errors)
    return plan


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


async def plan_repository(session: Session, source: str, destination: str, *,
                          tags: Sequence[str] | None = None, include: Sequence[str] | None = None,
                          exclude: Sequence[str] | None = None, platforms: Sequence[str] = (),
                          insecure: bool = False, jobs: int = 8, referrers: bool = True) -> Plan:
    """Units for every tag of ``source`` (or the ``tags`` given), filtered by ``include`` / ``exclude``
    regular expressions (``re.search``), to the same tag in ``destination``.

    With ``referrers`` (the default), each image's referrers follow it (:func:`plan_referrers`); the
    fallback and cosign tags of an image that is planned are then not planned again as plain tags."""
    src_repo = parse_repository(source, insecure=insecure)
    dst_repo = parse_repository(destination, insecure=insecure)
    plan = Plan()
    known: set[str] | None = None
    if tags is None:
        async def listed() -> list[str]:
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

        names = await again(listed, f"tags of {src_repo.name}", backoff=session.backoff)
        known = set(names)
    else:
        names = list(dict.fromkeys(tags))
    names = _filter_tags(names, include, exclude)
    deferred: list[str] = []
    if referrers:
        # Fallback and cosign tags wait: most belong to an image planned here and come as its referrers.
        deferred = [t for t in names if is_referrer_tag(t)]
        names = [t for t in names if not is_referrer_tag(t)]
    limit = asyncio.Semaphore(max(jobs, 1) * 4)

    async def one(tag: str) -> ImageUnit | tuple[str, str]:
        async with limit:
            try:
                return await again(lambda: plan_image(session, f"{src_repo.name}:{tag}",
                                                      f"{dst_repo.name}:{tag}", platforms=platforms,
                                                      insecure=insecure), f"{src_repo.name}:{tag}",
                                    backoff=session.backoff)
            except Exception as exc:  # noqa: BLE001 - reported per tag
                return (f"{src_repo.name}:{tag}", describe(exc))

    for item in await asyncio.gather(*(one(t) for t in names)):
        if isinstance(item, ImageUnit):
            plan.units.append(item)
        else:
            plan.errors.append(item)
    if not referrers:
        return plan
    consumed: set[str] = set()
    seen = {u.destination for u in plan.units}

    async def of(unit: ImageUnit) -> tuple[Plan, set[str]]:
        async with limit:
            # Concurrency comes from the many units here; a unit's own subjects go two at a time.
            return await plan_referrers(session, unit, known_tags=known, jobs=2)

    for part, used in await asyncio.gather(*(of(u) for u in list(plan.units))):
        consumed |= used
        plan.errors.extend(part.errors)
        for unit in part.units:  # two tags of one image find the same referrers: keep the first
            if unit.destination not in seen:
                seen.add(unit.destination)
                plan.units.append(unit)
    for item in await asyncio.gather(*(one(t) for t in deferred if t not in consumed)):
        if isinstance(item, ImageUnit):
            if item.destination not in seen:
                plan.units.append(item)
        else:
            plan.errors.append(item)
    return plan
