"""Large blobs read as parallel ranged parts and uploaded in order (mirror/ranged.py), against real
servers: a registry behind the fault proxy (parts held back so they arrive out of order, a part cut
mid-way), the hostile registry (ignores ``Range``: answers 200), and a registry whose blob is not the
size its manifest declares."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator

import pytest

from ocitransport.mirror import copy, ranged
from tests.servers import process, raw
from tests.servers.hostile_registry import HostileRegistry
from tests.servers.proxy import FaultProxy
from tests.servers.registry import RegistryServer

PART = 64 << 10
SIZE = 16 * PART + 100  # 17 parts, the last one short


@pytest.fixture(autouse=True)
def small_parts() -> Iterator[None]:
    previous = ranged.use(ranged.RangedSettings(threshold=4 * PART, part=PART, streams=4))
    yield
    ranged.use(previous)


def _blob_gets(proxy: FaultProxy, digest: str) -> list[object]:
    return [r for r in proxy.records if r[0] == "GET" and f"/blobs/{digest}" in r[1]]


def _pushed(registry: RegistryServer, repo: str) -> raw.PushedImage:
    return raw.push_image(registry, repo, "v1", layers=[os.urandom(SIZE)])


def test_parts_arriving_out_of_order_are_uploaded_in_order(
        registry: RegistryServer, dst_registry: RegistryServer,
        proxy_factory: Callable[..., FaultProxy], make_repo_name: Callable[[], str]) -> None:
    repo = make_repo_name()
    image = _pushed(registry, repo)
    layer = image.layer_digests[0]
    proxy = proxy_factory(registry)
    proxy.hold_request(0.5, method="GET", path_contains=f"/blobs/{layer}")  # the first part comes last
    report = copy(f"{process.LOOPBACK}:{proxy.port}/{repo}:v1", f"{dst_registry.host}/{repo}:v1")
    assert report.ok, report.errors
    assert raw.get_blob(dst_registry, repo, layer) == image.layers[0]
    gets = _blob_gets(proxy, layer)
    assert len(gets) == 17  # one ranged GET per part
    held = next(i for i, r in enumerate(gets) if r.fault == "hold")  # type: ignore[attr-defined]
    assert held > 0, "the held first part was answered after later parts"


def test_a_part_cut_midway_is_asked_again_from_its_first_missing_byte(
        registry: RegistryServer, dst_registry: RegistryServer,
        proxy_factory: Callable[..., FaultProxy], make_repo_name: Callable[[], str]) -> None:
    repo = make_repo_name()
    image = _pushed(registry, repo)
    layer = image.layer_digests[0]
    proxy = proxy_factory(registry)
    proxy.cut_response_body(10_000, method="GET", path_contains=f"/blobs/{layer}", times=2)
    report = copy(f"{process.LOOPBACK}:{proxy.port}/{repo}:v1", f"{dst_registry.host}/{repo}:v1")
    assert report.ok, report.errors
    assert raw.get_blob(dst_registry, repo, layer) == image.layers[0]
    assert len(_blob_gets(proxy, layer)) == 17 + 2  # each cut part asked once more, for what was missing


def test_a_source_that_answers_200_to_range_gets_one_stream(
        dst_registry: RegistryServer, make_repo_name: Callable[[], str]) -> None:
    repo = make_repo_name()
    data = os.urandom(SIZE)
    with HostileRegistry() as source:
        layer = source.blob(data)
        source.image(repo, "v1", [layer])
        report = copy(f"{source.host}/{repo}:v1", f"{dst_registry.host}/{repo}:v1")
        gets = [p for p in source.paths("GET") if layer["digest"] in p]
    assert report.ok, report.errors
    assert raw.get_blob(dst_registry, repo, layer["digest"]) == data
    # The ranged first part was answered 200 (the whole blob): the rest came in one stream, not 17.
    assert 2 <= len(gets) <= 1 + 4, gets


def test_a_blob_whose_size_is_not_the_declared_one_is_refused(
        registry: RegistryServer, dst_registry: RegistryServer, make_repo_name: Callable[[], str]) -> None:
    repo = make_repo_name()
    data = os.urandom(SIZE)
    digest = raw.push_blob(registry, repo, data)
    config = b"{}"
    config_digest = raw.push_blob(registry, repo, config)
    manifest = {"schemaVersion": 2, "mediaType": raw.OCI_MANIFEST,
                "config": {"mediaType": raw.OCI_CONFIG, "digest": config_digest, "size": len(config)},
                "layers": [{"mediaType": raw.OCI_LAYER, "digest": digest, "size": SIZE + PART}]}
    raw.push_manifest(registry, repo, "v1", json.dumps(manifest).encode(), raw.OCI_MANIFEST)
    report = copy(f"{registry.host}/{repo}:v1", f"{dst_registry.host}/{repo}:v1")
    assert not report.ok
    (_, message), = report.errors
    assert f"source holds {SIZE} bytes, the manifest declares {SIZE + PART}" in message
    assert not raw.blob_exists(dst_registry, repo, digest)
