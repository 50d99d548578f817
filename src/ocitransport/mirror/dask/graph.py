"""The dask graph of a plan: task specs (what a task does, by value, never a secret), their keys
(hashes of what they do, so equal work is one task cluster-wide), and the manifest reads that build it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from ...name import Repository
from ...transport.autotune import AUTO_INITIAL
from ...transport.limit import LimitPolicy
from ..blobs import CHUNK_SIZE, CHUNK_THRESHOLD
from ..limits import blobs_of, children_of
from ..manifests import Descriptor, Manifest
from ..options import RegistryTLS, RunOptions
from ..plan import ImageUnit, choose_platforms, describe, identifier_of
from ..session import PullQuota, Session

if TYPE_CHECKING:
    pass

log = logging.getLogger("ocitransport.mirror.distributed")

T = TypeVar("T")

#: How often a busy worker exchanges pauses with the scheduler (seconds).
DEFAULT_PAUSE_REFRESH = 0.25

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
    #: The sync file whose credentials the worker's keychain gives (``RunOptions.sync_file``): a path,
    #: never the secrets themselves.
    sync_file: str = ""

    @classmethod
    def of(cls, options: RunOptions, *, pause_refresh: float = DEFAULT_PAUSE_REFRESH,
           policy: LimitPolicy | None = None, allow_private_storage: Iterable[str] = ()) -> WorkerOptions:
        """What a worker needs of a plan's :class:`RunOptions` (plus the executor's own settings)."""
        transfers = options.jobs if isinstance(options.jobs, int) else AUTO_INITIAL  # workers pin a number
        return cls(retries=options.retries, transfers=transfers, pause_refresh=pause_refresh, policy=policy,
                   allow_private_storage=tuple(sorted({*options.allow_private_storage, *allow_private_storage})),
                   tls=options.tls, chunk_threshold=options.chunk_threshold, chunk_size=options.chunk_size,
                   sync_file=options.sync_file)

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
