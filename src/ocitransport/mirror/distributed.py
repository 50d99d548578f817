"""Scale-out on dask.distributed: moved to :mod:`ocitransport.mirror.dask` (graph, worker, executor);
this module keeps the old import path working."""

from __future__ import annotations

from .dask import (
    DEFAULT_PAUSE_REFRESH,
    DEFAULT_REGISTRY_LIMIT,
    LOCAL_THREADS_PER_WORKER,
    MAX_SHIPPED,
    PAUSES_METADATA_KEY,
    PLUGIN_NAME,
    BlobTask,
    ClusterPauses,
    DaskExecutor,
    ImageTask,
    LocalPauses,
    ManifestTask,
    MirrorWorker,
    PauseBoard,
    SharedLimits,
    TaskGraph,
    WorkerOptions,
    blob_key,
    image_key,
    manifest_key,
)
from .dask.worker import run_blob_task, run_image_task, run_manifest_task

__all__ = [
    "DEFAULT_PAUSE_REFRESH", "DEFAULT_REGISTRY_LIMIT", "LOCAL_THREADS_PER_WORKER", "MAX_SHIPPED",
    "PAUSES_METADATA_KEY", "PLUGIN_NAME", "BlobTask", "ClusterPauses", "DaskExecutor", "ImageTask",
    "LocalPauses", "ManifestTask", "MirrorWorker", "PauseBoard", "SharedLimits", "TaskGraph", "WorkerOptions",
    "blob_key", "image_key", "manifest_key", "run_blob_task", "run_image_task", "run_manifest_task",
]
