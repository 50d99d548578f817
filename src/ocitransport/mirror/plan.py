"""Planning: resolve references, list and filter tags, HEAD manifests, into independent image units.

A unit is a small frozen dataclass of strings: picklable (it can be shipped to another process or
machine) and idempotent (running it twice leaves the destination as running it once).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..exceptions import OCITransportError
from ..name import Repository, Tag, parse_reference
from .manifests import Descriptor, Manifest, filter_index, parse_platform, platform_matches
from .session import MirrorError, Session


@dataclass(frozen=True)
class ImageUnit:
    """One image (or index) to copy.

    ``source`` / ``destination``: full references (``host/repo:tag`` or ``host/repo@sha256:...``).
    ``source_digest``: what the source reference resolved to when planned (the executor copies exactly
    that manifest). ``target_digest``: what the destination reference will point at: the source digest,
    or with a platform filter the single chosen child or a filtered index. ``up_to_date``: the
    destination already pointed at ``target_digest`` when planned (nothing to do).
    """

    source: str
    destination: str
    source_digest: str = ""
    target_digest: str = ""
    media_type: str = ""
    up_to_date: bool = False
    platforms: tuple[str, ...] = ()
    insecure: bool = False


@dataclass
class Plan:
    """The units of a run, plus what could not be planned as ``(reference, message)``."""

    units: list[ImageUnit] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)


def has_identifier(reference: str) -> bool:
    """Whether ``reference`` names a tag or digest (``repo:tag``, ``repo@digest``), not just a repository."""
    return "@" in reference or ":" in reference.rsplit("/", 1)[-1]


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
        destination = f"{Repository(destination, insecure=insecure).name}" + (
            f"@{identifier_of(src)}" if "@" in source else f":{identifier_of(src)}")
    dst = parse_reference(destination, insecure=insecure)
    pull = await session.pull(src.repository)
    found = await session.head_manifest(pull, src.repository, identifier_of(src))
    if found is None:
        what = "digest" if "@" in source else "tag"
        raise MirrorError(f"{src.name}: {what} not found in {src.repository.name} (MANIFEST_UNKNOWN)")
    digest, media_type = found
    target = digest
    if platforms:
        top = await session.get_manifest(pull, src.repository, digest)
        media_type = top.media_type
        if top.is_index:
            keep, filtered = choose_platforms(top, platforms)
            target = filtered.digest if filtered is not None else keep[0].digest
    if isinstance(dst, Tag) is False and identifier_of(dst) != target:
        raise MirrorError(f"{dst.name}: the destination digest cannot hold {target} "
                          "(a platform filter changes the manifest; copy to a tag instead)")
    up_to_date = False
    if check_destination:
        push_repo = dst.repository
        try:
            rt = await session.push(push_repo)
            current = await session.head_manifest(rt, push_repo, identifier_of(dst))
        except Exception:  # noqa: BLE001 - an unreadable destination is simply not up to date
            current = None
        up_to_date = current is not None and current[0] == target
    return ImageUnit(src.name, dst.name, digest, target, media_type, up_to_date, tuple(platforms), insecure)


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
                          insecure: bool = False, jobs: int = 8) -> Plan:
    """Units for every tag of ``source`` (or the ``tags`` given), filtered by ``include`` / ``exclude``
    regular expressions (``re.search``), to the same tag in ``destination``."""
    src_repo = Repository(source, insecure=insecure)
    dst_repo = Repository(destination, insecure=insecure)
    plan = Plan()
    if tags is None:
        pull = await session.pull(src_repo)
        names = await session.list_tags(pull, src_repo)
    else:
        names = list(dict.fromkeys(tags))
    names = _filter_tags(names, include, exclude)
    limit = asyncio.Semaphore(max(jobs, 1) * 4)

    async def one(tag: str) -> ImageUnit | tuple[str, str]:
        async with limit:
            try:
                return await plan_image(session, f"{src_repo.name}:{tag}", f"{dst_repo.name}:{tag}",
                                        platforms=platforms, insecure=insecure)
            except Exception as exc:  # noqa: BLE001 - reported per tag
                return (f"{src_repo.name}:{tag}", describe(exc))

    for item in await asyncio.gather(*(one(t) for t in names)):
        if isinstance(item, ImageUnit):
            plan.units.append(item)
        else:
            plan.errors.append(item)
    return plan
