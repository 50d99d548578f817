"""Mirroring between real registries on loopback; results checked with raw HTTP (tests/servers/raw.py)
and skopeo, never with the library itself."""

from __future__ import annotations

import base64
import json
import os
import pickle
import shutil
import subprocess

import pytest

from ocitransport import mirror
from ocitransport.mirror import ImageUnit
from tests.mirror.conftest import worlds
from tests.servers import raw
from tests.servers.raw import DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST

AMD64 = {"os": "linux", "architecture": "amd64"}
ARM64 = {"os": "linux", "architecture": "arm64", "variant": "v8"}


def _assert_same_image(src, src_repo, dst, dst_repo, tag, image):
    got = raw.get_manifest(dst, dst_repo, tag)
    assert got.status == 200
    assert got.body == image.manifest  # byte for byte: same digest
    for digest, data in image.blobs.items():
        assert raw.get_blob(dst, dst_repo, digest) == data


def _skopeo_digest(host: str, repo: str, tag: str) -> str:
    out = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{host}/{repo}:{tag}"],
                         check=True, capture_output=True, timeout=30).stdout
    return raw.sha256_digest(out)


@pytest.mark.parametrize("world", worlds(), indirect=True)
@pytest.mark.parametrize("media_type", [OCI_MANIFEST, DOCKER_MANIFEST])
def test_copy_single_image_preserves_digest(world, make_repo_name, counting_client, media_type):
    registry, dst_registry = world
    src_repo, dst_repo = make_repo_name(), make_repo_name()
    image = raw.push_image(registry, src_repo, "v1", layers=[os.urandom(200_000), os.urandom(3000)],
                           media_type=media_type)
    report = mirror.copy(image.reference, f"{dst_registry.host}/{dst_repo}:copied", client=counting_client)
    assert report.ok, report.errors
    assert (report.images_copied, report.blobs_transferred) == (1, 3)
    assert report.bytes_transferred == sum(len(b) for b in image.blobs.values())
    assert report.images[0].digest == image.digest
    _assert_same_image(registry, src_repo, dst_registry, dst_repo, "copied", image)
    if shutil.which("skopeo"):
        assert _skopeo_digest(dst_registry.host, dst_repo, "copied") == image.digest


@pytest.mark.parametrize("index_type", [OCI_INDEX, DOCKER_MANIFEST_LIST])
def test_copy_index_with_all_children(registry, dst_registry, make_repo_name, index_type):
    src_repo, dst_repo = make_repo_name(), make_repo_name()
    child_type = OCI_MANIFEST if index_type == OCI_INDEX else DOCKER_MANIFEST
    base = os.urandom(50_000)
    a = raw.push_image(registry, src_repo, "amd", layers=[base, os.urandom(100)], media_type=child_type)
    b = raw.push_image(registry, src_repo, "arm", layers=[base, os.urandom(100)], media_type=child_type)
    digest = raw.push_index(registry, src_repo, "multi", [a, b], [AMD64, ARM64], media_type=index_type)
    report = mirror.copy(f"{registry.host}/{src_repo}:multi", f"{dst_registry.host}/{dst_repo}")
    assert report.ok, report.errors
    got = raw.get_manifest(dst_registry, dst_repo, "multi")
    assert raw.sha256_digest(got.body) == digest == report.images[0].digest
    for child in (a, b):
        assert raw.get_manifest(dst_registry, dst_repo, child.digest).body == child.manifest
        for blob in child.blobs:
            assert raw.blob_exists(dst_registry, dst_repo, blob)
    # The shared base layer went over the wire once.
    assert report.blobs_transferred == 5


