"""Referrers: the signatures, SBOMs and attestations attached to an image, found and recorded.

Finding them at the source, for a subject manifest ``sha256:<hex>``:

- the OCI 1.1 referrers API, ``GET /v2/<name>/referrers/<digest>`` (an image index of descriptors);
- when the registry has no such API (distribution 2.8 answers 404), the tag schema fallback: the tag
  ``sha256-<hex>`` holds an image index listing the referrers;
- cosign's tags ``sha256-<hex>.sig``, ``.att`` and ``.sbom`` (cosign signs without ``subject``, so only
  the tag ties a signature to its image). These are copied as tags.

At the destination, pushing a manifest with ``subject`` registers it when the registry has the
referrers API. When it has not, :class:`FallbackIndex` adds the referrer to the ``sha256-<hex>`` tag's
index, merged with what is already there (never dropping an entry).

Whether a registry has the API is asked once per registry and session (:func:`referrers_api`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from ..name import Repository, is_digest, shown
from ..roundtrip import RoundTripper
from .manifests import IMAGE_TYPES, INDEX_TYPES, OCI_INDEX, Manifest, parse_manifest
from .session import MirrorError, Session

log = logging.getLogger("ocitransport.mirror")

#: How far referrers of referrers are followed (image <- SBOM <- signature of the SBOM <- ...).
MAX_REFERRER_DEPTH = 4
#: cosign's tag suffixes: signatures, attestations, attached SBOMs.
COSIGN_SUFFIXES = (".sig", ".att", ".sbom")

#: Per session: registry name -> whether it has the referrers API (asked once per run; a future while
#: the first answer is awaited, so that concurrent planners do not all ask).
_api_support: weakref.WeakKeyDictionary[Session, dict[str, bool | asyncio.Future[bool]]] = \
    weakref.WeakKeyDictionary()

def fallback_tag(digest: str) -> str:
    """The tag schema fallback's tag for a subject: ``<alg>-<hex>`` (``sha256-0123...``), the algorithm
    cut to 32 characters and the encoded part to 64, as the distribution spec says."""
    algorithm, _, encoded = digest.partition(":")
    return f"{algorithm[:32]}-{encoded[:64]}"


def cosign_tags(digest: str) -> list[str]:
    """cosign's tags for a subject: ``sha256-<hex>.sig``, ``.att``, ``.sbom``."""
    base = digest.replace(":", "-")
    return [base + suffix for suffix in COSIGN_SUFFIXES]


def is_referrer_tag(tag: str) -> bool:
    """Whether ``tag`` looks like a fallback or cosign tag (``sha256-<64 hex>[.sig|.att|.sbom]``)."""
    base = next((tag[: -len(s)] for s in COSIGN_SUFFIXES if tag.endswith(s)), tag)
    algorithm, _, encoded = base.partition("-")
    return algorithm == "sha256" and len(encoded) == 64 and all(c in "0123456789abcdef" for c in encoded)


@dataclass(frozen=True)
class Found:
    """One referrer found at the source: a manifest by ``digest`` (found by the API or in the fallback
    index), or, with ``tag``, a cosign tag (copied as that tag)."""

    digest: str
    media_type: str
    tag: str = ""


async def referrers_api(session: Session, rt: RoundTripper, repo: Repository,
                        digest: str) -> list[dict[str, Any]] | None:
    """The referrers API answer for ``digest`` in ``repo`` (``None`` when the registry has none; once
    it said so, it is not asked again in this session)."""
    known = _api_support.setdefault(session, {})
    state = known.get(repo.registry.name)
    if isinstance(state, asyncio.Future):
        state = await asyncio.shield(state)
    if state is False:
        return None
    if state is True:
        return await session.list_referrers(rt, repo, digest)
    asked: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    known[repo.registry.name] = asked
    try:
        entries = await session.list_referrers(rt, repo, digest)
    except BaseException:
        del known[repo.registry.name]  # no answer: the next caller asks again
        asked.set_result(True)  # waiters ask for themselves (and see the error themselves)
        raise
    known[repo.registry.name] = entries is not None
    asked.set_result(entries is not None)
    return entries


async def has_referrers_api(session: Session, rt: RoundTripper, repo: Repository, digest: str) -> bool:
    """Whether ``repo``'s registry has the referrers API (asked with ``digest`` the first time only)."""
    state = _api_support.setdefault(session, {}).get(repo.registry.name)
    if isinstance(state, asyncio.Future):
        state = await asyncio.shield(state)
    if state is not None:
        return state
    return await referrers_api(session, rt, repo, digest) is not None


def _copyable(media_type: str, digest: str, where: str) -> bool:
    """Whether a listed referrer is a manifest we copy; a digest or media type that breaks the grammar
    (``sha256:<hex>/../..``) is refused with one line, before it can reach a URL."""
    if not is_digest(digest):
        log.warning("not copying a referrer listed by %s: invalid digest %s", where, shown(digest))
        return False
    if media_type in IMAGE_TYPES or media_type in INDEX_TYPES:
        return True
    log.warning("not copying referrer %s listed by %s: unsupported media type %s", digest, where,
                shown(media_type))
    return False


