"""Sync: mirror the images a sync file lists into one destination (``ocitransport sync FILE``).

The file's format, model and validation are in :mod:`.syncfile`. :func:`sync` plans on the calling side
(tag lists, semver and regex selection, HEADs of both sides) with the file's credentials and TLS settings.
The local executor copies each image as soon as it is planned; any object with the :class:`PlanExecutor`
method (``mirror.distributed``) gets the whole :class:`Plan` (with its :class:`RunOptions`) first.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..authn import Keychain
from ..exceptions import OCITransportError
from ..name import Repository
from ..transport.autotune import AUTO_INITIAL
from .blobs import CHUNK_SIZE, CHUNK_THRESHOLD
from .concurrency import AUTO, Jobs, check_jobs, most_jobs
from .execute import Progress, execute_plan, execute_stream
from .options import RegistryRouter, RunOptions, cert_dir_files, tls_transport
from .plan import (
    Emit,
    ImageUnit,
    Plan,
    PlanItem,
    _plan_reference_into,
    _plan_repository_into,
    describe,
    streamed,
)
from .report import Report
from .session import PullQuota, Session
from .syncfile import (
    ImageSelection,
    SourceRegistry,
    SyncConfig,
    SyncConfigError,
    SyncKeychain,
    load_config,
    tls_of,
)
from .targets import is_local, local_refused, local_repository

if TYPE_CHECKING:
    from ..client import Client

#: Moved to :mod:`.options` (kept here for callers of the old names).
_cert_dir = cert_dir_files
_RegistryRouter = RegistryRouter

__all__ = [
    "ImageSelection", "PlanExecutor", "SourceRegistry", "SyncConfig", "SyncConfigError", "SyncKeychain", "load_config",
    "plan_sync", "sync",
]

log = logging.getLogger("ocitransport.mirror.sync")

# ------------------------------------------------------------------------------------------- executors

@runtime_checkable
class PlanExecutor(Protocol):
    """Runs a :class:`Plan` somewhere and reports (``mirror.distributed.DaskExecutor`` is one)."""

    def execute(self, plan: Plan, *, jobs: int, retries: int, keep_going: bool, include_nondistributable: bool,
                progress: Progress | None) -> Report: ...


# ------------------------------------------------------------------------------------------- planning

def _emit_under(emit: Emit, prefix: tuple[int, ...], key: tuple[int, ...], item: PlanItem) -> None:
    emit((*prefix, *key), item)


async def _plan_sync_into(emit: Emit, session: Session, config: SyncConfig, *, jobs: Jobs | None = None,
                          platforms: Sequence[str] | None = None, include: Sequence[str] = (),
                          exclude: Sequence[str] = (), insecure: bool = False, referrers: bool | None = None,
                          source: str | None = None, keep: bool = False) -> None:
    """The one sync planner (see :func:`plan_sync`): emits each unit and failure as it is found, keyed by
    the selection's place in the file."""
    width = most_jobs(jobs or config.jobs)
    limit = asyncio.Semaphore(max(width, 1))
    layout = local_repository(source) if source else None

    async def one(n: int, source: SourceRegistry, selection: ImageSelection) -> None:
        named = Repository(f"{source.registry}/{selection.repository}", insecure=insecure or source.insecure)
        dst = config.destination_repository(named, selection.repository)
        src = named if layout is None else layout.registry.repo(named.name)
        plats = tuple(platforms) if platforms else source.platforms
        unsafe = insecure or source.insecure
        source = replace(source, include=(*source.include, *include), exclude=(*source.exclude, *exclude),
                         referrers=source.referrers if referrers is None else referrers)
        async with limit:
            try:
                listed: list[str] = []
                if selection.needs_tag_list:
                    listed = await session.list_tags(await session.pull(src), src)
                tags = source.filter(selection.select(listed))
                await _plan_repository_into(lambda key, item: emit((n, 0, *key), item), session, src.name, dst,
                                            tags=tags, platforms=plats, insecure=unsafe, jobs=width,
                                            referrers=source.referrers, keep=keep)
            except (OCITransportError, ValueError) as exc:
                emit((n,), (src.name, describe(exc)))
                return
            for d, digest in enumerate(selection.digests):  # the image and, with referrers, its referrers
                await _plan_reference_into(functools.partial(_emit_under, emit, (n, 1, d)), session,
                                           f"{src.name}@{digest}", f"{dst}@{digest}", platforms=plats,
                                           insecure=unsafe, referrers=source.referrers, keep=keep)
            if selection.needs_tag_list and not tags and not selection.digests:
                log.info("%s: no tag selected (of %d listed)", src.name, len(listed))

    await asyncio.gather(*(one(n, s, sel) for n, (s, sel) in
                           enumerate((s, sel) for s in config.registries for sel in s.images)))