def test_platform_filter(registry, dst_registry, make_repo_name):
    src_repo = make_repo_name()
    imgs = [raw.push_image(registry, src_repo, f"p{i}") for i in range(3)]
    plats = [AMD64, ARM64, {"os": "linux", "architecture": "s390x"}]
    raw.push_index(registry, src_repo, "multi", imgs, plats)
    src = f"{registry.host}/{src_repo}:multi"

    one = make_repo_name()
    report = mirror.copy(src, f"{dst_registry.host}/{one}", platforms=["linux/arm64"])
    assert report.ok, report.errors
    assert raw.get_manifest(dst_registry, one, "multi").body == imgs[1].manifest
    assert not raw.blob_exists(dst_registry, one, imgs[0].layer_digests[0])

    two = make_repo_name()
    report = mirror.copy(src, f"{dst_registry.host}/{two}", platforms=["linux/amd64", "linux/s390x"])
    assert report.ok, report.errors
    index = raw.get_manifest(dst_registry, two, "multi").json()
    assert [m["digest"] for m in index["manifests"]] == [imgs[0].digest, imgs[2].digest]
    assert raw.get_manifest(dst_registry, two, imgs[2].digest).body == imgs[2].manifest
    assert not raw.blob_exists(dst_registry, two, imgs[1].layer_digests[0])

    report = mirror.copy(src, f"{dst_registry.host}/{make_repo_name()}", platforms=["windows/amd64"])
    assert not report.ok and "windows/amd64" in report.errors[0][1]


def test_artifact_with_custom_config_type(registry, dst_registry, make_repo_name):
    src_repo, dst_repo = make_repo_name(), make_repo_name()
    config = b'{"kind":"helm"}'
    layer = os.urandom(4096)
    cdig, ldig = raw.push_blob(registry, src_repo, config), raw.push_blob(registry, src_repo, layer)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": "application/vnd.cncf.helm.config.v1+json", "digest": cdig,
                                      "size": len(config)},
                           "layers": [{"mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
                                       "digest": ldig, "size": len(layer)}]}).encode()
    digest = raw.push_manifest(registry, src_repo, "chart", manifest, OCI_MANIFEST)
    report = mirror.copy(f"{registry.host}/{src_repo}:chart", f"{dst_registry.host}/{dst_repo}")
    assert report.ok, report.errors
    assert raw.sha256_digest(raw.get_manifest(dst_registry, dst_repo, "chart").body) == digest
    assert raw.get_blob(dst_registry, dst_repo, ldig) == layer


@pytest.mark.parametrize("world", worlds(), indirect=True)
def test_mirror_rerun_copies_nothing(world, make_repo_name, counting_client):
    registry, dst_registry = world
    src_repo, dst_repo = make_repo_name(), make_repo_name()
    images = [raw.push_image(registry, src_repo, f"t{i}") for i in range(4)]
    raw.push_index(registry, src_repo, "multi", images[:2], [AMD64, ARM64])
    first = mirror.mirror_repository(f"{registry.host}/{src_repo}", f"{dst_registry.host}/{dst_repo}",
                                     client=counting_client)
    assert first.ok and first.images_copied == 5, first.errors
    assert sorted(raw.list_tags(dst_registry, dst_repo)) == ["multi", "t0", "t1", "t2", "t3"]
    counting_client.log.clear()
    again = mirror.mirror_repository(f"{registry.host}/{src_repo}", f"{dst_registry.host}/{dst_repo}",
                                     client=counting_client)
    assert again.ok and (again.images_copied, again.images_skipped) == (0, 5)
    assert (again.blobs_transferred, again.blobs_mounted, again.blobs_skipped) == (0, 0, 0)
    assert counting_client.blob_gets() == []
    assert not any("/blobs/" in url for _, url, _ in counting_client.log)


