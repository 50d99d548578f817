"""Chunked and resumable blob uploads between real registries, with faults from a real proxy
(tests/servers/proxy.py) and a corrupted source registry's storage. Results are read back with raw
HTTP (tests/servers/raw.py), never with the library itself.

Sizes are scaled down: chunked above 1 MiB, 256 KiB chunks, a 3 MiB layer (13 chunks, the last short).
"""

from __future__ import annotations

import asyncio
import os
import pwd
from pathlib import Path

import pytest

from ocitransport import mirror
from ocitransport.client import Client
from ocitransport.mirror.execute import Executor
from ocitransport.mirror.session import Session
from tests.servers import raw
from tests.servers.fixtures import require_nginx
from tests.servers.nginx import NginxServer
from tests.servers.proxy import FaultProxy, ProxyRecord
from tests.servers.registry import RegistryServer

THRESHOLD = 1 << 20
CHUNK = 256 << 10
BIG = (3 << 20) + 1000
PATCHES = -(-BIG // CHUNK)


class Progress:
    """Records ``bytes_done``; optionally calls ``at_bytes[1]`` once progress passes ``at_bytes[0]``."""

    def __init__(self, at_bytes: tuple[int, object] | None = None) -> None:
        self.total = 0
        self.at_bytes = at_bytes

    def planned(self, units: object) -> None:
        pass

    def image_done(self, result: object) -> None:
        pass

    def bytes_done(self, n: int) -> None:
        self.total += n
        if self.at_bytes is not None and self.total >= self.at_bytes[0]:
            action, self.at_bytes = self.at_bytes[1], None
            action()  # type: ignore[operator]


def _copy(src: str, dst: str, *, progress: Progress | None = None, retries: int = 3,
          threshold: int = THRESHOLD) -> tuple[mirror.Report, Executor]:
    """Plan and run one copy with a lowered chunk threshold; the report and the executor (for its stats)."""
    plan = mirror.plan_copy(src, dst)
    assert not plan.errors, plan.errors

    async def run() -> tuple[mirror.Report, Executor]:
        with Client() as client:
            executor = Executor(Session(client, retries=retries), retries=retries, progress=progress,
                                chunk_threshold=threshold, chunk_size=CHUNK)
            return await executor.run(plan.units), executor

    return asyncio.run(run())


def _push(registry: RegistryServer, repo: str) -> tuple[raw.PushedImage, bytes]:
    big = os.urandom(BIG)
    return raw.push_image(registry, repo, "v1", layers=[big, os.urandom(5000)]), big


def _uploads(proxy: FaultProxy, method: str) -> list[ProxyRecord]:
    """The proxy's records of ``method`` requests to upload sessions (``.../blobs/uploads/...``)."""
    return [r for r in proxy.records if r.method == method and "/blobs/uploads/" in r.path]


def _assert_copied(report: mirror.Report, image: raw.PushedImage, dst: RegistryServer, dst_repo: str) -> None:
    assert report.ok, report.errors
    got = raw.get_manifest(dst, dst_repo, "v1")
    assert got.status == 200 and got.body == image.manifest
    for digest, data in image.blobs.items():
        assert raw.get_blob(dst, dst_repo, digest) == data


def _corrupt(registry: RegistryServer, digest: str, at: int) -> None:
    """Flip one byte of a blob in the registry's own storage (it serves stored bytes as they are)."""
    hexdigest = digest.split(":", 1)[1]
    path = Path(registry.root) / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data"
    with open(path, "r+b") as f:
        f.seek(at)
        byte = f.read(1)
        f.seek(at)
        f.write(bytes([byte[0] ^ 0xFF]))


class BufferingNginx(NginxServer):
    """nginx as many registries run behind it: a reverse proxy that buffers request bodies, so a PATCH
    whose client went away never reaches the registry half-way."""

    def __init__(self, upstream: RegistryServer) -> None:
        super().__init__()
        self.upstream = upstream

    def _config(self) -> str:
        p = self.prefix
        user = f"user {pwd.getpwuid(0).pw_name};" if os.geteuid() == 0 else ""
        temp = "\n".join(f"    {name}_temp_path {p}/tmp/{name};"
                         for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        return f"""
{user}
worker_processes 1;
pid {p}/nginx.pid;
error_log {self.error_log} warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
{temp}
    server {{
        listen {self.host};
        client_max_body_size 0;
        proxy_request_buffering on;
        location = /small {{ root {self.root}; }}
        location / {{
            proxy_pass http://{self.upstream.host};
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_buffering off;
        }}
    }}
}}
"""


@pytest.fixture
def buffering_nginx(dst_registry: RegistryServer):
    require_nginx()
    server = BufferingNginx(dst_registry).start()
    try:
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------------- chunked


def test_chunked_upload_preserves_digests(registry, dst_registry, make_repo_name, proxy_factory):
    src_repo, dst_repo = make_repo_name(), make_repo_name()
    image, big = _push(registry, src_repo)
    proxy = proxy_factory(dst_registry)
    progress = Progress()
    report, executor = _copy(image.reference, f"{proxy.host}/{dst_repo}:v1", progress=progress)
    _assert_copied(report, image, dst_registry, dst_repo)
    patches = _uploads(proxy, "PATCH")
    # The big layer went up as full chunks and one short last chunk, each answered 202 ...
    assert [r.request_body_bytes for r in patches] == [CHUNK] * (PATCHES - 1) + [BIG - CHUNK * (PATCHES - 1)]
    assert {r.status for r in patches} == {202}
    # ... then an empty PUT ?digest=; the small blobs went up monolithically.
    puts = sorted(r.request_body_bytes for r in _uploads(proxy, "PUT"))
    assert puts == sorted([0, *(len(b) for d, b in image.blobs.items() if b is not big)])
    total = sum(len(b) for b in image.blobs.values())
    stats = executor.blobs.stats
    assert (stats.blobs, stats.blob_bytes, stats.bytes_uploaded) == (3, total, total)
    assert stats.uploads_resumed == stats.uploads_restarted == stats.downloads_resumed == 0
    assert progress.total == total == report.bytes_transferred


def test_below_threshold_is_one_put(registry, dst_registry, make_repo_name, proxy_factory):
    src_repo, dst_repo = make_repo_name(), make_repo_name()
    image, _big = _push(registry, src_repo)
    proxy = proxy_factory(dst_registry)
    report, _ = _copy(image.reference, f"{proxy.host}/{dst_repo}:v1", threshold=BIG)
    _assert_copied(report, image, dst_registry, dst_repo)
    assert _uploads(proxy, "PATCH") == []
    assert BIG in [r.request_body_bytes for r in _uploads(proxy, "PUT")]


# ---------------------------------------------------------------------------------------------- resume


def test_refused_patch_resumes_from_the_registry_status(registry, dst_registry, make_repo_name, proxy_factory):
    """A PATCH refused half-way through the blob (503, its body never reaching the registry): the upload
    goes on from the offset the registry's upload status gives; nothing is sent twice."""
    src_repo, dst_repo = make_repo_name(), make_repo_name()
    image, big = _push(registry, src_repo)
    proxy = proxy_factory(dst_registry)
    progress = Progress(at_bytes=(BIG // 2, lambda: proxy.answer_status(503, method="PATCH")))
    report, executor = _copy(image.reference, f"{proxy.host}/{dst_repo}:v1", progress=progress)
    _assert_copied(report, image, dst_registry, dst_repo)
    patches = _uploads(proxy, "PATCH")
    assert len(patches) == PATCHES + 1 and [r.status for r in patches].count(503) == 1
    assert sum(r.request_body_bytes for r in patches) == BIG
    assert [r.status for r in _uploads(proxy, "GET")] == [204]
    stats = executor.blobs.blob_stats[raw.sha256_digest(big)]
    assert (stats.uploads_resumed, stats.uploads_restarted) == (1, 0)


def test_lost_patch_answer_starts_a_new_upload_on_distribution(registry, dst_registry, make_repo_name,
                                                                proxy_factory):
    """A PATCH that reached the registry whole but whose 202 never came back (the connection reset after
    the registry answered): the registry holds a chunk more than the client saw acknowledged. The client
    asks for the upload's status with the last URL it was given; distribution signs the offset into that
    URL's ``_state``, finds it stale and cancels the upload (404), so the copy goes on in a new upload and
    still completes with the right digest."""
    src_repo, dst_repo = make_repo_name(), make_repo_name()
    image, big = _push(registry, src_repo)
    proxy = proxy_factory(dst_registry)
    progress = Progress(at_bytes=(BIG // 2, lambda: proxy.lose_response(method="PATCH")))
    report, executor = _copy(image.reference, f"{proxy.host}/{dst_repo}:v1", progress=progress)
    _assert_copied(report, image, dst_registry, dst_repo)
    patches = _uploads(proxy, "PATCH")
    lost = [i for i, r in enumerate(patches) if r.fault == "reset_after"]
    assert len(lost) == 1 and 0 < lost[0] < PATCHES - 1  # inside the blob, not its last chunk
    assert [r.status for r in _uploads(proxy, "GET")] == [404]
    assert len(patches) == lost[0] + 1 + PATCHES  # the chunks up to the lost answer, then the whole blob
    stats = executor.blobs.blob_stats[raw.sha256_digest(big)]
    assert (stats.uploads_resumed, stats.uploads_restarted) == (0, 1)
    assert progress.total == sum(len(b) for b in image.blobs.values())  # bytes sent again are not progress


def test_cut_patch_resumes_from_the_registry_offset(registry, make_repo_name, buffering_nginx, dst_registry,
                                                    proxy_factory):
    """A PATCH cut mid-body, in front of a registry behind a buffering reverse proxy: the upload goes on
    from the registry's offset; only the missing bytes are sent again."""
    src_repo, dst_repo = make_repo_name(), make_repo_name()
    image, big = _push(registry, src_repo)
    proxy = proxy_factory(buffering_nginx)
    progress = Progress(at_bytes=(BIG // 2, lambda: proxy.cut_request_body(CHUNK // 3, method="PATCH")))
    report, executor = _copy(image.reference, f"{proxy.host}/{dst_repo}:v1", progress=progress)
    _assert_copied(report, image, dst_registry, dst_repo)
    patches = _uploads(proxy, "PATCH")
    cut = [i for i, r in enumerate(patches) if r.fault == "cut_request"]
    assert len(cut) == 1 and cut[0] >= 4  # well inside the blob
    assert len(patches) == PATCHES + 1
    sent = sum(r.request_body_bytes for r in patches)
    assert BIG < sent <= BIG + CHUNK
    assert [r.status for r in _uploads(proxy, "GET")] == [204]
    stats = executor.blobs.blob_stats[raw.sha256_digest(big)]
    assert (stats.uploads_resumed, stats.uploads_restarted) == (1, 0)
    assert BIG < stats.bytes_uploaded <= BIG + CHUNK
    total = sum(len(b) for b in image.blobs.values())
    assert progress.total == total  # bytes sent again are not progress


def test_cut_patch_without_resumable_session_starts_a_new_upload(registry, dst_registry, make_repo_name,
                                                                 proxy_factory):
    """distribution drops an upload whose storage got part of a cut PATCH (its offset no longer matches
    the upload state): the copy still completes, in a new upload."""
    src_repo, dst_repo = make_repo_name(), make_repo_name()
    image, big = _push(registry, src_repo)
    proxy = proxy_factory(dst_registry)
    proxy.cut_request_body(CHUNK // 3, method="PATCH")
    report, executor = _copy(image.reference, f"{proxy.host}/{dst_repo}:v1")
    _assert_copied(report, image, dst_registry, dst_repo)
    stats = executor.blobs.blob_stats[raw.sha256_digest(big)]
    # A new upload was started; whether distribution first took one resume from the broken session depends
    # on how far it had stored the cut PATCH when the status was asked (it varies with timing).
    assert stats.uploads_restarted == 1 and stats.uploads_resumed <= 1
    # Sent at most: the cut part, one chunk of the resume (before the registry refuses the broken session)
    # and the whole blob again in the new upload.
    assert sum(r.request_body_bytes for r in _uploads(proxy, "PATCH")) <= CHUNK // 3 + CHUNK + BIG
    assert len(_uploads(proxy, "POST")) == 1 + 2 + 1  # big layer twice, small layer, config


def test_cut_monolithic_put_is_sent_again(registry, make_repo_name, buffering_nginx, dst_registry,
                                          proxy_factory):
    src_repo, dst_repo = make_repo_name(), make_repo_name()
    image, _big = _push(registry, src_repo)
    proxy = proxy_factory(buffering_nginx)
    proxy.cut_request_body(BIG // 2, method="PUT", path_contains="/blobs/uploads/")
    report, executor = _copy(image.reference, f"{proxy.host}/{dst_repo}:v1", threshold=BIG)
    _assert_copied(report, image, dst_registry, dst_repo)
    assert executor.blobs.stats.uploads_resumed == 1


@pytest.mark.parametrize("threshold", [THRESHOLD, BIG], ids=["chunked", "monolithic"])
def test_cut_source_download_resumes_with_range(registry, dst_registry, make_repo_name, proxy_factory,
                                                threshold):
    src_repo, dst_repo = make_repo_name(), make_repo_name()
    image, big = _push(registry, src_repo)
    digest = raw.sha256_digest(big)
    proxy = proxy_factory(registry)
    proxy.cut_response_body(BIG // 3, method="GET", path_contains=f"/blobs/{digest}")
    report, executor = _copy(f"{proxy.host}/{src_repo}:v1", f"{dst_registry.host}/{dst_repo}:v1",
                             threshold=threshold)
    _assert_copied(report, image, dst_registry, dst_repo)
    gets = [r for r in proxy.records if r.method == "GET" and digest in r.path]
    assert [(r.status, r.fault) for r in gets] == [(200, "cut_response"), (206, "")]
    stats = executor.blobs.blob_stats[digest]
    assert stats.downloads_resumed == 1 and stats.uploads_resumed == stats.uploads_restarted == 0
    assert BIG <= stats.bytes_downloaded < BIG + BIG // 3  # the resumed GET did not start over
    assert stats.bytes_uploaded == BIG


def test_upload_gives_up_after_retries(registry, dst_registry, make_repo_name, proxy_factory):
    src_repo, dst_repo = make_repo_name(), make_repo_name()
    image, _big = _push(registry, src_repo)
    proxy = proxy_factory(dst_registry)
    proxy.cut_request_body(0, method="PATCH", times=100)
    report, _ = _copy(image.reference, f"{proxy.host}/{dst_repo}:v1", retries=1)
    assert not report.ok and report.images_failed == 1
    # One attempt and one retry (a single status query between them). libcurl may itself re-send a request
    # head on a fresh connection when a reused one died before any body byte went out, hence "<= 4".
    # (The executor may retry the whole image too: count per upload session.)
    sessions = {r.path for r in _uploads(proxy, "PATCH")}
    for path in sessions:
        assert len([r for r in _uploads(proxy, "GET") if r.path == path]) <= 1
        assert 1 <= len([r for r in _uploads(proxy, "PATCH") if r.path == path]) <= 4
    assert 2 <= len(_uploads(proxy, "PATCH")) <= 4 * len(sessions)
    assert raw.get_manifest(dst_registry, dst_repo, "v1").status == 404


# ---------------------------------------------------------------------------------------------- integrity


@pytest.mark.parametrize("threshold", [THRESHOLD, BIG], ids=["chunked", "monolithic"])
@pytest.mark.parametrize("where", ["start", "end"])
def test_corrupt_source_is_a_digest_mismatch(registry, dst_registry, make_repo_name, proxy_factory, threshold,
                                             where):
    src_repo, dst_repo = make_repo_name(), make_repo_name()
    image, big = _push(registry, src_repo)
    digest = raw.sha256_digest(big)
    _corrupt(registry, digest, 10 if where == "start" else BIG - 1)
    proxy = proxy_factory(dst_registry)
    report, _ = _copy(image.reference, f"{proxy.host}/{dst_repo}:v1", threshold=threshold)
    assert not report.ok and report.images_failed == 1
    assert "hashing to" in report.errors[0][1]
    assert raw.get_manifest(dst_registry, dst_repo, "v1").status == 404
    assert not raw.blob_exists(dst_registry, dst_repo, digest)
    # The upload was never completed: no PUT carrying the last byte reached the registry.
    finals = [r for r in _uploads(proxy, "PUT") if r.request_body_bytes in (0, BIG)]
    assert finals == [] or all(r.status != 201 for r in finals)
    assert not [r for r in _uploads(proxy, "PATCH") if r.request_body_bytes == BIG - CHUNK * (PATCHES - 1)
                and r.status == 202]


# ---------------------------------------------------------------------------------------------- on S3


def test_cut_presigned_download_resumes_with_range(s3_registry, storage, dst_registry, make_repo_name):
    """The source is on S3: its blob GET is a 307 to a presigned URL, and the body breaks there. The
    resumed GET asks the registry again with ``Range`` and storage honours it on the new presigned URL."""
    src_repo, dst_repo = make_repo_name(), make_repo_name()
    image, big = _push(s3_registry, src_repo)
    digest = raw.sha256_digest(big)
    storage.reset()
    storage.proxy.cut_response_body(BIG // 3, method="GET", path_contains=f"/{digest[7:]}/data")
    report, executor = _copy(image.reference, f"{dst_registry.host}/{dst_repo}:v1")
    _assert_copied(report, image, dst_registry, dst_repo)
    gets = [r for r in storage.proxy.records if r.method == "GET" and r.path.endswith(f"/{digest[7:]}/data")]
    assert [(r.status, r.fault) for r in gets] == [(200, "cut_response"), (206, "")]
    stats = executor.blobs.blob_stats[digest]
    assert stats.downloads_resumed == 1 and BIG <= stats.bytes_downloaded < BIG + BIG // 3


def test_lost_final_put_answer_on_an_s3_destination(registry, s3_registry, make_repo_name, proxy_factory):
    """The PUT completing an upload reached the registry but its answer was lost. Recovery asks for the
    upload's status (gone: 404), then whether the blob landed: a HEAD that a registry on S3 answers with
    a 307 to storage. The blob is not sent again."""
    src_repo, dst_repo = make_repo_name(), make_repo_name()
    image, _big = _push(registry, src_repo)
    proxy = proxy_factory(s3_registry)
    proxy.lose_response(method="PUT", path_contains="/blobs/uploads/")
    report, _executor = _copy(image.reference, f"{proxy.host}/{dst_repo}:v1", threshold=BIG)
    _assert_copied(report, image, s3_registry, dst_repo)
    puts = _uploads(proxy, "PUT")
    assert [r.fault for r in puts].count("reset_after") == 1 and len(puts) == 3  # no blob sent twice
    heads = [r.status for r in proxy.records if r.method == "HEAD" and "/blobs/sha256:" in r.path]
    assert 307 in heads
