"""One retry budget: against an endpoint that always fails, each request is sent ``retries + 1`` times in
all, whatever layers repeat it (the retry layer, a planning step read again, an image copied again).

The source registry sits behind the fault proxy (tests/servers/proxy.py), which answers every request to
the failing path with 503 itself and records what reached it.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable

import pytest

import ocitransport
from ocitransport import mirror
from tests.servers import raw
from tests.servers.proxy import FaultProxy
from tests.servers.registry import RegistryServer

pytestmark = pytest.mark.registry

RETRIES = 2
ALWAYS = 10_000


def _sent(proxy: FaultProxy, path_contains: str) -> Counter[tuple[str, str]]:
    return Counter((r[0], r[1]) for r in proxy.records if path_contains in r[1])


@pytest.fixture
def source(registry: RegistryServer, make_repo_name: Callable[[], str]) -> tuple[str, raw.PushedImage]:
    repo = make_repo_name()
    return repo, raw.push_image(registry, repo, "v1", layers=[os.urandom(4096)])


def test_a_manifest_that_always_fails(registry: RegistryServer, dst_registry: RegistryServer,
                                      proxy_factory: Callable[..., FaultProxy], make_repo_name: Callable[[], str],
                                      source: tuple[str, raw.PushedImage]) -> None:
    repo, _ = source
    proxy = proxy_factory(registry)
    proxy.answer_status(503, times=ALWAYS, path_contains=f"/{repo}/manifests/")
    with ocitransport.Client() as client:
        report = mirror.copy(f"{proxy.host}/{repo}:v1", f"{dst_registry.host}/{make_repo_name()}:v1",
                             client=client, retries=RETRIES)
    assert not report.ok and report.images_copied == 0
    sent = _sent(proxy, "/manifests/")
    assert sent and set(sent.values()) == {RETRIES + 1}, sent


def test_a_tag_list_that_always_fails(registry: RegistryServer, dst_registry: RegistryServer,
                                      proxy_factory: Callable[..., FaultProxy], make_repo_name: Callable[[], str],
                                      source: tuple[str, raw.PushedImage]) -> None:
    repo, _ = source
    proxy = proxy_factory(registry)
    proxy.answer_status(503, times=ALWAYS, path_contains="/tags/list")
    with ocitransport.Client() as client:
        report = mirror.mirror_repository(f"{proxy.host}/{repo}", f"{dst_registry.host}/{make_repo_name()}",
                                          client=client, retries=RETRIES)
    assert not report.ok and "503" in report.errors[0][1], report.errors
    sent = _sent(proxy, "/tags/list")
    assert sent and set(sent.values()) == {RETRIES + 1}, sent


def test_a_blob_that_always_fails(registry: RegistryServer, dst_registry: RegistryServer,
                                  proxy_factory: Callable[..., FaultProxy], make_repo_name: Callable[[], str],
                                  source: tuple[str, raw.PushedImage]) -> None:
    """Planning goes well; the image's per-image attempts and the blob copy's own retries draw from the
    same budget as the retry layer."""
    repo, image = source
    layer = image.layer_digests[0]
    proxy = proxy_factory(registry)
    proxy.answer_status(503, times=ALWAYS, method="GET", path_contains=f"/blobs/{layer}")
    with ocitransport.Client() as client:
        report = mirror.copy(f"{proxy.host}/{repo}:v1", f"{dst_registry.host}/{make_repo_name()}:v1",
                             client=client, retries=RETRIES)
    assert report.images_failed == 1, report.summary()
    assert "503" in report.images[0].error, report.images[0].error
    sent = _sent(proxy, f"/blobs/{layer}")
    assert sent == {("GET", f"/v2/{repo}/blobs/{layer}"): RETRIES + 1}, sent


def test_every_wait_follows_the_runs_backoff(registry: RegistryServer, dst_registry: RegistryServer,
                                             proxy_factory: Callable[..., FaultProxy],
                                             make_repo_name: Callable[[], str], source: tuple[str, raw.PushedImage],
                                             caplog: pytest.LogCaptureFixture) -> None:
    """A tag list that does not parse, a manifest cut short and a blob cut short: the outer loops that
    read them again (the tag list re-read, the planning step, the manifest re-read, the download resume)
    each wait as the run's one backoff says (0.5 s doubling, 10 % jitter), not a formula of their own."""
    import re

    repo, image = source
    proxy = proxy_factory(registry)
    proxy.answer_status(200, path_contains="/tags/list", body=b"{not json")
    proxy.cut_response_body(5, method="GET", path_contains="/tags/list")
    proxy.cut_response_body(10, method="GET", path_contains="/manifests/", times=2)
    proxy.cut_response_body(100, method="GET", path_contains=f"/blobs/{image.layer_digests[0]}")
    with caplog.at_level("INFO", logger="ocitransport"), ocitransport.Client() as client:
        report = mirror.mirror_repository(f"{proxy.host}/{repo}", f"{dst_registry.host}/{make_repo_name()}",
                                          client=client, retries=RETRIES)
    assert report.ok and report.images_copied == 1, report.summary()
    waits = [float(m.group(1)) for r in caplog.records
             for m in [re.search(r" in (\d+\.\d)s\b", r.getMessage())] if m]
    # The tag list read again, the planning step, the image twice, the download resumed.
    assert len(waits) >= 5, [r.getMessage() for r in caplog.records]
    allowed = [(0.5 * 2 ** n, 0.5 * 2 ** n * 1.1) for n in range(4)]  # 0.5 s doubling, 10 % jitter
    assert all(any(lo - 0.05 <= w <= hi + 0.05 for lo, hi in allowed) for w in waits), \
        [r.getMessage() for r in caplog.records if " in " in r.getMessage()]
