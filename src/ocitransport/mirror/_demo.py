"""Moved to :mod:`ocitransport.cli.demo` (kept for callers of the old name)."""

from __future__ import annotations

from ..cli.demo import (
    REGISTRY_CANDIDATES,
    LocalRegistry,
    _push_blob,
    _push_image,
    _push_manifest,
    generate,
    registry_binary,
    run_demo,
)

__all__ = ["REGISTRY_CANDIDATES", "LocalRegistry", "_push_blob", "_push_image", "_push_manifest", "generate",
           "registry_binary", "run_demo"]
