"""The referrers lookup of an image costs one round trip, not one per question: the referrers API, the
fallback tag and cosign's tags are asked together (a registry 150 ms away made it ~0.46 s per image)."""

from __future__ import annotations

from collections.abc import Callable

from ocitransport.mirror import copy
from tests.servers import process, raw
from tests.servers.proxy import FaultProxy
from tests.servers.registry import RegistryServer


def test_referrer_questions_go_out_together(
        registry: RegistryServer, dst_registry: RegistryServer,
        proxy_factory: Callable[..., FaultProxy], make_repo_name: Callable[[], str]) -> None:
    repo = make_repo_name()
    image = raw.push_image(registry, repo, "v1")
    proxy = proxy_factory(registry)
    # The referrers API answer is held back: every other question about the image's referrers must
    # already have been asked by the time it comes (asked in turn, they would follow it).
    proxy.hold_request(0.5, method="GET", path_contains="/referrers/")
    report = copy(f"{process.LOOPBACK}:{proxy.port}/{repo}:v1", f"{dst_registry.host}/{repo}:v1")
    assert report.ok, report.errors
    records = proxy.records
    api = next(r for r in records if "/referrers/" in r[1])
    hex_ = image.digest.split(":")[1]
    others = [r for r in records if r[0] == "HEAD" and f"/manifests/sha256-{hex_}" in r[1]]
    assert {r[1].rsplit("-", 1)[-1].split(".")[-1] for r in others} >= {"sig", "att", "sbom"}
    assert len(others) == 4  # the fallback tag and cosign's three
    for r in others:
        assert r.received_at < api.answered_at, (r, api)
