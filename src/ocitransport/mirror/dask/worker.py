"""The worker side: each worker process's mirror state (Client, Session, BlobCopy, private event loop,
registry leases, cluster-wide pauses) and the task functions that run on it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, TypeVar, cast

try:
    import distributed
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError as exc:  # pragma: no cover - exercised only without the extra installed
    raise ImportError("ocitransport.mirror.dask needs dask.distributed: "
                      "pip install 'ocitransport[dask]'") from exc

from ... import transport
from ...name import Repository
from ...transport.limit import LocalPauses, SharedLimits
from ..blobs import BlobCopy
from ..execute import Executor, TreeCopy
from ..manifests import Descriptor, parse_manifest
from ..options import pool_limits, tls_transport
from ..plan import describe
from ..report import ImageResult
from ..session import Session
from ..syncfile import file_keychain
from .graph import DEFAULT_PAUSE_REFRESH, BlobTask, ImageTask, ManifestTask, ShippedManifests, WorkerOptions

if TYPE_CHECKING:
    pass

log = logging.getLogger("ocitransport.mirror.distributed")

T = TypeVar("T")

#: Name of the worker plugin (and of the per-worker mirror state it holds).
PLUGIN_NAME = "ocitransport-mirror"

#: Prefix of the scheduler metadata holding "paused until" per registry.
PAUSES_METADATA_KEY = "ocitransport-pauses"

class ClusterPauses(LocalPauses):
    """A ``PauseBoard`` shared through the dask scheduler's metadata.

    Reads are local (no cost per request). While ``active`` (a task is running on this worker), a
    background thread publishes this worker's new pauses and pulls everyone's every ``refresh``
    seconds: one scheduler round trip per worker per interval, whatever the number of registries. A
    pause set elsewhere reaches this worker within about ``refresh`` seconds; two pauses of one
    registry published within the same interval keep the last one written (each worker still honours
    its own, longer one).
    """

    def __init__(self, client_factory: Callable[[], distributed.Client], *,
                 refresh: float = DEFAULT_PAUSE_REFRESH) -> None:
        super().__init__()
        self._client_factory = client_factory
        self.refresh = refresh
        self._pending: dict[str, float] = {}
        self._active = 0
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._sync_loop, name="ocitransport-pauses", daemon=True)
        self._thread.start()

    def pause(self, registry: str, until: float) -> None:
        super().pause(registry, until)
        with self._lock:
            if until > self._pending.get(registry, 0.0):
                self._pending[registry] = until
        log.info("pausing requests to %s for %.1fs (cluster-wide)", registry, until - time.time())
        self._wake.set()

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Keep pauses in sync while the block runs (a task is talking to registries)."""
        with self._lock:
            self._active += 1
        self._wake.set()
        try:
            yield
        finally:
            with self._lock:
                self._active -= 1

    def close(self) -> None:
        self._stopped.set()
        self._wake.set()
        self._thread.join(timeout=5)

    def _sync_loop(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(self.refresh)
            self._wake.clear()
            with self._lock:
                busy = self._active > 0 or bool(self._pending)
            if not busy or self._stopped.is_set():
                continue
            try:
                self._exchange()
            except Exception as exc:  # noqa: BLE001 - a lost exchange only delays a pause
                log.debug("could not exchange registry pauses with the scheduler: %s", exc)
                self._stopped.wait(self.refresh)

    def _exchange(self) -> None:
        client = self._client_factory()
        with self._lock:
            pending, self._pending = self._pending, {}
        shared: dict[str, float] = client.get_metadata([PAUSES_METADATA_KEY], default={}) or {}  # type: ignore[no-untyped-call]
        for registry, until in pending.items():
            if until > float(shared.get(registry, 0.0)):
                client.set_metadata([PAUSES_METADATA_KEY, registry], until)  # type: ignore[no-untyped-call]
        for registry, until in shared.items():
            LocalPauses.pause(self, registry, float(until))

#: Shipped manifests a worker keeps (most recent last). Tasks running at once on a worker share them, so
#: they are not dropped when one task ends (another may still need the same digest); only the oldest go
#: once there are more than this: a few MiB, far more than the tasks in flight on one worker need.
MAX_SHIPPED = 1024

_ship_lock = threading.Lock()

def _ship(session: Session, manifests: ShippedManifests) -> None:
    """Make ``manifests`` known to ``session`` (re-parsed: digests checked again)."""
    parsed = [parse_manifest(raw, media_type, where="shipped manifest") for media_type, raw in manifests]
    with _ship_lock:
        known = session.known_manifests
        for manifest in parsed:
            known.pop(manifest.digest, None)
            known[manifest.digest] = manifest
        while len(known) > MAX_SHIPPED:
            del known[next(iter(known))]

class _WorkerMirror:
    """One worker process's mirror state: Client, Session, BlobCopy, private loop, leases, pauses."""

    def __init__(self, worker: distributed.Worker, options: WorkerOptions) -> None:
        from ...client import Client

        self.worker = worker
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="ocitransport-mirror-loop",
                                       daemon=True)
        self.thread.start()
        self.client = Client(**pool_limits(options.transfers))
        # Registries with TLS settings of their own get a Client each (closed with this state).
        self._tls = contextlib.ExitStack()
        transport = self._tls.enter_context(tls_transport(self.client, options.tls, options.transfers))
        self.pauses = ClusterPauses(lambda: worker.client, refresh=options.pause_refresh)
        self.limits = SharedLimits(self.pauses, options.policy)
        # Credentials never travel with tasks: the sync file's (read here from its path) before the
        # worker's own docker config.
        keychain = file_keychain(options.sync_file)
        self.session = Session(transport, keychain, retries=options.retries,  # type: ignore[arg-type]
                               limits=self.limits,
                               allow_private_storage=options.allow_private_storage)
        self.blobs = BlobCopy(self.session, transfers=options.transfers, retries=options.retries,
                              chunk_threshold=options.chunk_threshold, chunk_size=options.chunk_size)
        self.retries = options.retries
        self.transfers = options.transfers
        self._semaphores: dict[str, distributed.Semaphore] = {}
        self._lock = threading.Lock()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the private loop and wait for it (called from a task thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def _semaphore(self, registry: str, limit: int) -> distributed.Semaphore:
        name = f"ocitransport-registry-{registry}-{limit}"
        with self._lock:
            sem = self._semaphores.get(name)
            if sem is None:
                sem = self._semaphores[name] = distributed.Semaphore(max_leases=limit, name=name)  # type: ignore[no-untyped-call]
            return sem

    @contextlib.contextmanager
    def leases(self, leases: tuple[tuple[str, int], ...]) -> Iterator[None]:
        """Hold one lease per registry (taken in sorted order, so two tasks never wait on each other)."""
        held: list[distributed.Semaphore] = []
        try:
            for registry, limit in sorted(leases):
                if limit > 0:
                    sem = self._semaphore(registry, limit)
                    sem.acquire()  # type: ignore[no-untyped-call]
                    held.append(sem)
            with self.pauses.active():
                yield
        finally:
            for sem in reversed(held):
                try:
                    sem.release()  # type: ignore[no-untyped-call]
                except Exception as exc:  # noqa: BLE001 - the lease times out on the scheduler anyway
                    log.warning("could not release a registry lease: %s", exc)

    def seed(self, placed: list[dict[str, Any]]) -> None:
        """Tell this worker's BlobCopy where blob tasks put blobs (so it mounts from there)."""
        def add() -> None:
            for item in placed:
                if item and item.get("holder"):
                    holders = self.blobs.placed.setdefault((item["registry"], item["digest"]), [])
                    if item["holder"] not in holders:
                        holders.append(item["holder"])
        # ``placed`` belongs to the loop thread: mutate it there.
        self.loop.call_soon_threadsafe(add)

    def close(self) -> None:
        self.pauses.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self._tls.close()
        self.client.close()

class MirrorWorker(WorkerPlugin):
    """Worker plugin holding each worker's mirror state (created on first use, closed on teardown)."""

    name = PLUGIN_NAME
    idempotent = True  # a second executor on the same cluster keeps the workers' state

    def __init__(self) -> None:
        self.worker: distributed.Worker | None = None
        #: The first state made (the one most runs use); ``_states`` has one per distinct options.
        self._state: _WorkerMirror | None = None
        self._states: dict[WorkerOptions, _WorkerMirror] = {}
        self._lock: threading.Lock | None = None

    def setup(self, worker: distributed.Worker) -> None:
        self.worker = worker
        self._lock = threading.Lock()

    def teardown(self, worker: distributed.Worker) -> None:
        states, self._states, self._state = list(self._states.values()), {}, None
        for state in states:
            state.close()

    def state(self, options: WorkerOptions) -> _WorkerMirror:
        """The mirror state for ``options``: a run with other TLS settings, chunking or retries gets
        its own Client and Session (tasks of one run always share one)."""
        assert self._lock is not None and self.worker is not None, "plugin not set up"
        with self._lock:
            state = self._states.get(options)
            if state is None:
                state = self._states[options] = _WorkerMirror(self.worker, options)
                if self._state is None:
                    self._state = state
            return state

def _mirror(options: WorkerOptions) -> _WorkerMirror:
    worker = distributed.get_worker()
    plugin = worker.plugins.get(PLUGIN_NAME)
    if plugin is None:
        raise RuntimeError(f"the {PLUGIN_NAME} worker plugin is not registered on {worker.address}")
    return cast(MirrorWorker, plugin).state(options)

def _failed(error: BaseException) -> str:
    return describe(error)

async def _budgeted(coro: Coroutine[Any, Any, T]) -> T:
    """Run a task's coroutine in its own retry budget scope (as the local executor runs a unit)."""
    with transport.retry_budget():
        return await coro

def run_blob_task(spec: BlobTask) -> dict[str, Any]:
    """Task: place one blob. Never raises for registry failures (``error`` says what went wrong; the
    image tasks then copy the blob themselves)."""
    mirror = _mirror(spec.options)
    src = Repository(spec.source, insecure=spec.insecure)
    dst = Repository(spec.destination, insecure=spec.insecure)
    out: dict[str, Any] = {"registry": dst.registry.name, "digest": spec.digest, "holder": "",
                           "outcome": "", "size": 0, "error": ""}
    try:
        with mirror.leases(spec.leases):
            outcome, size = mirror.run(_budgeted(mirror.blobs.ensure(
                src, dst, Descriptor(spec.media_type, spec.digest, spec.size))))
    except Exception as exc:  # noqa: BLE001 - reported in the result, retried by the image task
        out["error"] = _failed(exc)
        log.warning("blob %s -> %s: %s", spec.digest, dst.name, out["error"])
        return out
    out.update(holder=dst.path, outcome=outcome, size=size)
    return out

def run_manifest_task(spec: ManifestTask, placed: list[dict[str, Any]]) -> dict[str, Any]:
    """Task: push one index child by digest after its blobs (mounted from where blob tasks put them)."""
    mirror = _mirror(spec.options)
    mirror.seed(placed)
    src = Repository(spec.source, insecure=spec.insecure)
    dst = Repository(spec.destination, insecure=spec.insecure)
    # The same tree copy as the local executor's (execute.TreeCopy), on this worker's BlobCopy.
    trees = TreeCopy(mirror.session, mirror.blobs, include_nondistributable=spec.include_nondistributable)
    counts = ImageResult(spec.source, spec.destination, "copied", spec.digest)
    out: dict[str, Any] = {"error": ""}
    try:
        _ship(mirror.session, spec.manifests)
        with mirror.leases(spec.leases):
            mirror.run(_budgeted(trees.child(src, dst, Descriptor("", spec.digest, 0), counts, {}, 2)))
    except Exception as exc:  # noqa: BLE001 - the index's image task copies the child itself
        out["error"] = _failed(exc)
        log.warning("manifest %s -> %s: %s", spec.digest, dst.name, out["error"])
    out.update(blobs_transferred=counts.blobs_transferred, blobs_mounted=counts.blobs_mounted,
               blobs_skipped=counts.blobs_skipped, bytes_transferred=counts.bytes_transferred)
    return out

def run_image_task(spec: ImageTask, placed: list[dict[str, Any]],
                   children: list[dict[str, Any]]) -> dict[str, Any]:
    """Task: copy one unit (``Executor.run_unit`` on the worker's shared Session and BlobCopy); the
    ``ImageResult`` as a dict. Never raises for registry failures."""
    mirror = _mirror(spec.options)
    mirror.seed(placed)
    # One BlobCopy per worker state: dedup and mounts across its tasks.
    executor = Executor(mirror.session, jobs=mirror.transfers, retries=mirror.retries,
                        include_nondistributable=spec.include_nondistributable, blobs=mirror.blobs)
    _ship(mirror.session, spec.manifests)
    with mirror.leases(spec.leases):
        result = mirror.run(executor.run_unit(spec.unit))
    return asdict(result)

def _worker_counters(dask_worker: distributed.Worker) -> dict[str, Any]:
    """This worker's retry count and politeness counters so far (for the run's report)."""
    plugin = dask_worker.plugins.get(PLUGIN_NAME)
    states = list(getattr(plugin, "_states", {}).values())
    if not states:
        return {}
    out: dict[str, Any] = {"retries": sum(int(s.session.retries) for s in states)}
    for state in states:
        for name, value in asdict(state.limits.stats()).items():
            if not isinstance(value, (int, float)):
                out.setdefault(name, value)  # not a counter: the first state's
            elif name == "lowest_limit":
                out[name] = min(out.get(name) or value, value) if value else out.get(name, 0)
            elif name == "paused_seconds":
                out[name] = max(out.get(name, 0.0), value)
            else:
                out[name] = out.get(name, 0) + value
    return out