async def discover(session: Session, rt: RoundTripper, repo: Repository, digest: str, *,
                   known_tags: Collection[str] | None = None) -> tuple[list[Found], str]:
    """The referrers of manifest ``digest`` in ``repo``, and the fallback tag read for them (``""`` when
    the referrers API answered or there is no such tag).

    ``known_tags``: every tag of ``repo`` when the caller has listed them; then only the fallback and
    cosign tags in it are fetched (no request for the usual case of an unsigned image)."""
    found: list[Found] = []

    async def listed() -> tuple[list[dict[str, Any]] | None, str]:
        tag = fallback_tag(digest)
        probe = known_tags is None or tag in known_tags
        head = None
        if probe and _api_support.get(session, {}).get(repo.registry.name) is None:
            # Whether the registry has the API is not known yet: its fallback tag is asked for at the
            # same time (one HEAD more where the API answers, one round trip less where it does not).
            both = await asyncio.gather(referrers_api(session, rt, repo, digest),
                                        session.head_manifest(rt, repo, tag), return_exceptions=True)
            if isinstance(both[0], BaseException):
                raise both[0]
            entries = both[0]
            if entries is not None:
                return entries, ""
            if isinstance(both[1], BaseException):
                raise both[1]
            head, probe = both[1], False
        else:
            entries = await referrers_api(session, rt, repo, digest)
            if entries is not None:
                return entries, ""
        if probe:
            head = await session.head_manifest(rt, repo, tag)
        if head is None:
            return None, ""
        index = await session.get_manifest(rt, repo, tag)
        if index.is_index:
            return [dict(m) for m in index.data.get("manifests") or [] if isinstance(m, dict)], tag
        log.warning("%s:%s is not an index of referrers; ignored", repo.name, tag)
        return None, tag

    wanted = [t for t in cosign_tags(digest) if known_tags is None or t in known_tags]
    # The index (API or fallback tag) and the cosign tags are asked for together: from a registry
    # 100 ms away each round trip in turn cost every image 0.1 s more (benchmarks/bench_distance.py).
    answers = await asyncio.gather(listed(), *(session.head_manifest(rt, repo, t) for t in wanted),
                                   return_exceptions=True)
    failed = next((a for a in answers if isinstance(a, BaseException)), None)
    if failed is not None:
        raise failed
    (entries, read_tag), heads = answers[0], answers[1:]
    for entry in entries or ():
        child, media_type = entry.get("digest"), entry.get("mediaType")
        if isinstance(child, str) and isinstance(media_type, str) and child != digest \
                and _copyable(media_type, child, f"{repo.name}@{digest}"):
            found.append(Found(child, media_type))

    for tag, head in zip(wanted, heads):
        # A registry may HEAD without Content-Type: the tag is then copied and its type found on GET.
        if head is not None and (not head[1] or _copyable(head[1], head[0], f"{repo.name}:{tag}")):
            found.append(Found(head[0], head[1], tag))
    return found, read_tag


class FallbackIndex:
    """Keeps destination fallback tags (``sha256-<hex>``) listing the referrers pushed there, for
    registries without the referrers API. Updates of one tag are serialised (read, merge, write);
    entries already in the tag are kept, whoever wrote them."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def needed(self, rt: RoundTripper, repo: Repository, subject: str) -> bool:
        """Whether ``repo``'s registry needs fallback tags (it has no referrers API)."""
        return not await has_referrers_api(self.session, rt, repo, subject)

    async def listed(self, rt: RoundTripper, repo: Repository, subject: str) -> set[str]:
        """The digests the fallback tag of ``subject`` lists in ``repo`` (empty when there is none)."""
        current = await self._current(rt, repo, subject)
        entries = current.data.get("manifests") or [] if current is not None else []
        return {m["digest"] for m in entries if isinstance(m, dict) and isinstance(m.get("digest"), str)}

    async def _current(self, rt: RoundTripper, repo: Repository, subject: str) -> Manifest | None:
        tag = fallback_tag(subject)
        if await self.session.head_manifest(rt, repo, tag) is None:
            return None
        current = await self.session.get_manifest(rt, repo, tag)
        if not current.is_index:
            raise MirrorError(f"{repo.name}:{tag} is not an index of referrers ({current.media_type}); "
                              "not overwriting it")
        return current

    async def record(self, rt: RoundTripper, repo: Repository, subject: str, referrer: str) -> bool:
        """Make the fallback tag of ``subject`` in ``repo`` list manifest ``referrer`` (already pushed
        there). ``True`` when the tag was written, ``False`` when it already listed it."""
        key = (repo.name, subject)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            current = await self._current(rt, repo, subject)
            entries = list(current.data.get("manifests") or []) if current is not None else []
            if any(isinstance(m, dict) and m.get("digest") == referrer for m in entries):
                return False
            manifest = await self.session.get_manifest(rt, repo, referrer)
            data: dict[str, Any] = dict(current.data) if current is not None else {
                "schemaVersion": 2, "mediaType": OCI_INDEX}
            data["manifests"] = [*entries, manifest.referrer_entry()]
            raw = json.dumps(data, indent=2).encode()
            media_type = current.media_type if current is not None else OCI_INDEX
            index = parse_manifest(raw, media_type, where=f"{repo.name}:{fallback_tag(subject)}")
            await self.session.put_manifest(rt, repo, fallback_tag(subject), index)
            log.info("listed referrer %s in %s:%s", referrer, repo.name, fallback_tag(subject))
            return True


__all__ = ["COSIGN_SUFFIXES", "MAX_REFERRER_DEPTH", "FallbackIndex", "Found", "cosign_tags", "discover",
           "fallback_tag", "has_referrers_api", "is_referrer_tag", "referrers_api"]
