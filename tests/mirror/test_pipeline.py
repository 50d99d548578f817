"""Planning pipelined into copying: an image's copy starts as soon as that image is planned (not after
every image is), the manifest planning read is the one the copy uses, and referrers, planning failures,
keep-going and fail-fast behave as with a whole plan first."""

from __future__ import annotations

import collections
import json
import os
from collections.abc import Callable
from typing import Any

from ocitransport import mirror
from ocitransport.mirror.referrers import cosign_tags
from tests.servers import process, raw
from tests.servers.proxy import FaultProxy
from tests.servers.raw import OCI_MANIFEST
from tests.servers.registry import RegistryServer

#: How long a held request waits at the proxy: far longer than planning and copying a small image here.
HOLD = 1.5


class Planned:
    """A progress display recording what ``planned`` was told."""

    def __init__(self) -> None:
        self.totals: list[int] = []
        self.done = 0

    def planned(self, units: list[Any]) -> None:
        self.totals.append(len(units))

    def image_done(self, result: Any) -> None:
        self.done += 1

    def bytes_done(self, n: int) -> None:
        pass


def _source(registry: RegistryServer, proxy_factory: Callable[..., FaultProxy], repo: str,
            tags: list[str]) -> tuple[FaultProxy, dict[str, raw.PushedImage]]:
    images = {t: raw.push_image(registry, repo, t, layers=[os.urandom(3000)]) for t in tags}
    return proxy_factory(registry), images


def _blob_gets(proxy: FaultProxy, image: raw.PushedImage) -> list[Any]:
    return [r for r in proxy.records if r[0] == "GET" and any(f"/blobs/{d}" in r[1] for d in image.layer_digests)]


def test_copy_starts_before_the_last_image_is_planned(
        registry: RegistryServer, dst_registry: RegistryServer,
        proxy_factory: Callable[..., FaultProxy], make_repo_name: Callable[[], str]) -> None:
    repo, dst_repo = make_repo_name(), make_repo_name()
    proxy, images = _source(registry, proxy_factory, repo, ["a0", "a1", "slow"])
    # Planning "slow" waits for its manifest answer; "a0" must be copied meanwhile.
    proxy.hold_request(HOLD, path_contains="/manifests/slow")
    progress = Planned()
    report = mirror.mirror_repository(f"{process.LOOPBACK}:{proxy.port}/{repo}",
                                      f"{dst_registry.host}/{dst_repo}", progress=progress)
    assert report.ok and report.images_copied == 3, report.errors
    held = next(r for r in proxy.records if r[1].endswith("/manifests/slow"))
    assert held.answered_at - held.received_at >= HOLD * 0.9
    for tag in ("a0", "a1"):
        gets = _blob_gets(proxy, images[tag])
        assert gets and all(r.answered_at < held.answered_at for r in gets), (tag, gets, held)
    # One manifest read per image: planning's, by tag.
    assert sorted(r[1].rsplit("/", 1)[1] for r in proxy.records if "/manifests/" in r[1]) == ["a0", "a1", "slow"]
    # Progress heard of units as they were planned: the total grew to every image.
    assert progress.totals[-1] == 3 and progress.totals == sorted(progress.totals) and len(progress.totals) >= 2
    assert progress.done == 3


def test_one_get_per_manifest_and_no_head_of_a_new_image(
        registry: RegistryServer, dst_registry: RegistryServer,
        proxy_factory: Callable[..., FaultProxy], make_repo_name: Callable[[], str]) -> None:
    repo, dst_repo = make_repo_name(), make_repo_name()
    amd = raw.push_image(registry, repo, "amd", layers=[os.urandom(2000)])
    arm = raw.push_image(registry, repo, "arm", layers=[os.urandom(2000)])
    index = raw.push_index(registry, repo, "multi", [amd, arm], platforms=[
        {"architecture": "amd64", "os": "linux"}, {"architecture": "arm64", "os": "linux"}])
    proxy = proxy_factory(registry)
    source = f"{process.LOOPBACK}:{proxy.port}/{repo}"
    # A platform filter that keeps both children: planning reads the index, the copy pushes a filtered
    # index, and the referrers of the children are asked for: all from the one read.
    report = mirror.copy(f"{source}:multi", f"{dst_registry.host}/{dst_repo}:multi",
                         platforms=["linux/amd64", "linux/arm64"])
    assert report.ok and report.images_copied == 1, report.errors
    gets = collections.Counter(r[1].split("/manifests/", 1)[1] for r in proxy.records
                               if r[0] == "GET" and "/manifests/" in r[1])
    index_reads = gets["multi"] + gets[index]
    assert index_reads == 1, gets
    assert gets[amd.digest] == gets[arm.digest] == 1, gets
    heads = [r[1] for r in proxy.records
             if r[0] == "HEAD" and r[1].endswith(("/manifests/multi", f"/manifests/{index}"))]
    assert heads == []  # the destination lacked it: the GET was the only question about it

    # A repository mirror: every image's manifest is read once, by tag, and not HEADed first.
    proxy.reset()
    report = mirror.mirror_repository(source, f"{dst_registry.host}/{make_repo_name()}", tags=["amd", "arm"])
    assert report.ok and report.images_copied == 2, report.errors
    manifest_requests = sorted((r[0], r[1].split("/manifests/", 1)[1]) for r in proxy.records
                               if "/manifests/" in r[1] and not r[1].split("/manifests/", 1)[1].startswith("sha256-"))
    assert manifest_requests == [("GET", "amd"), ("GET", "arm")]


