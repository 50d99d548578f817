"""The mirror's public functions: ``copy``, ``mirror_repository``, ``mirror_repositories``, ``plan_copy``,
``plan_repository`` and ``execute``. Each builds one :class:`RunOptions` from its keywords, plans, and runs
the plan on the local executor: ``copy`` and the mirrors pipelined (an image's copy starts as soon as it is
planned), a dry run and ``execute`` plan first."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, TypeVar

from ..exceptions import OCITransportError
from .blobs import CHUNK_SIZE, CHUNK_THRESHOLD
from .concurrency import AUTO, Jobs, most_jobs
from .execute import Progress, execute_plan, execute_stream
from .options import PoolLimits, RunOptions, pool_limits
from .plan import ImageUnit, Plan, describe, plan_reference, stream_reference, stream_repositories
from .plan import plan_repository as _plan_repository
from .report import Report
from .session import Session

if TYPE_CHECKING:
    from ..authn import Keychain
    from ..client import Client

__all__ = ["copy", "execute", "mirror_repositories", "mirror_repository", "plan_copy", "plan_repository"]

T = TypeVar("T")


def _run(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from sync code (on a helper thread when a loop already runs here)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())  # type: ignore[arg-type]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()  # type: ignore[arg-type]


def _pool_limits(jobs: int) -> PoolLimits:
    """Connection-pool sizes for ``jobs`` images at once (see :func:`.options.pool_limits`)."""
    return pool_limits(jobs)


class _Owned:
    """The Client to use, created for ``jobs`` (and closed afterwards) when the caller gave none."""

    def __init__(self, client: Client | None, jobs: Jobs) -> None:
        self.given = client
        self.client = client
        self.jobs = jobs

    def __enter__(self) -> Client:
        if self.client is None:
            from ..client import Client

            self.client = Client(**pool_limits(most_jobs(self.jobs)))
        return self.client

    def __exit__(self, *exc: object) -> None:
        if self.given is None and self.client is not None:
            self.client.close()


def _options(jobs: Jobs, retries: int, include_nondistributable: bool, chunk_threshold: int, chunk_size: int,
             platforms: Sequence[str] | None, referrers: bool, allow_private_storage: Sequence[str]) -> RunOptions:
    """The run's options from the library keywords (validated once, here)."""
    return RunOptions().with_(jobs=jobs, retries=max(retries, 0), include_nondistributable=include_nondistributable,
                              chunk_threshold=chunk_threshold, chunk_size=chunk_size, platforms=platforms or (),
                              referrers=referrers, allow_private_storage=allow_private_storage)


def _session(client: Client, keychain: Keychain | None, options: RunOptions) -> Session:
    """The Session a run plans and executes on, as ``options`` says."""
    return Session(client, keychain, retries=options.retries, allow_private_storage=options.allow_private_storage)


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
    options = _options(jobs, retries, include_nondistributable, chunk_threshold, chunk_size, platforms, referrers,
                       allow_private_storage)
    started = time.monotonic()
    with _Owned(client, jobs) as c:
        async def main() -> Report:
            session = _session(c, keychain, options)
            if not dry_run:  # the copy starts as soon as the image is planned; referrers join meanwhile
                items = stream_reference(session, src, dst, platforms=options.platforms, insecure=insecure,
                                         referrers=referrers)
                return await execute_stream(session, items, options, keep_going=keep_going, progress=progress,
                                            started=started)
            plan = await _plan_copy(session, src, dst, options.platforms, insecure, referrers)
            plan.options = options
            return await execute_plan(session, plan, keep_going=keep_going, dry_run=dry_run, progress=progress,
                                      started=started)
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
    options = _options(jobs, retries, include_nondistributable, chunk_threshold, chunk_size, platforms, referrers,
                       allow_private_storage)
    started = time.monotonic()
    with _Owned(client, jobs) as c:
        async def main() -> Report:
            session = _session(c, keychain, options)
            if not dry_run:  # each image's copy starts as soon as it is planned
                items = stream_repositories(session, pairs, tags=tags, include=include, exclude=exclude,
                                            platforms=platforms or (), insecure=insecure, jobs=most_jobs(jobs),
                                            referrers=referrers)
                return await execute_stream(session, items, options, keep_going=keep_going, progress=progress,
                                            started=started)
            plan = Plan(options=options)
            for src_repo, dst_repo in pairs:
                try:
                    part = await _plan_repository(session, src_repo, dst_repo, tags=tags, include=include,
                                                  exclude=exclude, platforms=platforms or (),
                                                  insecure=insecure, jobs=most_jobs(jobs), referrers=referrers)
                except (OCITransportError, ValueError) as exc:
                    part = Plan(errors=[(src_repo, describe(exc))])
                plan.units.extend(part.units)
                plan.errors.extend(part.errors)
            return await execute_plan(session, plan, keep_going=keep_going, dry_run=dry_run, progress=progress,
                                      started=started)
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
    options = _options(jobs, retries, include_nondistributable, chunk_threshold, chunk_size, (), True,
                       allow_private_storage)
    started = time.monotonic()
    plan = Plan(units=list(units), options=options)
    with _Owned(client, jobs) as c:
        return _run(lambda: execute_plan(_session(c, keychain, options), plan, keep_going=keep_going,
                                         dry_run=False, progress=progress, started=started))
