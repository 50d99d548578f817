"""Scale-out: run a mirror ``Plan`` on a dask.distributed cluster.

``DaskExecutor(client).execute(plan, ...)`` turns a plan into a dask graph whose keys deduplicate work
across the whole cluster, runs it, and returns one ``Report``:

* **blob tasks**, one per (destination registry, blob digest): the blob is placed once, into the first
  destination repository of the plan that needs it (HEAD, cross-repository mount when the source is on
  the destination registry, else streamed from the source with its digest verified);
* **manifest tasks**, one per (destination repository, index child digest): a child manifest is pushed
  by digest after the blobs it references;
* **image tasks**, one per plan unit: they depend on their blob (or child) tasks, place every blob by
  cross-repository mount from where its blob task put it (HEAD-skip, then a streamed copy if the
  registry refuses the mount), and push the manifest last.

Keys are hashes of what a task does (registry + digest, repository + digest, the unit's references and
digests), so a plan submitted again, or by another run on the same cluster, reuses tasks that are done
or running instead of doing them twice; every task is idempotent anyway (HEAD before PUT), which is
what makes a rerun after a killed worker safe.

Each worker process keeps one ocitransport ``Client``, ``mirror.Session`` and ``BlobCopy``, created on
first use by the ``MirrorWorker`` plugin and driven on one private event-loop thread; tasks hand their
coroutines to that loop. Credentials are resolved *on the worker* from its own docker config or
credential helpers (``DefaultKeychain``): task arguments carry references and digests, never secrets.

Politeness across the cluster:

* a per-registry concurrency limit: a task holds a lease of ``distributed.Semaphore``
  ``ocitransport-registry-<registry>-<limit>`` for the source and destination registries it talks to;
* a shared back-off: a ``429`` or ``503`` with ``Retry-After`` pauses every worker's requests to that
  registry until then. Each worker's Session runs the ``transport.limit`` politeness layer (adaptive
  per-request concurrency, pauses honoured before every attempt) on ``SharedLimits``, a
  ``LimitBackend`` whose pauses live on a ``PauseBoard``; ``ClusterPauses`` shares that board through
  the scheduler's metadata.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast

try:
    import distributed
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError as exc:  # pragma: no cover - exercised only without the extra installed
    raise ImportError("ocitransport.mirror.distributed needs dask.distributed: "
                      "pip install 'ocitransport[dask]'") from exc

from .. import transport
from ..name import Repository
from ..transport.limit import LimitPolicy, LimitStats, LocalPauses, PauseBoard, SharedLimits
from .blobs import CHUNK_SIZE, CHUNK_THRESHOLD, BlobCopy
from .execute import Executor, Progress, TreeCopy
from .limits import blobs_of, children_of
from .manifests import Descriptor, Manifest, parse_manifest
from .options import RegistryTLS, RunOptions, pool_limits, tls_transport
from .plan import ImageUnit, Plan, choose_platforms, describe, identifier_of
from .report import ImageResult, Report
from .session import PullQuota, Session

if TYPE_CHECKING:
    from ..authn import Keychain

log = logging.getLogger("ocitransport.mirror.distributed")

T = TypeVar("T")

#: Name of the worker plugin (and of the per-worker mirror state it holds).
PLUGIN_NAME = "ocitransport-mirror"
#: Prefix of the scheduler metadata holding "paused until" per registry.
PAUSES_METADATA_KEY = "ocitransport-pauses"
#: Concurrent tasks per registry across the cluster unless ``registry_limits`` says otherwise.
DEFAULT_REGISTRY_LIMIT = 16
#: How often a busy worker exchanges pauses with the scheduler (seconds).
DEFAULT_PAUSE_REFRESH = 0.25
#: Worker threads per process for ``local:N`` clusters (tasks mostly wait on the private loop).
LOCAL_THREADS_PER_WORKER = 4


# ------------------------------------------------------------------------------------------ back-off seam

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


# ------------------------------------------------------------------------------------------ task specs

@dataclass(frozen=True)
class WorkerOptions:
    """How a worker builds its Session the first time a task needs it."""

    retries: int = 3
    transfers: int = 8
    pause_refresh: float = DEFAULT_PAUSE_REFRESH
    policy: LimitPolicy | None = None
    #: Registries whose storage may be on private addresses (``Session(allow_private_storage=)``).
    allow_private_storage: tuple[str, ...] = ()
    #: Per-registry TLS paths of the run (``RunOptions.tls``): the worker's Client honours them.
    tls: tuple[RegistryTLS, ...] = ()
    chunk_threshold: int = CHUNK_THRESHOLD
    chunk_size: int = CHUNK_SIZE

    @classmethod
    def of(cls, options: RunOptions, *, pause_refresh: float = DEFAULT_PAUSE_REFRESH,
           policy: LimitPolicy | None = None, allow_private_storage: Iterable[str] = ()) -> WorkerOptions:
        """What a worker needs of a plan's :class:`RunOptions` (plus the executor's own settings)."""
        return cls(retries=options.retries, transfers=options.jobs, pause_refresh=pause_refresh, policy=policy,
                   allow_private_storage=tuple(sorted({*options.allow_private_storage, *allow_private_storage})),
                   tls=options.tls, chunk_threshold=options.chunk_threshold, chunk_size=options.chunk_size)


@dataclass(frozen=True)
class BlobTask:
    """Place one blob into ``destination`` (a repository of the destination registry), reading it from
    ``source`` when it must be copied."""

    source: str
    destination: str
    digest: str
    size: int
    media_type: str
    insecure: bool
    leases: tuple[tuple[str, int], ...]
    options: WorkerOptions


#: ``(media_type, raw bytes)`` of manifests the submitting side read while building the graph: a task
#: answers its own manifest reads from them instead of pulling again (Docker Hub counts every manifest
#: GET against the pull quota). A few KiB per image in the scheduler's memory.
ShippedManifests = tuple[tuple[str, bytes], ...]


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


@dataclass(frozen=True)
class ManifestTask:
    """Push one index child (``digest``) into ``destination`` after every blob it references."""

    source: str
    destination: str
    digest: str
    insecure: bool
    include_nondistributable: bool
    leases: tuple[tuple[str, int], ...]
    options: WorkerOptions
    manifests: ShippedManifests = ()


@dataclass(frozen=True)
class ImageTask:
    """Copy one plan unit, its blobs (and children) already placed by the tasks it depends on."""

    unit: ImageUnit
    include_nondistributable: bool
    leases: tuple[tuple[str, int], ...]
    options: WorkerOptions
    manifests: ShippedManifests = ()


@dataclass
class TaskGraph:
    """What ``DaskExecutor.graph`` makes of a plan: specs by key, with the keys each depends on.

    ``units`` pairs every plan unit with its image key (``None`` when it is up to date: no task).
    ``owners`` says which image key reports the transfer of a blob or child task (the first unit that
    needed it). ``notes`` lists units whose manifests could not be read while planning the graph (their
    image task then does all of its work itself). ``pull_quota``: what the source registries said of
    their pull quotas while the manifests were read (see ``Report.pull_quota``).
    """

    blobs: dict[str, BlobTask] = field(default_factory=dict)
    manifests: dict[str, tuple[ManifestTask, list[str]]] = field(default_factory=dict)
    images: dict[str, tuple[ImageTask, list[str], list[str]]] = field(default_factory=dict)
    units: list[tuple[ImageUnit, str | None]] = field(default_factory=list)
    owners: dict[str, str] = field(default_factory=dict)
    notes: list[tuple[str, str]] = field(default_factory=list)
    pull_quota: dict[str, PullQuota] = field(default_factory=dict)

    def specs(self) -> list[tuple[str, Any]]:
        """Every ``(key, spec)``: what is shipped to the cluster (tests check it holds no secret)."""
        out: list[tuple[str, Any]] = list(self.blobs.items())
        out += [(k, v[0]) for k, v in self.manifests.items()]
        out += [(k, v[0]) for k, v in self.images.items()]
        return out


def _hash(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def blob_key(registry: str, digest: str) -> str:
    return f"ocitransport-blob-{_hash(registry, digest)}"


def manifest_key(repository: str, digest: str) -> str:
    return f"ocitransport-manifest-{_hash(repository, digest)}"


def image_key(unit: ImageUnit, include_nondistributable: bool) -> str:
    return "ocitransport-image-" + _hash(unit.source, unit.destination, unit.source_digest, unit.target_digest,
                                         ",".join(unit.platforms), str(unit.insecure),
                                         str(include_nondistributable))


# ------------------------------------------------------------------------------------------ worker side

class _WorkerMirror:
    """One worker process's mirror state: Client, Session, BlobCopy, private loop, leases, pauses."""

    def __init__(self, worker: distributed.Worker, options: WorkerOptions) -> None:
        from ..client import Client

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
        # The worker's own DefaultKeychain: credentials never travel with tasks.
        self.session = Session(transport, retries=options.retries, limits=self.limits,  # type: ignore[arg-type]
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


# ------------------------------------------------------------------------------------------ submit side

def _run(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


@dataclass
class _Expanded:
    """A unit's manifests as read while building the graph."""

    blobs: list[Descriptor] = field(default_factory=list)
    children: list[tuple[str, list[Descriptor]]] = field(default_factory=list)  # image children only
    error: str = ""
    #: digest -> (media type, raw bytes) of every manifest read for this unit
    manifests: dict[str, tuple[str, bytes]] = field(default_factory=dict)


async def _expand(session: Session, units: list[ImageUnit], jobs: int) -> list[_Expanded]:
    """GET every unit's manifest (and its index children) to learn the blobs, each digest once."""
    limit = asyncio.Semaphore(max(jobs, 1) * 4)
    cache: dict[str, asyncio.Task[Manifest]] = {}

    async def fetch(repo: Repository, digest: str) -> Manifest:
        async with limit:
            return await session.get_manifest(await session.pull(repo), repo, digest)

    def get(repo: Repository, digest: str) -> asyncio.Task[Manifest]:
        task = cache.get(digest)  # content-addressed: one GET per digest, whatever the repository
        if task is None:
            task = cache[digest] = asyncio.ensure_future(fetch(repo, digest))
        return task

    async def one(unit: ImageUnit) -> _Expanded:
        out = _Expanded()
        if unit.up_to_date:
            return out
        try:
            ref = unit.source_ref
            src = ref.repository
            top = await get(src, unit.source_digest or identifier_of(ref))
            out.manifests[top.digest] = (top.media_type, top.raw)
            where = f"{src.name}@{top.digest}"
            if not top.is_index:
                out.blobs = blobs_of(top, where)
                return out
            children = children_of(top, where, 1)
            if unit.platforms:
                children = choose_platforms(top, unit.platforms)[0]
            manifests = await asyncio.gather(*(get(src, d.digest) for d in children))  # shared tasks
            out.children = [(m.digest, blobs_of(m, f"{src.name}@{m.digest}")) for m in manifests
                            if not m.is_index]
            out.manifests.update((m.digest, (m.media_type, m.raw)) for m in manifests)
        except Exception as exc:  # noqa: BLE001 - the image task will meet (and report) it itself
            out.error = describe(exc)
        return out

    return list(await asyncio.gather(*(one(u) for u in units)))


class DaskExecutor:
    """Runs plans on a dask.distributed cluster (see the module docstring for the graph).

    ``client``: a connected ``distributed.Client``. ``registry_limits``: concurrent tasks allowed per
    registry across the cluster (``{"registry-1.docker.io": 8}``), ``default_limit`` for the others
    (``0``: no limit; a limit at or above the cluster's task threads when the graph is made is not
    enforced, since it cannot be reached). ``keychain``: credentials for reading manifests on the submitting side while
    building the graph (workers always use their own docker config). ``policy``: each worker's adaptive
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
        from ..client import Client

        run = _override(plan.options, jobs, retries, include_nondistributable)
        jobs, include_nondistributable = run.jobs, run.include_nondistributable
        # The manifests are read with the run's TLS settings, as the workers will read them.
        with Client() as local, tls_transport(local, run.tls, jobs) as rt:
            session = Session(rt, self.keychain, retries=run.retries,  # type: ignore[arg-type]
                              allow_private_storage=(*run.allow_private_storage, *self.allow_private_storage))
            expanded = _run(lambda: _expand(session, plan.units, run.jobs))
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


__all__ = [
    "BlobTask", "ClusterPauses", "DaskExecutor", "ImageTask", "LocalPauses", "ManifestTask", "MirrorWorker",
    "PauseBoard", "SharedLimits", "TaskGraph", "WorkerOptions",
]
