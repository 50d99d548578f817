"""Mirroring against registries as they run in production: blobs on S3 behind presigned redirects,
HTTPS with HTTP/2, a token service on its own host:port, tens of milliseconds away (the link shaper),
storage that refuses HEAD on GET-signed URLs, and a pull-through cache as the source."""

from __future__ import annotations

import os
import time

import pytest

import ocitransport
from ocitransport import mirror
from ocitransport.authn import Basic
from tests.servers import raw
from tests.servers.fixtures import ServerKeychain

#: One-way delay of the far registry: 40 ms each way, an 80 ms round trip (a registry in another region).
DELAY = 0.04


@pytest.mark.parametrize("direction", ["pull", "push"])
def test_far_tls_http2_bearer_registry_on_s3(s3_tls_registry, s3_basic_registry, storage, shaper_factory,
                                             make_repo_name, direction):
    """The far registry is the source (``pull``) or the destination (``push``); the other side is a
    Basic-auth registry on S3. A second tag sharing the layers follows (incremental), with storage
    refusing HEAD on presigned URLs, as GHCR's does."""
    far = shaper_factory(s3_tls_registry, delay=DELAY)
    keychain = ServerKeychain(s3_tls_registry, s3_basic_registry)
    keychain.by_host[far.host] = Basic(s3_tls_registry.username, s3_tls_registry.password)
    near_repo, far_repo = make_repo_name(), make_repo_name()
    layers = [os.urandom(300_000), os.urandom(2000)]
    origin, origin_repo, origin_host = ((s3_tls_registry, far_repo, far.host) if direction == "pull"
                                        else (s3_basic_registry, near_repo, s3_basic_registry.host))
    target, target_repo, target_host = ((s3_basic_registry, near_repo, s3_basic_registry.host) if direction == "pull"
                                        else (s3_tls_registry, far_repo, far.host))
    first = raw.push_image(origin, origin_repo, "v1", layers=layers)
    second = raw.push_image(origin, origin_repo, "v2", layers=layers, config=b'{"v": 2}')
    with ocitransport.Client(verify=str(s3_tls_registry.ca_file)) as client:
        started = time.monotonic()
        report = mirror.copy(f"{origin_host}/{origin_repo}:v1", f"{target_host}/{target_repo}:v1", client=client,
                             keychain=keychain)
        elapsed = time.monotonic() - started
        assert report.ok, report.errors
        assert report.blobs_transferred == 3
        storage.refuse_presigned_head()
        report = mirror.copy(f"{origin_host}/{origin_repo}:v2", f"{target_host}/{target_repo}:v2", client=client,
                             keychain=keychain)
        assert report.ok, report.errors
        assert (report.blobs_skipped, report.blobs_transferred) == (2, 1)
    print(f"\n{direction} over an {2 * DELAY * 1000:.0f} ms round trip: first image {elapsed:.2f} s")
    assert elapsed >= 4 * DELAY  # the shaper is in the path: several round trips at least
    assert far.connections > 0
    for image, tag in ((first, "v1"), (second, "v2")):
        got = raw.get_manifest(target, target_repo, tag)
        assert got.status == 200 and got.body == image.manifest
        for digest, data in image.blobs.items():
            assert raw.get_blob(target, target_repo, digest) == data
    if direction == "push":
        # The destination's blob HEADs went to storage and got 403: confirmed with ranged GETs.
        refused = [r for r in storage.proxy.records if r.method == "HEAD" and r.status == 403]
        assert refused, "no HEAD reached storage: the test would prove nothing"


def test_pull_through_cache_as_source(pull_through_registry, s3_registry, dst_registry, make_repo_name):
    """distribution's proxy.remoteurl: the cache fetches from its upstream (a registry on S3) on demand."""
    repo, dst_repo = make_repo_name(), make_repo_name()
    image = raw.push_image(s3_registry, repo, "v1", layers=[os.urandom(50_000), os.urandom(100)])
    report = mirror.copy(f"{pull_through_registry.host}/{repo}:v1", f"{dst_registry.host}/{dst_repo}:v1")
    assert report.ok, report.errors
    assert report.images[0].digest == image.digest and report.blobs_transferred == 3
    for digest, data in image.blobs.items():
        assert raw.get_blob(dst_registry, dst_repo, digest) == data
    # The cache refuses pushes with a clear, typed error in the report.
    report = mirror.copy(image.reference, f"{pull_through_registry.host}/{make_repo_name()}:v1")
    assert not report.ok and "UNSUPPORTED" in report.errors[0][1]