class _Placement:
    """Destinations taken so far: a second source mapping to one is a failure, not a second unit."""

    def __init__(self) -> None:
        self.placed: dict[str, str] = {}  # destination reference -> source reference

    def admit(self, item: PlanItem) -> PlanItem | None:
        """``item``, or the failure it stands for, or ``None`` (a destination already planned from the
        same source)."""
        if not isinstance(item, ImageUnit):
            return item
        earlier = self.placed.get(item.destination)
        if earlier is None:
            self.placed[item.destination] = item.source
            return item
        if earlier != item.source:
            return (item.source, (f"{item.source} and {earlier} both map to {item.destination} "
                                  "(set 'scoped: true' to keep their paths apart)"))
        return None


async def plan_sync(session: Session, config: SyncConfig, *, jobs: Jobs | None = None,
                    platforms: Sequence[str] | None = None, include: Sequence[str] = (),
                    exclude: Sequence[str] = (), insecure: bool = False,
                    referrers: bool | None = None, source: str | None = None) -> Plan:
    """The plan of a sync run: every selected image of every source, deduplicated by destination.

    ``source``: an OCI layout or archive (``oci:DIR``, ``oci-archive:FILE``) every source repository is
    read from instead of its registry, under its full name (what a sync to ``oci:DIR`` wrote there).

    ``platforms`` and ``referrers`` override the file's when given; ``include`` / ``exclude`` add to
    every registry's filters; ``insecure`` allows plain HTTP everywhere. Planning failures are
    ``Plan.errors``.
    """
    items: list[tuple[tuple[int, ...], PlanItem]] = []
    await _plan_sync_into(lambda key, item: items.append((key, item)), session, config, jobs=jobs,
                          platforms=platforms, include=include, exclude=exclude, insecure=insecure,
                          referrers=referrers, source=source)
    plan = Plan()
    placement = _Placement()
    for _, item in sorted(items, key=lambda pair: pair[0]):
        admitted = placement.admit(item)
        if isinstance(admitted, ImageUnit):
            plan.units.append(admitted)
        elif admitted is not None:
            plan.errors.append(admitted)
    return plan


def stream_sync(session: Session, config: SyncConfig, *, jobs: Jobs | None = None,
                platforms: Sequence[str] | None = None, include: Sequence[str] = (), exclude: Sequence[str] = (),
                insecure: bool = False, referrers: bool | None = None,
                source: str | None = None) -> AsyncIterator[PlanItem]:
    """:func:`plan_sync` as it goes (for the local executor): each unit as soon as it is planned, its
    source manifest kept for the copy."""
    placement = _Placement()

    async def produce(emit: Emit) -> None:
        def admit(key: tuple[int, ...], item: PlanItem) -> None:
            admitted = placement.admit(item)
            if admitted is not None:
                emit(key, admitted)

        await _plan_sync_into(admit, session, config, jobs=jobs, platforms=platforms, include=include,
                              exclude=exclude, insecure=insecure, referrers=referrers, source=source, keep=True)
    return streamed(produce)


# ------------------------------------------------------------------------------------------- sync

def check_source(source: str | None) -> None:
    """Refuse a ``source`` that is not a whole OCI layout or archive (:class:`SyncConfigError`)."""
    if not source:
        return
    try:
        repo = local_repository(source) if is_local(source) else None
    except ValueError as exc:
        raise SyncConfigError(f"invalid source {source!r}: {exc}") from None
    if repo is None or repo.path:
        raise SyncConfigError(f"invalid source {source!r}: expected an OCI layout or archive (oci:DIR or "
                              "oci-archive:FILE)")



def _file_of(config: SyncConfig) -> str:
    """The absolute path of the file ``config`` was read from ("" for a sync given as data)."""
    return os.path.abspath(config.source) if os.path.isfile(config.source) else ""


def _coerce(config: SyncConfig | str | os.PathLike[str] | Mapping[str, Any]) -> SyncConfig:
    if isinstance(config, SyncConfig):
        return config
    if isinstance(config, Mapping):
        return SyncConfig.from_dict(config)
    return load_config(config)