@pytest.mark.parametrize("world", worlds("loopback", "to-s3"), indirect=True)
def test_mounts_within_a_run(world, make_repo_name, counting_client):
    registry, dst_registry = world
    base = os.urandom(100_000)
    repos = [make_repo_name() for _ in range(2)]
    dsts = [make_repo_name() for _ in range(2)]
    images = [raw.push_image(registry, r, "v1", layers=[base, os.urandom(500)]) for r in repos]
    report = mirror.mirror_repositories(
        [(f"{registry.host}/{s}", f"{dst_registry.host}/{d}") for s, d in zip(repos, dsts)],
        client=counting_client, jobs=2)
    assert report.ok, report.errors
    base_digest = images[0].layer_digests[0]
    # The base layer was uploaded once and mounted into the second destination repository.
    assert report.blobs_mounted == 1
    assert report.blobs_transferred == 5
    mounts = counting_client.mounts()
    assert len(mounts) == 1 and mounts[0][1] == 201 and base_digest.replace(":", "%3A") in mounts[0][0]
    assert len([u for u in counting_client.blob_gets() if base_digest in u]) == 1
    for d in dsts:
        assert raw.get_blob(dst_registry, d, base_digest) == base


@pytest.mark.parametrize("world", worlds("loopback", "from-s3"), indirect=True)
def test_same_registry_copy_mounts_from_source(world, make_repo_name, counting_client):
    registry = world[0]
    src_repo, dst_repo = make_repo_name(), make_repo_name()
    image = raw.push_image(registry, src_repo, "v1", layers=[os.urandom(1000), os.urandom(1000)])
    report = mirror.copy(image.reference, f"{registry.host}/{dst_repo}:v1", client=counting_client)
    assert report.ok, report.errors
    assert (report.blobs_mounted, report.blobs_transferred) == (3, 0)
    assert counting_client.blob_gets() == []
    assert all(status == 201 for _, status in counting_client.mounts())
    _assert_same_image(registry, src_repo, registry, dst_repo, "v1", image)


@pytest.mark.parametrize("world", worlds(), indirect=True)
def test_second_tag_sharing_layers_skips_them(world, make_repo_name, counting_client):
    """Incremental mirroring: the second tag's layers are already at the destination. A registry on S3
    answers their HEAD with a 307 to storage, which says "present" as much as a 200 does."""
    registry, dst_registry = world
    src_repo, dst_repo = make_repo_name(), make_repo_name()
    layers = [os.urandom(20_000), os.urandom(300)]
    first = raw.push_image(registry, src_repo, "v1", layers=layers)
    second = raw.push_image(registry, src_repo, "v2", layers=layers, config=b'{"v": 2}')
    report = mirror.copy(first.reference, f"{dst_registry.host}/{dst_repo}:v1", client=counting_client)
    assert report.ok, report.errors
    report = mirror.copy(second.reference, f"{dst_registry.host}/{dst_repo}:v2", client=counting_client)
    assert report.ok, report.errors
    assert (report.blobs_skipped, report.blobs_transferred) == (2, 1)  # the layers; the new config
    _assert_same_image(registry, src_repo, dst_registry, dst_repo, "v2", second)


def test_tags_pagination_and_filters(registry, dst_registry, make_repo_name, monkeypatch):
    from ocitransport.mirror import session

    monkeypatch.setattr(session, "TAGS_PAGE_SIZE", 2)
    src_repo, dst_repo = make_repo_name(), make_repo_name()
    layer = [os.urandom(100)]
    for tag in ["1.0", "1.1", "2.0", "2.0-rc1", "latest"]:
        raw.push_image(registry, src_repo, tag, layers=layer)
    report = mirror.mirror_repository(f"{registry.host}/{src_repo}", f"{dst_registry.host}/{dst_repo}",
                                      include=[r"^\d"], exclude=[r"-rc"])
    assert report.ok, report.errors
    assert sorted(raw.list_tags(dst_registry, dst_repo)) == ["1.0", "1.1", "2.0"]
    plan = mirror.plan_repository(f"{registry.host}/{src_repo}", f"{dst_registry.host}/{dst_repo}")
    assert len(plan.units) == 5
    assert sum(u.up_to_date for u in plan.units) == 3


def test_units_are_picklable_and_executable(registry, dst_registry, make_repo_name):
    src_repo, dst_repo = make_repo_name(), make_repo_name()
    image = raw.push_image(registry, src_repo, "v1")
    plan = mirror.plan_copy(image.reference, f"{dst_registry.host}/{dst_repo}:v1")
    units = pickle.loads(pickle.dumps(plan.units))
    assert isinstance(units[0], ImageUnit) and units[0].source_digest == image.digest
    assert mirror.execute(units).images_copied == 1
    assert mirror.execute(units).images_skipped == 1  # idempotent


