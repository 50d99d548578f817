"""``DaskExecutor``: submits a plan's graph to a cluster, collects the results into one Report."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

try:
    import distributed
except ImportError as exc:  # pragma: no cover - exercised only without the extra installed
    raise ImportError("ocitransport.mirror.dask needs dask.distributed: "
                      "pip install 'ocitransport[dask]'") from exc

from ...name import Repository
from ...transport.autotune import AUTO_INITIAL
from ...transport.limit import LimitPolicy, LimitStats
from ..concurrency import AUTO
from ..execute import Progress
from ..manifests import Descriptor
from ..options import RunOptions, tls_transport
from ..plan import ImageUnit, Plan, describe
from ..report import ImageResult, Report
from ..session import Session
from ..syncfile import file_keychain
from .graph import (
    DEFAULT_PAUSE_REFRESH,
    BlobTask,
    ImageTask,
    ManifestTask,
    TaskGraph,
    WorkerOptions,
    _expand,
    _run,
    blob_key,
    image_key,
    manifest_key,
)
from .worker import PLUGIN_NAME, MirrorWorker, _worker_counters, run_blob_task, run_image_task, run_manifest_task

if TYPE_CHECKING:
    from ...authn import Keychain

log = logging.getLogger("ocitransport.mirror.distributed")

T = TypeVar("T")

#: Concurrent tasks per registry across the cluster unless ``registry_limits`` says otherwise.
DEFAULT_REGISTRY_LIMIT = 16

#: Worker threads per process for ``local:N`` clusters (tasks mostly wait on the private loop).
LOCAL_THREADS_PER_WORKER = 4

class DaskExecutor:
    """Runs plans on a dask.distributed cluster (see the module docstring for the graph).

    ``client``: a connected ``distributed.Client``. ``registry_limits``: concurrent tasks allowed per
    registry across the cluster (``{"registry-1.docker.io": 8}``), ``default_limit`` for the others
    (``0``: no limit; a limit at or above the cluster's task threads when the graph is made is not
    enforced, since it cannot be reached). ``keychain``: credentials for reading manifests on the submitting side while
    building the graph. Workers use their own docker config, and for a sync given as a file, that file's
    ``credentials`` (``RunOptions.sync_file``: its path travels, never the secrets; the file must exist at
    the same path on every worker, as cert-dir paths must). ``policy``: each worker's adaptive
    per-request limit (``transport.LimitPolicy``). ``pause_refresh``: how often busy workers exchange
    registry pauses with the scheduler. A worker builds its Session from the options of the first task
    it runs (``retries``, ``jobs`` as its streamed-copy slots, ``policy``) and keeps it.

    Futures of submitted tasks are kept while the executor lives, so executing the same plan again
    resubmits nothing that is done or running; :meth:`close` releases them.
    """

    def __init__(self, client: distributed.Client, *, registry_limits: Mapping[str, int] | None = None,
                 default_limit: int = DEFAULT_REGISTRY_LIMIT, keychain: Keychain | None = None,
                 policy: LimitPolicy | None = None, pause_refresh: float = DEFAULT_PAUSE_REFRESH,
                 allow_private_storage: Iterable[str] = (), _owned: tuple[Any, ...] = ()) -> None:
        self.client = client
        #: Registries whose blob storage may be on private addresses, on every worker (see Session).
        self.allow_private_storage: frozenset[str] = frozenset(allow_private_storage)
        self.registry_limits = dict(registry_limits or {})
        self.default_limit = default_limit
        self.keychain = keychain
        self.policy = policy
        self.pause_refresh = pause_refresh
        self._owned = _owned
        self._futures: dict[str, distributed.Future[Any]] = {}
        client.register_plugin(MirrorWorker(), name=PLUGIN_NAME)

    @classmethod
    def from_address(cls, address: str, **options: Any) -> DaskExecutor:
        """Connect to a scheduler (``tcp://host:8786``), or start ``local:N`` (a LocalCluster of ``N``
        worker processes, stopped with the executor). ``options`` go to the constructor."""
        if address.startswith("local:"):
            try:
                workers = int(address.partition(":")[2])
            except ValueError:
                workers = 0
            if workers < 1:
                raise ValueError(f"local cluster size must be a positive integer, not {address!r}")
            cluster = distributed.LocalCluster(  # type: ignore[no-untyped-call]
                n_workers=workers, processes=True, threads_per_worker=LOCAL_THREADS_PER_WORKER,
                dashboard_address=None)
            try:
                client = distributed.Client(cluster)  # type: ignore[no-untyped-call]
            except BaseException:
                cluster.close()
                raise
            return cls(client, _owned=(client, cluster), **options)
        client = distributed.Client(address)  # type: ignore[no-untyped-call]
        return cls(client, _owned=(client,), **options)

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the kept futures; close the client and cluster when ``from_address`` made them."""
        self._futures.clear()
        for owned in self._owned:
            owned.close()
        self._owned = ()

    # -- graph ------------------------------------------------------------------------------------

    def _leases(self, threads: int, *registries: str) -> tuple[tuple[str, int], ...]:
        """The registry semaphores a task holds: none for a limit the cluster cannot reach anyway (no
        more task threads than the limit), which saves four scheduler round trips per task."""
        limits = ((r, self.registry_limits.get(r, self.default_limit)) for r in sorted(set(registries)))
        return tuple((r, n if 0 < n < threads else 0) for r, n in limits)

    def graph(self, plan: Plan, *, jobs: int | None = None, retries: int | None = None,
              include_nondistributable: bool | None = None) -> TaskGraph:
        """The tasks ``execute`` would submit for ``plan`` (reads manifests, writes nothing), with
        ``plan.options`` (the keywords, when given, override them)."""
        from ...client import Client

        run = _override(plan.options, jobs, retries, include_nondistributable)
        width = run.jobs if isinstance(run.jobs, int) else AUTO_INITIAL  # _override resolved "auto"
        jobs, include_nondistributable = width, run.include_nondistributable
        # The manifests are read with the run's TLS settings, as the workers will read them.
        with Client() as local, tls_transport(local, run.tls, width) as rt:
            session = Session(rt, file_keychain(run.sync_file, self.keychain), retries=run.retries,  # type: ignore[arg-type]
                              allow_private_storage=(*run.allow_private_storage, *self.allow_private_storage))
            expanded = _run(lambda: _expand(session, plan.units, width))
        options = WorkerOptions.of(run, pause_refresh=self.pause_refresh, policy=self.policy,
                                   allow_private_storage=self.allow_private_storage)
        # Measured when the graph is made: workers added later (an adaptive cluster) are not counted.
        threads = sum(self.client.nthreads().values())  # type: ignore[no-untyped-call]
        graph = TaskGraph(pull_quota=dict(session.pull_quota))
        for unit, found in zip(plan.units, expanded):
            if unit.up_to_date:
                graph.units.append((unit, None))
                continue
            src = unit.source_ref.repository
            dst = unit.destination_ref.repository
            leases = self._leases(threads, src.registry.name, dst.registry.name)
            key = image_key(unit, include_nondistributable)
            graph.units.append((unit, key))
            if key in graph.images:
                continue
            if found.error:
                graph.notes.append((unit.source, found.error))

            def blob_deps(blobs: list[Descriptor], src: Repository = src, dst: Repository = dst,
                          unit: ImageUnit = unit, leases: tuple[tuple[str, int], ...] = leases,
                          owner: str = key) -> list[str]:
                keys = []
                for blob in blobs:
                    if blob.nondistributable and not include_nondistributable:
                        continue
                    bkey = blob_key(dst.registry.name, blob.digest)
                    if bkey not in graph.blobs:
                        graph.blobs[bkey] = BlobTask(src.name, dst.name, blob.digest, blob.size, blob.media_type,
                                                     unit.insecure, leases, options)
                        graph.owners[bkey] = owner
                    keys.append(bkey)
                return list(dict.fromkeys(keys))

            children = []
            for digest, blobs in found.children:
                mkey = manifest_key(dst.name, digest)
                if mkey not in graph.manifests:
                    spec = ManifestTask(src.name, dst.name, digest, unit.insecure, include_nondistributable,
                                        leases, options, (found.manifests[digest],))
                    graph.manifests[mkey] = (spec, blob_deps(blobs))
                    graph.owners[mkey] = key
                children.append(mkey)
            graph.images[key] = (ImageTask(unit, include_nondistributable, leases, options,
                                           tuple(found.manifests.values())),
                                 blob_deps(found.blobs), children)
        return graph

    # -- execution --------------------------------------------------------------------------------

    def _submit(self, key: str, fn: Callable[..., Any], *args: Any) -> distributed.Future[Any]:
        future = self._futures.get(key)
        if future is not None and future.status not in ("error", "cancelled", "lost"):
            return future
        future = self.client.submit(fn, *args, key=key, pure=False)
        self._futures[key] = future
        return future

    def submit(self, graph: TaskGraph) -> dict[str, distributed.Future[Any]]:
        """Submit ``graph`` unit by unit (each unit's blobs and children just before it, so images
        finish all along the run); futures by key."""
        futures: dict[str, distributed.Future[Any]] = {}
        for key in dict.fromkeys(k for _, k in graph.units if k is not None):
            spec, blob_keys, child_keys = graph.images[key]
            for bkey in blob_keys:
                if bkey not in futures:
                    futures[bkey] = self._submit(bkey, run_blob_task, graph.blobs[bkey])
            for mkey in child_keys:
                if mkey not in futures:
                    mspec, mblobs = graph.manifests[mkey]
                    for bkey in mblobs:
                        if bkey not in futures:
                            futures[bkey] = self._submit(bkey, run_blob_task, graph.blobs[bkey])
                    futures[mkey] = self._submit(mkey, run_manifest_task, mspec, [futures[b] for b in mblobs])
            futures[key] = self._submit(key, run_image_task, spec, [futures[b] for b in blob_keys],
                                        [futures[m] for m in child_keys])
        return futures

    def _counters(self) -> dict[str, dict[str, Any]]:
        try:
            return dict(self.client.run(_worker_counters))
        except Exception as exc:  # noqa: BLE001 - counters are not worth failing a run for
            log.debug("could not read the workers' counters: %s", exc)
            return {}

    def execute(self, plan: Plan, *, jobs: int | None = None, retries: int | None = None, keep_going: bool = True,
                include_nondistributable: bool | None = None, progress: Progress | None = None) -> Report:
        """Run ``plan`` on the cluster with ``plan.options`` and report (one ``ImageResult`` per unit, in
        plan order). ``jobs`` / ``retries`` / ``include_nondistributable``, when given, override the
        plan's options.

        ``jobs``: concurrent manifest reads while building the graph, and streamed blob copies per
        worker. ``retries``: per request (workers' retry layer) and per blob copy. ``keep_going=False``
        cancels what has not finished after the first failed image. Never raises for registry failures.
        """
        if jobs is not None and jobs < 1:
            raise ValueError("jobs must be greater than zero")
        from ..errors import MirrorError
        from ..targets import is_local, local_refused

        local = next((ref for u in plan.units for ref in (u.source, u.destination) if is_local(ref)), None)
        if local is not None:  # before anything is submitted: a worker has no such directory
            raise MirrorError(local_refused(local))
        started = time.monotonic()
        report = Report.of_plan(plan.errors)
        if progress is not None:
            progress.planned(plan.units)
        if plan.errors and not keep_going:
            return report.not_started(len(plan.units), started)
        graph = self.graph(plan, jobs=jobs, retries=retries, include_nondistributable=include_nondistributable)
        before = self._counters()
        futures = self.submit(graph)
        results = self._collect(graph, futures, progress, keep_going)
        _note_counters(report, before, self._counters())
        report.note_pull_quota(graph.pull_quota)
        for unit, key in graph.units:
            result = results.get(key) if key is not None else _skipped(unit)
            if result is None:
                report.images_not_attempted += 1
            else:
                report.add(dataclasses.replace(result, platforms=list(result.platforms)))
        report.duration = time.monotonic() - started
        return report

    def _collect(self, graph: TaskGraph, futures: dict[str, distributed.Future[Any]], progress: Progress | None,
                 keep_going: bool) -> dict[str | None, ImageResult]:
        """Wait for every task; image results with their owned blob and child outcomes folded in."""
        if progress is not None:
            for unit, key in graph.units:
                if key is None:
                    progress.image_done(_skipped(unit))
        owned: dict[str, list[str]] = {}
        # Children first: their counts hold the "skipped" that an owned blob's outcome replaces.
        for okey, ikey in sorted(graph.owners.items(), key=lambda item: item[0] in graph.blobs):
            owned.setdefault(ikey, []).append(okey)
        done: dict[str, Any] = {}
        results: dict[str | None, ImageResult] = {}
        units_by_key = {key: unit for unit, key in reversed(graph.units) if key is not None}
        stopping = False
        completed = distributed.as_completed(  # type: ignore[no-untyped-call]
            list(futures.values()), with_results=True, raise_errors=False)
        for future, value in completed:
            key = str(future.key)
            done[key] = value
            if isinstance(value, BaseException):
                log.warning("task %s failed: %s", key, describe(value))
            if key not in graph.images:
                if progress is not None and isinstance(value, dict) and value.get("outcome") == "transferred":
                    progress.bytes_done(int(value.get("size", 0)))
                elif progress is not None and isinstance(value, dict):
                    progress.bytes_done(int(value.get("bytes_transferred", 0)))
                continue
            unit = units_by_key[key]
            if isinstance(value, BaseException):
                result = ImageResult(unit.source, unit.destination, "failed", unit.target_digest, unit.media_type,
                                     list(unit.platforms), error=f"task failed: {describe(value)}")
            else:
                result = ImageResult(**value)
                if progress is not None:
                    progress.bytes_done(result.bytes_transferred)
                for okey in owned.get(key, ()):
                    if okey not in done:
                        try:
                            done[okey] = futures[okey].result()
                        except Exception as exc:  # noqa: BLE001 - counted as nothing placed
                            done[okey] = exc
                    _fold(result, done[okey], okey in graph.blobs)
            results[key] = result
            if progress is not None:
                progress.image_done(result)
            if result.status == "failed" and not keep_going and not stopping:
                stopping = True
                pending = [k for k in futures if k not in done]
                self.client.cancel([futures[k] for k in pending])  # type: ignore[no-untyped-call]
                for k in pending:
                    self._futures.pop(k, None)
                break
        return results