def test_an_up_to_date_tag_costs_no_manifest_get(
        registry: RegistryServer, dst_registry: RegistryServer,
        proxy_factory: Callable[..., FaultProxy], make_repo_name: Callable[[], str]) -> None:
    repo, dst_repo = make_repo_name(), make_repo_name()
    proxy, _ = _source(registry, proxy_factory, repo, ["v1", "v2"])
    source, dest = f"{process.LOOPBACK}:{proxy.port}/{repo}", f"{dst_registry.host}/{dst_repo}"
    assert mirror.mirror_repository(source, dest).images_copied == 2
    proxy.reset()
    again = mirror.mirror_repository(source, dest)
    assert again.ok and again.images_skipped == 2, again.errors
    # Docker Hub counts manifest GETs against its pull quota; a no-op re-sync must cost none.
    assert not [r for r in proxy.records if r[0] == "GET" and "/manifests/" in r[1]]


def test_referrers_still_follow_their_subject(
        registry: RegistryServer, make_repo_name: Callable[[], str],
        proxy_factory: Callable[..., FaultProxy], dst_registry: RegistryServer) -> None:
    repo, dst_repo = make_repo_name(), make_repo_name()
    image = raw.push_image(registry, repo, "v1", layers=[os.urandom(200_000)])
    config = raw.push_blob(registry, repo, b"{}")
    layer = raw.push_blob(registry, repo, b"signature")
    sig = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/x.sig",
                      "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config, "size": 2},
                      "layers": [{"mediaType": "application/x.sig", "digest": layer, "size": 9}],
                      "subject": {"mediaType": image.media_type, "digest": image.digest,
                                  "size": len(image.manifest)}}).encode()
    raw.push_manifest(registry, repo, cosign_tags(image.digest)[0], sig, OCI_MANIFEST)
    dst = proxy_factory(dst_registry)
    # The image's layer arrives slowly at the destination: its referrer is known long before.
    dst.hold_request(HOLD, method="PUT", path_contains="/blobs/uploads/")
    report = mirror.copy(image.reference, f"{process.LOOPBACK}:{dst.port}/{dst_repo}:v1")
    assert report.ok and report.images_copied == 2, report.errors
    puts = [r for r in dst.records if r[0] == "PUT" and "/manifests/" in r[1]]
    assert [p[1].rsplit("/", 1)[1] for p in puts] == ["v1", cosign_tags(image.digest)[0]]
    assert puts[0].answered_at <= puts[1].received_at


def test_a_planning_failure_does_not_stop_the_others(
        registry: RegistryServer, dst_registry: RegistryServer,
        proxy_factory: Callable[..., FaultProxy], make_repo_name: Callable[[], str]) -> None:
    repo, dst_repo = make_repo_name(), make_repo_name()
    proxy, images = _source(registry, proxy_factory, repo, ["a0", "a1"])
    # "ghost" is not there; the registry says so only after HOLD seconds.
    proxy.hold_request(HOLD, method="GET", path_contains="/manifests/ghost")
    report = mirror.mirror_repository(f"{process.LOOPBACK}:{proxy.port}/{repo}", f"{dst_registry.host}/{dst_repo}",
                                      tags=["a0", "ghost", "a1"])
    assert not report.ok and report.images_copied == 2
    assert [(ref.rsplit(":", 1)[1], "not found" in msg) for ref, msg in report.errors] == [("ghost", True)]
    held = next(r for r in proxy.records if r[1].endswith("/manifests/ghost"))
    assert all(r.answered_at < held.answered_at for t in ("a0", "a1") for r in _blob_gets(proxy, images[t]))


def test_fail_fast_stops_planning_and_copying_at_a_planning_failure(
        registry: RegistryServer, dst_registry: RegistryServer,
        proxy_factory: Callable[..., FaultProxy], make_repo_name: Callable[[], str]) -> None:
    repo, dst_repo = make_repo_name(), make_repo_name()
    proxy, _ = _source(registry, proxy_factory, repo, ["a0", "late"])
    proxy.hold_request(HOLD / 3, method="GET", path_contains="/manifests/ghost")
    proxy.hold_request(HOLD, method="GET", path_contains="/manifests/late")
    report = mirror.mirror_repository(f"{process.LOOPBACK}:{proxy.port}/{repo}", f"{dst_registry.host}/{dst_repo}",
                                      tags=["a0", "ghost", "late"], keep_going=False)
    assert not report.ok
    assert [ref.rsplit(":", 1)[1] for ref, _ in report.errors] == ["ghost"]
    # a0 was planned (and copied) before ghost failed; late was still being planned: never copied.
    assert report.images_copied == 1 and [r.destination.rsplit(":", 1)[1] for r in report.images] == ["a0"]
    assert raw.list_tags(dst_registry, dst_repo) == ["a0"]


def test_a_local_sync_is_pipelined_too(
        registry: RegistryServer, dst_registry: RegistryServer,
        proxy_factory: Callable[..., FaultProxy], make_repo_name: Callable[[], str]) -> None:
    repo, prefix = make_repo_name(), make_repo_name()
    proxy, images = _source(registry, proxy_factory, repo, ["a0", "slow"])
    proxy.hold_request(HOLD, path_contains="/manifests/slow")
    report = mirror.sync({"destination": f"{dst_registry.host}/{prefix}",
                          f"{process.LOOPBACK}:{proxy.port}": {"images": {repo: ["a0", "slow"]}}})
    assert report.ok and report.images_copied == 2, report.errors
    held = next(r for r in proxy.records if r[1].endswith("/manifests/slow"))
    gets = _blob_gets(proxy, images["a0"])
    assert gets and all(r.answered_at < held.answered_at for r in gets), (gets, held)
