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

from .api import _Owned as _Owned  # private names older callers import here
from .api import _pool_limits as _pool_limits
from .api import _run as _run
from .api import (
    copy,
    execute,
    mirror_repositories,
    mirror_repository,
    plan_copy,
    plan_repository,
)
from .execute import Progress
from .manifests import ManifestError
from .options import RegistryTLS, RunOptions
from .plan import ImageUnit, Plan
from .report import ImageResult, Report
from .session import DigestMismatch, MirrorError, PullQuota
from .sync import PlanExecutor, SourceRegistry, SyncConfig, SyncConfigError, load_config, plan_sync, sync

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
    "RegistryTLS",
    "Report",
    "RunOptions",
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
    "plan_sync",
    "sync",
]