def _override(options: RunOptions, jobs: int | None, retries: int | None,
              include_nondistributable: bool | None) -> RunOptions:
    """``options`` with the keywords a caller gave (``None``: keep the plan's)."""
    changes: dict[str, Any] = {}
    if jobs is not None:
        changes["jobs"] = jobs
    elif options.jobs == AUTO:
        # The latency-aware controller runs inside one event loop; a cluster's tasks start at its first step.
        changes["jobs"] = AUTO_INITIAL
    if retries is not None:
        changes["retries"] = max(retries, 0)
    if include_nondistributable is not None:
        changes["include_nondistributable"] = include_nondistributable
    return options.with_(**changes) if changes else options

def _note_counters(report: Report, before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> None:
    """Retries and politeness counters of this run: what each worker counted since ``before`` (a worker
    that restarted, or joined, counts from zero; one that died took its counts with it)."""
    stats = LimitStats()
    for worker, now in after.items():
        if not now:
            continue
        then = before.get(worker) or {}

        def grew(name: str, now: dict[str, Any] = now, then: dict[str, Any] = then) -> float:
            return max(float(now.get(name, 0)) - float(then.get(name, 0)), 0.0)

        report.retries += int(grew("retries"))
        stats.throttle_events += int(grew("throttle_events"))
        stats.cuts += int(grew("cuts"))
        stats.paused_seconds = max(stats.paused_seconds, grew("paused_seconds"))
        stats.queued_seconds += grew("queued_seconds")
        lowest = int(now.get("lowest_limit", 0))
        if lowest and grew("cuts"):
            stats.lowest_limit = min(stats.lowest_limit or lowest, lowest)
    report.note_limits(stats)

def _skipped(unit: ImageUnit) -> ImageResult:
    return ImageResult(unit.source, unit.destination, "skipped", unit.target_digest, unit.media_type,
                       list(unit.platforms), note="destination already up to date")

def _fold(result: ImageResult, value: Any, is_blob: bool) -> None:
    """Count a blob or child task's work in the image result that owns it.

    The owner's own placement found such a blob already where the blob task put it and counted it as
    skipped: that count becomes the blob task's outcome."""
    if not isinstance(value, dict):
        return
    if is_blob:
        outcome = value.get("outcome")
        if outcome in ("transferred", "mounted"):
            if result.blobs_skipped > 0:
                result.blobs_skipped -= 1
            if outcome == "transferred":
                result.blobs_transferred += 1
                result.bytes_transferred += int(value.get("size", 0))
            else:
                result.blobs_mounted += 1
        return
    result.blobs_transferred += int(value.get("blobs_transferred", 0))
    result.blobs_mounted += int(value.get("blobs_mounted", 0))
    result.blobs_skipped += int(value.get("blobs_skipped", 0))
    result.bytes_transferred += int(value.get("bytes_transferred", 0))