def sync(config: SyncConfig | str | os.PathLike[str] | Mapping[str, Any], *, destination: str | None = None,
         client: Client | None = None, keychain: Keychain | None = None, executor: PlanExecutor | None = None,
         dry_run: bool = False, progress: Progress | None = None, jobs: Jobs | None = None,
         retries: int | None = None, keep_going: bool | None = None, platforms: Sequence[str] | None = None,
         include: Sequence[str] = (), exclude: Sequence[str] = (), include_nondistributable: bool = False,
         insecure: bool = False, referrers: bool | None = None,
         allow_private_storage: Sequence[str] = (), chunk_threshold: int = CHUNK_THRESHOLD,
         chunk_size: int = CHUNK_SIZE, source: str | None = None) -> Report:
    """Mirror everything ``config`` (a :class:`SyncConfig`, a sync file path, or its data) selects.

    ``destination`` overrides the file's; ``jobs`` / ``retries`` / ``keep_going`` / ``platforms`` /
    ``referrers`` override the file's when given; ``include`` / ``exclude`` add tag filters to every registry.
    ``allow_private_storage`` adds registries to the file's ``allow-private-storage: true`` ones (they
    travel in the plan's ``RunOptions``, so a ``DaskExecutor``'s workers get them too).
    ``chunk_threshold`` / ``chunk_size``: chunked uploads, as for :func:`~ocitransport.mirror.copy`.
    On a ``DaskExecutor``, workers get a sync file's ``credentials`` by reading that file at the same path
    (it must be there on every worker); a sync given as data keeps its credentials on this side (a
    warning says so). Plans here (with the file's credentials and TLS settings), then runs the plan on ``executor``
    (default: locally on ``client``, one event loop). ``dry_run`` plans and reports, writing nothing.
    ``source`` (``oci:DIR`` / ``oci-archive:FILE``): read every source repository from that layout, under
    its full name, instead of from its registry: the other side of an air gap, after a sync whose
    destination was that layout. Layouts are read and written in this process: with ``executor`` they
    are refused (:class:`SyncConfigError`).
    Raises :class:`SyncConfigError` for a bad configuration; registry failures are in the report.
    """
    cfg = _coerce(config)
    if destination:
        cfg = cfg.with_destination(destination)
    if not cfg.destination:
        raise SyncConfigError(f"{cfg.source}: no destination: add 'destination:' to the file or pass --dest")
    check_source(source)
    local = next((t for t in (source, cfg.destination) if t and is_local(t)), None)
    if local is not None and executor is not None:
        raise SyncConfigError(local_refused(local))
    for pattern in (*include, *exclude):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise SyncConfigError(f"bad regular expression {pattern!r}: {exc}") from None
    jobs = cfg.jobs if jobs is None else jobs
    retries = cfg.retries if retries is None else retries
    keep_going = cfg.keep_going if keep_going is None else keep_going
    check_jobs(jobs)
    chain = cfg.keychain(keychain)
    private_ok = frozenset([*allow_private_storage, *(s.registry for s in cfg.registries if s.allow_private_storage)])
    # The run's options, built once here and carried by the plan to whichever executor runs it.
    options = RunOptions().with_(jobs=jobs, retries=max(retries, 0), include_nondistributable=include_nondistributable,
                                 chunk_threshold=chunk_threshold, chunk_size=chunk_size,
                                 platforms=platforms or (), referrers=True if referrers is None else referrers,
                                 allow_private_storage=private_ok, tls=tls_of(cfg), sync_file=_file_of(cfg))
    if executor is not None and not options.sync_file and any(s.credentials for s in cfg.registries):
        # Secrets never travel in a plan or a task: without a file to read, workers cannot get them.
        log.warning("%s: the sync's credentials do not reach the executor's workers (they read only a sync "
                    "file, and this sync was given as data): they use their own docker config; pass the sync "
                    "as a file to use its credentials there", cfg.source)
    from .api import _Owned, _run

    started = time.monotonic()
    with _Owned(client, jobs) as base, tls_transport(base, options.tls, jobs) as transport:
        planning: dict[str, PullQuota] = {}

        async def main() -> tuple[Plan, Report | None]:
            session = Session(transport, chain, retries=retries,  # type: ignore[arg-type]
                              allow_private_storage=private_ok)
            if executor is None and not dry_run:  # locally, each image's copy starts as soon as it is planned
                items = stream_sync(session, cfg, jobs=jobs, platforms=platforms, include=include, exclude=exclude,
                                    insecure=insecure, referrers=referrers, source=source)
                return Plan(options=options), await execute_stream(session, items, options, keep_going=keep_going,
                                                                   progress=progress, started=started)
            plan = await plan_sync(session, cfg, jobs=jobs, platforms=platforms, include=include,
                                   exclude=exclude, insecure=insecure, referrers=referrers, source=source)
            plan.options = options
            log.info("planned %d images, %d planning errors", len(plan.units), len(plan.errors))
            if executor is not None and not dry_run:
                planning.update(session.pull_quota)  # the HEADs of planning count too
                return plan, None
            return plan, await execute_plan(session, plan, keep_going=keep_going, dry_run=dry_run,
                                            progress=progress, started=started)

        plan, report = _run(main)
    if report is not None:
        return report
    assert executor is not None
    if plan.errors and not keep_going:
        # As the local path: nothing starts when planning already failed and we are told to stop.
        return Report.of_plan(plan.errors).not_started(len(plan.units), started)
    # Executors elsewhere take a number: ``auto`` is where it starts.
    report = executor.execute(plan, jobs=AUTO_INITIAL if jobs == AUTO else jobs, retries=retries, keep_going=keep_going,
                              include_nondistributable=include_nondistributable, progress=progress)
    report.note_pull_quota(planning)
    for ref, message in plan.errors:
        if (ref, message) not in report.errors:
            report.fail(ref, message)
    return report
