"""A destination whose storage is full: not retried (it was 292 retries over 60 s), said in words."""

from __future__ import annotations

import json
import re
import time

from tests.servers import raw

# What distribution 2.8 answers when its filesystem driver gets ENOSPC (registry/handlers/app.go: the Go
# error as the UNKNOWN code's detail).
ENOSPC = json.dumps({"errors": [{"code": "UNKNOWN", "message": "unknown error", "detail": {
    "Op": "write", "Path": "/var/lib/registry/docker/registry/v2/repositories/x/_uploads/u/data",
    "Err": 28}}]}).encode()


def test_full_destination_is_not_retried_and_is_named(registry, registry_factory, proxy_factory, make_repo_name,
                                                      cli):
    dst = registry_factory()
    proxy = proxy_factory(dst)
    repo = make_repo_name()
    image = raw.push_image(registry, repo, "v1", layers=[b"x" * 4096])
    proxy.answer_status(500, times=1000, method="PUT", path_contains="/blobs/uploads/", body=ENOSPC)
    proxy.answer_status(500, times=1000, method="PATCH", path_contains="/blobs/uploads/", body=ENOSPC)
    started = time.monotonic()
    result = cli("copy", image.reference, f"{proxy.host}/{repo}:v1", timeout=120)
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert f"the destination registry {proxy.host}'s storage is full" in result.stderr
    assert "not retried" in result.stderr
    assert int(re.search(r"(\d+) retries", result.stderr).group(1)) == 0
    assert elapsed < 10, f"{elapsed:.1f} s"
    writes = [r for r in proxy.records if r[0] in ("PUT", "PATCH") and "/blobs/uploads/" in r[1]]
    assert 1 <= len(writes) <= 2  # the one write that failed (a PATCH and its PUT at most)
