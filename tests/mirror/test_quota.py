"""Pull quotas: a registry that states one on manifest answers (Docker Hub's ``RateLimit-*`` headers)
gets it in the report, the JSON report and the summary. The source is a real registry behind our proxy,
which adds the headers the way Docker Hub does: one pull fewer left for every manifest GET."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from ocitransport import mirror
from ocitransport.cli import main
from ocitransport.mirror.report import Report
from ocitransport.mirror.session import PullQuota, parse_pull_quota
from tests.servers import raw
from tests.servers.proxy import WINDOW, DockerHubQuota, FaultProxy
from tests.servers.registry import RegistryServer


def _source(registry: RegistryServer, proxy_factory: Callable[..., FaultProxy], repo: str,
            images: int) -> tuple[FaultProxy, DockerHubQuota]:
    for i in range(images):
        raw.push_image(registry, repo, f"v{i}", layers=[f"layer {i}".encode()])
    proxy = proxy_factory(registry)
    quota = DockerHubQuota(90)
    proxy.add_headers = quota
    return proxy, quota


def test_mirror_reports_the_lowest_quota_seen(registry, dst_registry, make_repo_name, proxy_factory):
    src_repo, dst_repo = make_repo_name(), make_repo_name()
    proxy, quota = _source(registry, proxy_factory, src_repo, images=4)
    report = mirror.mirror_repository(f"{proxy.host}/{src_repo}", f"{dst_registry.host}/{dst_repo}")
    assert report.ok and report.images_copied == 4, report.errors
    assert quota.remaining == 86  # one manifest GET per image
    assert report.pull_quota == {proxy.host: {"remaining": 86, "limit": 100, "window_seconds": WINDOW}}
    # The destination (no headers) has no entry; the summary and the JSON report carry the figure.
    assert f"pull quota: {proxy.host}: 86 of 100 pulls left per 6 h" in report.summary()
    assert json.loads(report.to_json())["pull_quota"][proxy.host]["remaining"] == 86

    # A no-op rerun only HEADs: the quota stands, and the report says so.
    again = mirror.mirror_repository(f"{proxy.host}/{src_repo}", f"{dst_registry.host}/{dst_repo}")
    assert again.images_skipped == 4 and again.pull_quota[proxy.host]["remaining"] == 86


def test_cli_json_and_summary(registry, dst_registry, make_repo_name, proxy_factory, capsys):
    src_repo, dst_repo = make_repo_name(), make_repo_name()
    proxy, _quota = _source(registry, proxy_factory, src_repo, images=2)
    assert main(["mirror", "--json", f"{proxy.host}/{src_repo}", f"{dst_registry.host}/{dst_repo}"]) == 0
    out, _err = capsys.readouterr()
    assert json.loads(out)["pull_quota"] == {proxy.host: {"remaining": 88, "limit": 100, "window_seconds": WINDOW}}
    assert main(["mirror", f"{proxy.host}/{src_repo}", f"{dst_registry.host}/{dst_repo}"]) == 0
    _out, err = capsys.readouterr()
    assert f"pull quota: {proxy.host}: 88 of 100 pulls left per 6 h" in err.splitlines()[-1]


def test_registry_without_quota_headers_reports_none(registry, dst_registry, make_repo_name):
    src_repo, dst_repo = make_repo_name(), make_repo_name()
    raw.push_image(registry, src_repo, "v1")
    report = mirror.copy(f"{registry.host}/{src_repo}:v1", f"{dst_registry.host}/{dst_repo}:v1")
    assert report.ok and report.pull_quota == {}
    assert "pull quota" not in report.summary()


@pytest.mark.parametrize(("remaining", "limit", "expected"), [
    ("76;w=21600", "100;w=21600", PullQuota(76, 100, 21600)),
    ("0;w=21600", "100;w=21600", PullQuota(0, 100, 21600)),
    ("12", None, PullQuota(12, 0, 0)),
    (" 7 ; w = 30 ", "9", PullQuota(7, 9, 30)),
    ("5", "100;w=60", PullQuota(5, 100, 60)),  # the window from the limit when only it says
    ("3;w=²", None, PullQuota(3, 0, 0)),
    ("", "100", None),
    ("-1", None, None),
    ("²", None, None),
    ("1" * 19, None, None),
    ("many;w=60", None, None),
])
def test_parse_pull_quota(remaining, limit, expected):
    headers = {"RateLimit-Remaining": remaining}
    if limit is not None:
        headers["RateLimit-Limit"] = limit
    assert parse_pull_quota(headers) == expected


def test_merge_keeps_the_lowest_per_registry():
    a, b = Report(), Report()
    a.note_pull_quota({"hub": PullQuota(50, 100, 21600), "other": PullQuota(9)})
    b.note_pull_quota({"hub": PullQuota(40, 100, 21600)})
    b.note_pull_quota({"hub": PullQuota(45, 100, 21600)})  # higher than what b saw: ignored
    a.merge(b)
    assert a.pull_quota == {"hub": {"remaining": 40, "limit": 100, "window_seconds": 21600},
                            "other": {"remaining": 9, "limit": 0, "window_seconds": 0}}
    assert a.quota_text() == "hub: 40 of 100 pulls left per 6 h, other: 9 pulls left"
