"""Bounds on what one source registry can make a mirror run read, request or keep.

One constant per limit; :class:`Limits` carries them (tests and callers override single fields), and
every limit that is hit raises :class:`LimitExceeded`, whose message names the limit and its value. A
limit hit is not retried: the same registry would give the same answer again.

Sizes follow from what registries accept: distribution refuses manifests over 4 MiB
(distribution registry/handlers/manifests.go, ``maxManifestBodySize``), and a descriptor takes about
200 bytes of JSON, so a pushable manifest lists at most about 20,000 layers or children; Docker cannot
run an image of more than 125 layers (moby layer/layer.go, ``maxLayerDepth``). Neither containerd nor
go-containerregistry bounds index nesting; OCI indexes nest one level in practice (an index of images;
a referrer's index two).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from .errors import MirrorError
from .manifests import Descriptor, Manifest

T = TypeVar("T")

#: Tags read from one repository's tag list, across all its pages (100 pages of ``n=1000``).
MAX_TAGS = 100_000
#: Tag-list bytes read from one repository across all its pages (the longest legal tags, 128
#: characters, take about 13 MiB for ``MAX_TAGS``; registries such as GCR add metadata per tag).
MAX_TAG_LIST_BYTES = 64 << 20
#: Layers (config included) of one image manifest: far above moby's 125, below what a 4 MiB manifest holds.
MAX_LAYERS = 10_000
#: Distinct children of one index (a platform list has a few dozen at most).
MAX_INDEX_CHILDREN = 10_000
#: Levels of indexes above an image (1: an index of images; the top manifest is level 1).
MAX_INDEX_DEPTH = 8


class LimitExceeded(MirrorError):
    """A source exceeded one of the limits of :mod:`ocitransport.mirror.limits`; the message names it."""

    def __init__(self, message: str, limit: str = "", value: int = 0) -> None:
        super().__init__(message)
        self.limit = limit
        self.value = value


@dataclass(frozen=True)
class Limits:
    """The limits of one run (defaults: the module constants)."""

    max_tags: int = MAX_TAGS
    max_tag_list_bytes: int = MAX_TAG_LIST_BYTES
    max_layers: int = MAX_LAYERS
    max_index_children: int = MAX_INDEX_CHILDREN
    max_index_depth: int = MAX_INDEX_DEPTH


#: The limits used where none are given. Tests replace it with :func:`use` (a smaller attack).
_current = Limits()


def current() -> Limits:
    """The limits in force."""
    return _current


def use(limits: Limits) -> Limits:
    """Put ``limits`` in force for this process (the dask workers keep their own); the previous ones."""
    global _current
    previous, _current = _current, limits
    return previous


def check_tags(where: str, count: int, size: int) -> None:
    """Raise when a repository's tag list so far (``count`` tags, ``size`` bytes) is over a limit."""
    limits = _current
    if count > limits.max_tags:
        raise LimitExceeded(f"{where}: tag list exceeds the limit of {limits.max_tags} tags (MAX_TAGS); "
                            "stopped listing", "MAX_TAGS", limits.max_tags)
    if size > limits.max_tag_list_bytes:
        raise LimitExceeded(f"{where}: tag list exceeds the limit of {limits.max_tag_list_bytes} bytes "
                            "(MAX_TAG_LIST_BYTES); stopped listing", "MAX_TAG_LIST_BYTES",
                            limits.max_tag_list_bytes)


def check_layers(where: str, count: int) -> None:
    """Raise when an image manifest references more than ``max_layers`` blobs."""
    limit = _current.max_layers
    if count > limit:
        raise LimitExceeded(f"{where}: manifest lists {count} blobs, more than the limit of {limit} "
                            "(MAX_LAYERS)", "MAX_LAYERS", limit)


def check_children(where: str, count: int) -> None:
    """Raise when an index lists more than ``max_index_children`` distinct children."""
    limit = _current.max_index_children
    if count > limit:
        raise LimitExceeded(f"{where}: index lists {count} distinct manifests, more than the limit of "
                            f"{limit} (MAX_INDEX_CHILDREN)", "MAX_INDEX_CHILDREN", limit)


def check_depth(where: str, depth: int) -> None:
    """Raise when an index sits ``depth`` levels deep (1: the top manifest) beyond ``max_index_depth``."""
    limit = _current.max_index_depth
    if depth > limit:
        raise LimitExceeded(f"{where}: indexes nested more than {limit} levels deep (MAX_INDEX_DEPTH)",
                            "MAX_INDEX_DEPTH", limit)


def _distinct(descriptors: list[Descriptor]) -> list[Descriptor]:
    out: dict[str, Descriptor] = {}
    for d in descriptors:
        out.setdefault(d.digest, d)
    return list(out.values())


def blobs_of(manifest: Manifest, where: str) -> list[Descriptor]:
    """The distinct blobs (config and layers) of image ``manifest``, checked against ``max_layers``.

    Both executors (mirror/execute.py, mirror/distributed.py) walk manifests through this helper and
    :func:`children_of`, so the same limits hold on either."""
    blobs = _distinct(manifest.blobs())
    check_layers(where, len(blobs))
    return blobs


def children_of(manifest: Manifest, where: str, depth: int) -> list[Descriptor]:
    """The distinct children of index ``manifest`` found ``depth`` levels deep (1: the top manifest),
    first occurrence kept, checked against ``max_index_depth`` and ``max_index_children``.

    Distinct by digest: an index that lists one child 10,000 times costs one GET of it, not 10,000 (a
    pull-quota amplifier otherwise)."""
    check_depth(where, depth)
    children = _distinct(manifest.children())
    check_children(where, len(children))
    return children


async def gather_or_cancel(awaitables: Iterable[Awaitable[T]]) -> list[T]:
    """Await every awaitable as tasks; the first that fails cancels the others (and they are awaited, so
    their ``finally`` blocks, such as cancelling an upload session, have run) before its error is raised.

    ``asyncio.gather`` leaves the siblings of a failure running: one bad blob of an image left its other
    blobs' uploads going, and their sessions open, after the image had failed."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    if not tasks:
        return []
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    failed = next((t for t in tasks if t.done() and not t.cancelled() and t.exception() is not None), None)
    if failed is not None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        exc = failed.exception()
        assert exc is not None
        raise exc
    return [t.result() for t in tasks]


__all__ = ["MAX_INDEX_CHILDREN", "MAX_INDEX_DEPTH", "MAX_LAYERS", "MAX_TAGS", "MAX_TAG_LIST_BYTES",
           "LimitExceeded", "Limits", "blobs_of", "check_children", "check_depth", "check_layers", "check_tags",
           "children_of", "current", "gather_or_cancel", "use"]
