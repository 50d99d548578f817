"""Fixtures of the reliability scenarios: a destination registry of their own, and source content."""

from __future__ import annotations

import concurrent.futures
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.servers import raw
from tests.servers.fixtures import require_registry
from tests.servers.registry import RegistryServer


@pytest.fixture(scope="session")
def dst_registry() -> Iterator[RegistryServer]:
    """An open registry on loopback used as the destination of the scenarios."""
    require_registry()
    with RegistryServer() as server:
        yield server


@dataclass
class SourceRepo:
    """What :func:`populate` pushed: ``tags`` -> manifest digest, every blob and child manifest."""

    repo: str
    tags: dict[str, str] = field(default_factory=dict)
    indexes: set[str] = field(default_factory=set)


def populate(registry: RegistryServer, repo: str, *, images: int, indexes: int, seed: int) -> SourceRepo:
    """Push ``images`` image tags and ``indexes`` two-platform index tags to ``repo`` (raw HTTP).

    Layers are drawn from a shared pool of small blobs (1 KiB to 256 KiB), plus one layer of each image's
    own, so images share layers the way real ones do."""
    rng = random.Random(seed)
    pool = [rng.randbytes(rng.choice((1024, 8 * 1024, 64 * 1024, 256 * 1024))) for _ in range(8)]
    source = SourceRepo(repo)
    # Draw everything first (reproducible), then push on a few threads (the registry does the work).
    plain = [(f"img-{i:03d}", [*rng.sample(pool, rng.randint(1, 3)), rng.randbytes(rng.randint(200, 4096))])
             for i in range(images)]
    multi = [(i, [(arch, [rng.choice(pool), rng.randbytes(512)]) for arch in ("amd64", "arm64")])
             for i in range(indexes)]

    pushed_pool = {raw.push_blob(registry, repo, blob) for blob in pool}  # shared layers: pushed once

    def push(tag: str, layers: list[bytes], config: bytes | None = None) -> raw.PushedImage:
        """raw.push_image, without re-uploading shared layers (concurrent uploads of one digest race in
        the registry's storage)."""
        digests = [raw.sha256_digest(b) for b in layers]
        for data, digest in zip(layers, digests):
            if digest not in pushed_pool:
                raw.push_blob(registry, repo, data)
        config = config or json.dumps({"architecture": "amd64", "os": "linux",
                                       "rootfs": {"type": "layers", "diff_ids": digests}}).encode()
        config_digest = raw.push_blob(registry, repo, config)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": raw.OCI_MANIFEST,
            "config": {"mediaType": raw.OCI_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": raw.OCI_LAYER, "digest": d, "size": len(b)} for d, b in zip(digests, layers)],
        }).encode()
        digest = raw.push_manifest(registry, repo, tag, manifest, raw.OCI_MANIFEST)
        return raw.PushedImage(registry.host, repo, tag, digest, manifest, raw.OCI_MANIFEST, config_digest,
                               config, digests, layers)

    def push_plain(item: tuple[str, list[bytes]]) -> dict[str, str]:
        image = push(item[0], item[1])
        return {image.tag: image.digest}

    def push_multi(item: tuple[int, list[tuple[str, list[bytes]]]]) -> dict[str, str]:
        i, platforms = item
        children = [push(f"idx-{i:03d}-{arch}", layers,
                         json.dumps({"architecture": arch, "os": "linux", "n": i}).encode())
                    for arch, layers in platforms]
        tag = f"multi-{i:03d}"
        digest = raw.push_index(registry, repo, tag, children,
                                [{"architecture": arch, "os": "linux"} for arch, _ in platforms])
        return {tag: digest, **{child.tag: child.digest for child in children}}

    with concurrent.futures.ThreadPoolExecutor(6) as pool_threads:
        for tags in [*pool_threads.map(push_plain, plain), *pool_threads.map(push_multi, multi)]:
            source.tags.update(tags)
    source.indexes.update(f"multi-{i:03d}" for i in range(indexes))
    return source


def check_destination(dst: RegistryServer, repo: str, source: SourceRepo, *,
                      complete: bool = True) -> int:
    """Every tag at the destination names the source's digest and every manifest there has all it
    references (blobs, child manifests); with ``complete``, every source tag is there. Returns the number
    of tags present. Raw HTTP only."""
    present = raw.list_tags(dst, repo)
    assert set(present) <= set(source.tags), sorted(set(present) - set(source.tags))
    if complete:
        assert sorted(present) == sorted(source.tags)
    for tag in present:
        response = raw.get_manifest(dst, repo, tag)
        assert response.status == 200, (tag, response.status)
        assert raw.sha256_digest(response.body) == source.tags[tag], tag
        _check_references(dst, repo, response.json(), tag)
    return len(present)


def _check_references(dst: RegistryServer, repo: str, manifest: dict, where: str) -> None:
    if "manifests" in manifest:
        for child in manifest["manifests"]:
            response = raw.get_manifest(dst, repo, child["digest"])
            assert response.status == 200, f"{where}: child {child['digest']} missing"
            _check_references(dst, repo, response.json(), f"{where}/{child['digest']}")
        return
    for blob in [manifest["config"], *manifest.get("layers", [])]:
        assert raw.blob_exists(dst, repo, blob["digest"]), f"{where}: blob {blob['digest']} missing"
