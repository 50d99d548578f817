"""Bulk mirroring: copy images and whole repositories between registries.

``copy(src, dst)`` copies one reference (an image, or an index with all or some of its platforms);
``mirror_repository(src_repo, dst_repo)`` copies every (or every selected) tag. Both plan first
(list tags, HEAD manifests, resolve indexes) into picklable ``ImageUnit``s, then execute them
concurrently on one Client, and return a ``Report``. ``plan_copy`` / ``plan_repository`` and
``execute`` expose the two halves (to inspect a plan, or to run units elsewhere).

Manifests are copied byte for byte (digests preserved); a manifest is pushed only once everything it
references is at the destination. Blobs are skipped when present, mounted across repositories when
the registry allows it, otherwise streamed from the source into the destination with their digest
verified on the way.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, TypedDict, TypeVar

from ..exceptions import OCITransportError
from .blobs import CHUNK_SIZE, CHUNK_THRESHOLD
from .concurrency import AUTO, Jobs, check_jobs, most_jobs
from .execute import Progress, execute_plan
from .manifests import ManifestError
from .plan import ImageUnit, Plan, describe, plan_reference
from .plan import plan_repository as _plan_repository
from .report import ImageResult, Report
from .session import DigestMismatch, MirrorError, PullQuota, Session
from .sync import PlanExecutor, SourceRegistry, SyncConfig, SyncConfigError, load_config, sync

if TYPE_CHECKING:
    from ..authn import Keychain
    from ..client import Client

__all__ = [
    "DigestMismatch",
    "ImageResult",
    "ImageUnit",
    "ManifestError",
    "MirrorError",
    "Plan",
    "PlanExecutor",
    "Progress",
    "PullQuota",
    "Report",
    "SourceRegistry",
    "SyncConfig",
    "SyncConfigError",
    "copy",
    "execute",
    "load_config",
    "mirror_repositories",
    "mirror_repository",
    "plan_copy",
    "plan_repository",
    "sync",
]

T = TypeVar("T")


def _run(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from sync code (on a helper thread when a loop already runs here)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())  # type: ignore[arg-type]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()  # type: ignore[arg-type]


class _PoolLimits(TypedDict):
    max_connections: int
    max_connections_per_host: int


def _pool_limits(jobs: int) -> _PoolLimits:
    """Connection-pool sizes for a Client that runs ``jobs`` images at once: a streamed copy holds a
    connection to each side, planning and blob checks a few more; below this the pool, not ``jobs``,
    would bound the concurrency (the Client's defaults are 128 in all, 16 per host)."""
    return _PoolLimits(max_connections=max(128, jobs * 4), max_connections_per_host=max(16, jobs * 2))


class _Owned:
    """The Client to use, created for ``jobs`` (and closed afterwards) when the caller gave none."""

    def __init__(self, client: Client | None, jobs: Jobs) -> None:
        self.given = client
        self.client = client
        self.jobs = jobs

    def __enter__(self) -> Client:
        if self.client is None:
            from ..client import Client

            self.client = Client(**_pool_limits(most_jobs(self.jobs)))
        return self.client

    def __exit__(self, *exc: object) -> None:
        if self.given is None and self.client is not None:
            self.client.close()


def _check_jobs(jobs: Jobs) -> None:
    check_jobs(jobs)


async def _plan_copy(session: Session, src: str, dst: str, platforms: Sequence[str], insecure: bool,
                     referrers: bool = True) -> Plan:
    return await plan_reference(session, src, dst, platforms=platforms, insecure=insecure, referrers=referrers)


def copy(src: str, dst: str, *, client: Client | None = None, keychain: Keychain | None = None,
         platforms: Sequence[str] | None = None, jobs: Jobs = AUTO, retries: int = 3,
         include_nondistributable: bool = False, insecure: bool = False, keep_going: bool = True,
         dry_run: bool = False, progress: Progress | None = None, referrers: bool = True,
         chunk_threshold: int = CHUNK_THRESHOLD, chunk_size: int = CHUNK_SIZE,
         allow_private_storage: Sequence[str] = ()) -> Report:
    """Copy one image reference ``src`` (``host/repo:tag`` or ``host/repo@sha256:...``) to ``dst``.

    ``dst`` is a full reference, or a repository (the source's tag or digest is kept). An index is
    copied with all its platforms, unless ``platforms`` (``["linux/amd64", "linux/arm64/v8"]``) is
    given: then the matching children are copied, and the tag gets the single match itself, or a
    filtered index when several match. ``insecure`` allows plain HTTP to any registry (loopback and
    private addresses are always allowed it). Credentials come from ``keychain`` (default: the docker
    config). Never raises for registry failures: they are in ``Report.errors``.

    ``referrers`` (default on): the image's referrers come along (signatures, SBOMs, attestations found
    by the OCI 1.1 referrers API, its ``sha256-<hex>`` tag fallback, and cosign's ``.sig`` / ``.att`` /
    ``.sbom`` tags), each after its subject, with their own referrers 4 levels deep.

    Blobs larger than ``chunk_threshold`` bytes (default 64 MiB) go up in ``chunk_size`` chunks (default
    16 MiB; ``PATCH``, resumable after a break), smaller ones in a single ``PUT``.

    ``allow_private_storage``: registries whose blob redirects and upload Locations may lead to private
    (RFC 1918 / ULA) addresses, such as on-prem MinIO (a registry on a loopback or private address gets
    this anyway; link-local, unspecified and multicast addresses are refused always).
    """
    _check_jobs(jobs)
    started = time.monotonic()
    with _Owned(client, jobs) as c:
        async def main() -> Report:
            session = Session(c, keychain, retries=retries, allow_private_storage=allow_private_storage)
            plan = await _plan_copy(session, src, dst, platforms or (), insecure, referrers)
            return await execute_plan(session, plan, jobs=jobs, retries=retries,
                                      include_nondistributable=include_nondistributable,
                                      keep_going=keep_going, dry_run=dry_run, progress=progress,
                                      started=started, chunk_threshold=chunk_threshold, chunk_size=chunk_size)
        return _run(main)


def mirror_repository(src_repo: str, dst_repo: str, *, tags: Sequence[str] | None = None,
                      include: Sequence[str] | None = None, exclude: Sequence[str] | None = None,
                      client: Client | None = None, keychain: Keychain | None = None,
                      platforms: Sequence[str] | None = None, jobs: Jobs = AUTO, retries: int = 3,
                      include_nondistributable: bool = False, insecure: bool = False,
                      keep_going: bool = True, dry_run: bool = False,
                      progress: Progress | None = None, referrers: bool = True,
                      chunk_threshold: int = CHUNK_THRESHOLD, chunk_size: int = CHUNK_SIZE,
                      allow_private_storage: Sequence[str] = ()) -> Report:
    """Copy every tag of ``src_repo`` (``host/repo``) to the same tag in ``dst_repo``.

    ``tags``: only these tags (default: all, listed with ``n=1000`` pages following ``Link``).
    ``include`` / ``exclude``: regular expressions (``re.search``) a tag must match / must not match.
    Tags whose destination already has the source's digest are skipped without touching blobs.
    With ``referrers``, the fallback and cosign tags of a copied image go with it as its referrers.
    Other options as for :func:`copy`.
    """
    return mirror_repositories([(src_repo, dst_repo)], tags=tags, include=include, exclude=exclude,
                               client=client, keychain=keychain, platforms=platforms, jobs=jobs,
                               retries=retries, include_nondistributable=include_nondistributable,
                               insecure=insecure, keep_going=keep_going, dry_run=dry_run, progress=progress,
                               referrers=referrers, chunk_threshold=chunk_threshold, chunk_size=chunk_size,
                               allow_private_storage=allow_private_storage)


def mirror_repositories(pairs: Sequence[tuple[str, str]], *, tags: Sequence[str] | None = None,
                        include: Sequence[str] | None = None, exclude: Sequence[str] | None = None,
                        client: Client | None = None, keychain: Keychain | None = None,
                        platforms: Sequence[str] | None = None, jobs: Jobs = AUTO, retries: int = 3,
                        include_nondistributable: bool = False, insecure: bool = False,
                        keep_going: bool = True, dry_run: bool = False,
                        progress: Progress | None = None, referrers: bool = True,
                        chunk_threshold: int = CHUNK_THRESHOLD, chunk_size: int = CHUNK_SIZE,
                        allow_private_storage: Sequence[str] = ()) -> Report:
    """:func:`mirror_repository` for several ``(src_repo, dst_repo)`` pairs in one run: one plan, one
    pool of workers, and blobs shared between destination repositories are uploaded once and mounted
    into the others."""
    _check_jobs(jobs)
    started = time.monotonic()
    with _Owned(client, jobs) as c:
        async def main() -> Report:
            session = Session(c, keychain, retries=retries, allow_private_storage=allow_private_storage)
            plan = Plan()
            for src_repo, dst_repo in pairs:
                try:
                    part = await _plan_repository(session, src_repo, dst_repo, tags=tags, include=include,
                                                  exclude=exclude, platforms=platforms or (),
                                                  insecure=insecure, jobs=most_jobs(jobs), referrers=referrers)
                except (OCITransportError, ValueError) as exc:
                    part = Plan(errors=[(src_repo, describe(exc))])
                plan.units.extend(part.units)
                plan.errors.extend(part.errors)
            return await execute_plan(session, plan, jobs=jobs, retries=retries,
                                      include_nondistributable=include_nondistributable,
                                      keep_going=keep_going, dry_run=dry_run, progress=progress,
                                      started=started, chunk_threshold=chunk_threshold, chunk_size=chunk_size)
        return _run(main)


def plan_copy(src: str, dst: str, *, client: Client | None = None, keychain: Keychain | None = None,
              platforms: Sequence[str] | None = None, insecure: bool = False, referrers: bool = True) -> Plan:
    """The plan :func:`copy` would run (reads the registries, writes nothing)."""
    with _Owned(client, 1) as c:
        return _run(lambda: _plan_copy(Session(c, keychain), src, dst, platforms or (), insecure, referrers))


def plan_repository(src_repo: str, dst_repo: str, *, tags: Sequence[str] | None = None,
                    include: Sequence[str] | None = None, exclude: Sequence[str] | None = None,
                    client: Client | None = None, keychain: Keychain | None = None,
                    platforms: Sequence[str] | None = None, insecure: bool = False, jobs: Jobs = AUTO,
                    referrers: bool = True) -> Plan:
    """The plan :func:`mirror_repository` would run (reads the registries, writes nothing)."""
    with _Owned(client, jobs) as c:
        return _run(lambda: _plan_repository(Session(c, keychain), src_repo, dst_repo, tags=tags,
                                             include=include, exclude=exclude, platforms=platforms or (),
                                             insecure=insecure, jobs=most_jobs(jobs), referrers=referrers))


def execute(units: Iterable[ImageUnit], *, client: Client | None = None, keychain: Keychain | None = None,
            jobs: Jobs = AUTO, retries: int = 3, include_nondistributable: bool = False, keep_going: bool = True,
            progress: Progress | None = None, chunk_threshold: int = CHUNK_THRESHOLD,
            chunk_size: int = CHUNK_SIZE, allow_private_storage: Sequence[str] = ()) -> Report:
    """Run planned units (from any plan, possibly made elsewhere) and report."""
    _check_jobs(jobs)
    started = time.monotonic()
    plan = Plan(units=list(units))
    with _Owned(client, jobs) as c:
        return _run(lambda: execute_plan(Session(c, keychain, retries=retries,
                                                 allow_private_storage=allow_private_storage), plan, jobs=jobs, retries=retries,
                                     include_nondistributable=include_nondistributable, keep_going=keep_going,
                                     dry_run=False, progress=progress, started=started,
                                     chunk_threshold=chunk_threshold, chunk_size=chunk_size))
