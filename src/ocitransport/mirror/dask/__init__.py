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
  the scheduler's metadata."""

from __future__ import annotations

from ...transport.limit import LocalPauses, PauseBoard, SharedLimits
from .executor import DEFAULT_REGISTRY_LIMIT, LOCAL_THREADS_PER_WORKER, DaskExecutor
from .graph import (
    DEFAULT_PAUSE_REFRESH,
    BlobTask,
    ImageTask,
    ManifestTask,
    TaskGraph,
    WorkerOptions,
    blob_key,
    image_key,
    manifest_key,
)
from .worker import MAX_SHIPPED, PAUSES_METADATA_KEY, PLUGIN_NAME, ClusterPauses, MirrorWorker

__all__ = [
    "DEFAULT_PAUSE_REFRESH", "DEFAULT_REGISTRY_LIMIT", "LOCAL_THREADS_PER_WORKER", "MAX_SHIPPED",
    "PAUSES_METADATA_KEY", "PLUGIN_NAME", "BlobTask", "ClusterPauses", "DaskExecutor", "ImageTask",
    "LocalPauses", "ManifestTask", "MirrorWorker", "PauseBoard", "SharedLimits", "TaskGraph", "WorkerOptions",
    "blob_key", "image_key", "manifest_key",
]