def test_basic_to_bearer_with_docker_config(basic_registry, bearer_registry, make_repo_name, tmp_path, monkeypatch):
    src_repo, dst_repo = make_repo_name(), make_repo_name()
    image = raw.push_image(basic_registry, src_repo, "v1")

    def entry(server):
        return {"auth": base64.b64encode(f"{server.username}:{server.password}".encode()).decode()}

    (tmp_path / "config.json").write_text(json.dumps({"auths": {
        basic_registry.host: entry(basic_registry), bearer_registry.host: entry(bearer_registry)}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    report = mirror.copy(image.reference, f"{bearer_registry.host}/{dst_repo}:v1")
    assert report.ok, report.errors
    _assert_same_image(basic_registry, src_repo, bearer_registry, dst_repo, "v1", image)
    # Without credentials the push is refused, with a clear error naming the reference.
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "none"))
    report = mirror.copy(image.reference, f"{bearer_registry.host}/{make_repo_name()}:v1")
    assert not report.ok
    assert image.reference in report.errors[0][0]


def test_missing_tag_is_a_clear_error(registry, dst_registry, make_repo_name):
    src_repo = make_repo_name()
    raw.push_image(registry, src_repo, "v1")
    report = mirror.copy(f"{registry.host}/{src_repo}:nope", f"{dst_registry.host}/{make_repo_name()}")
    assert not report.ok and report.images == []
    assert "not found" in report.errors[0][1]
    report = mirror.mirror_repository(f"{registry.host}/{make_repo_name()}", f"{dst_registry.host}/x/y")
    assert not report.ok and "NAME_UNKNOWN" in report.errors[0][1]


def test_corrupt_source_bytes_abort_the_upload(registry, dst_registry, make_repo_name):
    src_repo, dst_repo = make_repo_name(), make_repo_name()
    image = raw.push_image(registry, src_repo, "v1", layers=[os.urandom(300_000)])
    # Flip the first byte of the layer in the source registry's storage (served as stored).
    digest = image.layer_digests[0].split(":", 1)[1]
    data = os.path.join(registry.root, "docker/registry/v2/blobs/sha256", digest[:2], digest, "data")
    with open(data, "r+b") as f:
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 0xFF]))
    report = mirror.copy(image.reference, f"{dst_registry.host}/{dst_repo}:v1", retries=0)
    assert not report.ok and report.images_failed == 1
    assert "hashing to" in report.errors[0][1]
    assert raw.get_manifest(dst_registry, dst_repo, "v1").status == 404
    assert not raw.blob_exists(dst_registry, dst_repo, image.layer_digests[0])


def test_many_jobs_are_not_capped_by_the_connection_pool(registry, dst_registry, make_repo_name, proxy_factory):
    """``jobs=24`` without a Client of the caller's: the Client made for the run has a pool big enough
    for 24 streamed copies at once (the default Client allows 16 connections per host). Seen at a
    source whose blob answers trickle, so that the copies overlap."""
    src_repo, dst_repo = make_repo_name(), make_repo_name()
    for i in range(24):
        raw.push_image(registry, src_repo, f"v{i:02d}", layers=[os.urandom(4096)])
    proxy = proxy_factory(registry)
    proxy.trickle_rate = 8192
    proxy.match("GET", "/blobs/sha256:")
    proxy.set_rates(trickle=1.0)
    report = mirror.mirror_repository(f"{proxy.host}/{src_repo}", f"{dst_registry.host}/{dst_repo}", jobs=24,
                                      referrers=False)
    assert report.ok and report.images_copied == 24, report.errors
    spans = [(r.received_at, r.answered_at) for r in proxy.records if r.method == "GET" and "/blobs/" in r.path]
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    peak = now = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    assert peak > 16, f"at most {peak} blob downloads at once"
