"""A hostile source registry (tests/servers/hostile_registry.py, a real server on loopback) cannot make a
mirror run unbounded: tag lists, layers per manifest, children per index and index depth stop at the
limits of ocitransport.mirror.limits with one line naming the limit; a child listed 10,000 times is
fetched once; no upload is opened before the source blob answered; a failing blob cancels its siblings
and every upload session the run opened at the real destination registry (behind the recording fault
proxy) is finished (PUT) or cancelled (DELETE); wrong bytes and a registry that stores a blob under
another digest give one line from the CLI, never a traceback.

Attack sizes are scaled down by small limits (``limits.use``); the tag-list and the 10,000-references
tests run at the default limits."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ocitransport import mirror
from ocitransport.authn import MultiKeychain
from ocitransport.mirror import limits
from tests.servers import raw
from tests.servers.fixtures import unique_repo_name
from tests.servers.hostile_registry import Blob, HostileRegistry, Manifest, descriptor
from tests.servers.proxy import FaultProxy
from tests.servers.registry import RegistryServer

REPO = "hostile/repo"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def source() -> Iterator[HostileRegistry]:
    with HostileRegistry() as server:
        yield server


@pytest.fixture
def small_limits() -> Iterator[Callable[..., limits.Limits]]:
    """``small_limits(max_tags=..., ...)`` puts smaller limits in force for this test."""
    saved = limits.current()

    def use(**values: int) -> limits.Limits:
        chosen = limits.Limits(**values)
        limits.use(chosen)
        return chosen

    yield use
    limits.use(saved)


def _copy(src: str, dst: str, **options: object) -> mirror.Report:
    return mirror.copy(src, dst, keychain=MultiKeychain(), retries=0, **options)  # type: ignore[arg-type]


def _tag_gets(server: HostileRegistry) -> list[str]:
    return [p for p in server.paths("GET") if "/tags/list" in p]


def _endless(source: HostileRegistry, per_page: int, tag_length: int = 8) -> None:
    """Tag-list pages that never end: each links to the next one, with ``per_page`` new tags."""
    def page(target: str) -> tuple[list[str], str | None]:
        number = int(re.search(r"page=(\d+)", target).group(1)) if "page=" in target else 0  # type: ignore[union-attr]
        tags = [f"t{number}-{i}".ljust(tag_length, "x") for i in range(per_page)]
        return tags, f"/v2/{REPO}/tags/list?n=1000&page={number + 1}"

    source.tag_pages = page


# ------------------------------------------------------------------------------------------ tag lists

def test_endless_tag_pages_stop_at_max_tags_at_the_default_limit(source: HostileRegistry) -> None:
    _endless(source, per_page=1000)
    started = time.monotonic()
    report = mirror.mirror_repository(f"{source.host}/{REPO}", f"{source.host}/copy/repo",
                                      keychain=MultiKeychain(), retries=0)
    assert time.monotonic() - started < 30
    (_where, message), = report.errors
    assert message == (f"{source.host}/{REPO}: tag list exceeds the limit of 100000 tags (MAX_TAGS); "
                       "stopped listing")
    # 100 pages are the limit, the 101st goes over it; the list is not read again after that.
    assert len(_tag_gets(source)) == limits.MAX_TAGS // 1000 + 1
    assert not [p for p in source.paths() if "/manifests/" in p]


def test_fat_tag_pages_stop_at_max_tag_list_bytes(source: HostileRegistry,
                                                  small_limits: Callable[..., limits.Limits]) -> None:
    small_limits(max_tag_list_bytes=300_000)
    _endless(source, per_page=800, tag_length=120)  # about 100 KB a page
    report = mirror.mirror_repository(f"{source.host}/{REPO}", f"{source.host}/copy/repo",
                                      keychain=MultiKeychain(), retries=0)
    (_, message), = report.errors
    assert message == (f"{source.host}/{REPO}: tag list exceeds the limit of 300000 bytes "
                       "(MAX_TAG_LIST_BYTES); stopped listing")
    assert len(_tag_gets(source)) == 4  # three pages fit (294 KB), the fourth goes over


# ------------------------------------------------------------------------------------------ manifests

def _proxied(registry: RegistryServer, proxy_factory: Callable[..., FaultProxy]) -> tuple[FaultProxy, str]:
    proxy = proxy_factory(registry)
    return proxy, f"{proxy.host}/{unique_repo_name('bounds')}"


def _upload_sessions(proxy: FaultProxy) -> tuple[int, set[str], set[str]]:
    """Upload POSTs answered 202, and the sessions finished (PUT answered 201) and cancelled (DELETE)."""
    opened = sum(1 for r in proxy.records if r.method == "POST" and r.path.split("?")[0].endswith("/blobs/uploads/")
                 and r.status == 202)

    def session(path: str) -> str:
        return path.split("?")[0].rsplit("/", 1)[1]

    finished = {session(r.path) for r in proxy.records if r.method == "PUT" and "/blobs/uploads/" in r.path
                and r.status == 201}
    cancelled = {session(r.path) for r in proxy.records if r.method == "DELETE" and "/blobs/uploads/" in r.path}
    return opened, finished, cancelled


def test_too_many_layers_fail_before_any_blob_request(source: HostileRegistry, registry: RegistryServer,
                                                      proxy_factory: Callable[..., FaultProxy],
                                                      small_limits: Callable[..., limits.Limits]) -> None:
    small_limits(max_layers=50)
    layers = [descriptor(os.urandom(32)) for _ in range(80)]  # none of them served
    source.image(REPO, "v1", layers=layers)
    proxy, dst = _proxied(registry, proxy_factory)
    report = _copy(f"{source.host}/{REPO}:v1", f"{dst}:v1")
    (_, message), = report.errors
    assert message.endswith("manifest lists 81 blobs, more than the limit of 50 (MAX_LAYERS)")
    assert not [p for p in source.paths() if "/blobs/" in p]
    assert not [r for r in proxy.records if "/blobs/" in r.path]


def test_missing_layers_open_no_upload_and_leave_no_session(source: HostileRegistry, registry: RegistryServer,
                                                            proxy_factory: Callable[..., FaultProxy]) -> None:
    served = [source.blob(os.urandom(4096)) for _ in range(5)]
    missing = [descriptor(os.urandom(32)) for _ in range(40)]
    source.image(REPO, "v1", layers=[*served, *missing])
    proxy, dst = _proxied(registry, proxy_factory)
    report = _copy(f"{source.host}/{REPO}:v1", f"{dst}:v1", jobs=4)
    (_, message), = report.errors
    assert "BLOB_UNKNOWN" in message
    opened, finished, cancelled = _upload_sessions(proxy)
    missing_digests = {d["digest"] for d in missing}
    posts_for_missing = [r for r in proxy.records if r.method == "POST" and any(d in r.path for d in missing_digests)]
    assert posts_for_missing == []
    # At most the config and the served layers were opened, and each was finished or cancelled.
    assert opened <= 6
    assert len(finished | cancelled) >= opened
    # One failure stops the image: not every missing layer was asked for at the source.
    asked = {p.rsplit("/", 1)[1] for p in source.paths("GET") if "/blobs/" in p}
    assert len(asked & missing_digests) < len(missing_digests)


def test_a_failing_blob_cancels_its_siblings_and_their_sessions(
        source: HostileRegistry, registry: RegistryServer, proxy_factory: Callable[..., FaultProxy],
        caplog: pytest.LogCaptureFixture) -> None:
    slow = source.blob(os.urandom(2 << 20), trickle=0.1)  # 32 pieces of 64 KiB: 3.2 s
    wrong = descriptor(os.urandom(65536))
    source.blobs[wrong["digest"]] = Blob(os.urandom(65536), trickle=0.3)  # wrong bytes, after 0.3 s
    source.image(REPO, "v1", layers=[slow, wrong])
    proxy, dst = _proxied(registry, proxy_factory)
    started = time.monotonic()
    report = _copy(f"{source.host}/{REPO}:v1", f"{dst}:v1")
    took = time.monotonic() - started
    (_, message), = report.errors
    assert "source sent 65536 bytes hashing to" in message
    assert took < 2.5, took  # the slow sibling did not run to its end
    opened, finished, cancelled = _upload_sessions(proxy)
    assert opened >= 2
    assert len(finished | cancelled) >= opened
    assert len(cancelled) >= 2  # the wrong blob's and the slow sibling's
    assert "already running" not in caplog.text


def test_size_zero_for_a_64_kib_blob_is_refused_before_sending(source: HostileRegistry, registry: RegistryServer,
                                                               proxy_factory: Callable[..., FaultProxy]) -> None:
    data = os.urandom(65536)
    layer = source.blob(data)
    layer["size"] = 0
    source.image(REPO, "v1", layers=[layer])
    proxy, dst = _proxied(registry, proxy_factory)
    report = _copy(f"{source.host}/{REPO}:v1", f"{dst}:v1")
    (_, message), = report.errors
    assert message.endswith("declared size 0, but that is not the digest of empty content")
    assert not [r for r in proxy.records if r.method in ("PUT", "PATCH") and layer["digest"] in r.path]
    opened, finished, cancelled = _upload_sessions(proxy)
    assert len(finished | cancelled) >= opened


def test_declared_size_that_the_source_contradicts_opens_no_upload(
        source: HostileRegistry, registry: RegistryServer, proxy_factory: Callable[..., FaultProxy]) -> None:
    data = os.urandom(65536)
    layer = source.blob(data)
    layer["size"] = 1000
    source.image(REPO, "v1", layers=[layer])
    proxy, dst = _proxied(registry, proxy_factory)
    report = _copy(f"{source.host}/{REPO}:v1", f"{dst}:v1")
    (_, message), = report.errors
    assert "source declares 65536 bytes, the manifest 1000" in message
    opened, finished, cancelled = _upload_sessions(proxy)
    assert opened <= 1  # the config's upload at most; never the mislabelled layer's
    assert len(finished | cancelled) >= opened


def test_one_child_listed_10000_times_is_fetched_once(source: HostileRegistry, registry: RegistryServer) -> None:
    child = source.image(REPO, "", layers=[source.blob(os.urandom(1000))])
    index = source.index(REPO, "v1", [child] * 10_000)
    dst = f"{registry.host}/{unique_repo_name('repeat')}"
    started = time.monotonic()
    report = _copy(f"{source.host}/{REPO}:v1", f"{dst}:v1")
    assert report.ok, report.errors
    assert time.monotonic() - started < 30
    assert source.paths("GET").count(f"/v2/{REPO}/manifests/{child.digest}") == 1
    assert raw.get_manifest(registry, dst.split("/", 1)[1], "v1").body == index.raw


def test_too_many_distinct_children(source: HostileRegistry, small_limits: Callable[..., limits.Limits]) -> None:
    small_limits(max_index_children=20)
    children = [source.image(REPO, "", layers=[descriptor(os.urandom(32))]) for _ in range(30)]
    source.index(REPO, "v1", children)
    report = _copy(f"{source.host}/{REPO}:v1", f"{source.host}/copy/repo:v1")
    (_, message), = report.errors
    assert message.endswith("index lists 30 distinct manifests, more than the limit of 20 (MAX_INDEX_CHILDREN)")
    assert not [p for p in source.paths() if any(c.digest in p for c in children)]


def _nested(source: HostileRegistry, levels: int) -> list[Manifest]:
    """An image under ``levels`` indexes, the top one tagged v1."""
    chain = [source.image(REPO, "", layers=[source.blob(os.urandom(100))])]
    for level in range(levels):
        chain.append(source.index(REPO, "v1" if level == levels - 1 else "", [chain[-1]]))
    return chain


def test_indexes_nested_deeper_than_the_limit(source: HostileRegistry,
                                              small_limits: Callable[..., limits.Limits]) -> None:
    small_limits(max_index_depth=3)
    chain = _nested(source, 12)
    report = _copy(f"{source.host}/{REPO}:v1", f"{source.host}/copy/repo:v1")
    (_, message), = report.errors
    assert message.endswith("indexes nested more than 3 levels deep (MAX_INDEX_DEPTH)")
    fetched = {p.rsplit("/", 1)[1] for p in source.paths("GET") if "/manifests/sha256:" in p}
    assert fetched <= {m.digest for m in chain[-4:]}  # the three allowed levels and the one refused


def test_nesting_at_the_limit_is_copied(source: HostileRegistry, registry: RegistryServer) -> None:
    chain = _nested(source, limits.MAX_INDEX_DEPTH)
    dst = f"{registry.host}/{unique_repo_name('nested')}"
    report = _copy(f"{source.host}/{REPO}:v1", f"{dst}:v1")
    assert report.ok, report.errors
    assert raw.get_manifest(registry, dst.split("/", 1)[1], "v1").body == chain[-1].raw


def test_the_dask_executor_applies_the_same_depth_limit(source: HostileRegistry, registry: RegistryServer) -> None:
    distributed = pytest.importorskip("distributed")
    from ocitransport.mirror.distributed import DaskExecutor

    _nested(source, limits.MAX_INDEX_DEPTH + 2)
    plan = mirror.plan_copy(f"{source.host}/{REPO}:v1", f"{registry.host}/{unique_repo_name('dask')}:v1",
                            keychain=MultiKeychain())
    assert not plan.errors
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client, DaskExecutor(client, keychain=MultiKeychain()) as executor:
        report = executor.execute(plan, retries=0)
    (_, message), = report.errors
    assert message.endswith(f"indexes nested more than {limits.MAX_INDEX_DEPTH} levels deep (MAX_INDEX_DEPTH)")


# ------------------------------------------------------------------------------------------ one line

def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "ocitransport", *args], capture_output=True, text=True,
                          timeout=120, env=env, check=False)


@pytest.mark.parametrize("fault", ["wrong-bytes", "stored-under-another-digest"])
def test_cli_copy_gives_one_line_never_a_traceback(source: HostileRegistry, fault: str) -> None:
    with HostileRegistry() as dest:
        data = os.urandom(65536)
        # A slow sibling is still streaming when the bad blob fails: it must be cancelled with the
        # image, not left to asyncio.run()'s shutdown (which printed its traceback).
        layers = [source.blob(os.urandom(5000)), source.blob(os.urandom(1 << 20), trickle=0.05)]
        if fault == "wrong-bytes":
            layer = descriptor(data)
            source.blobs[layer["digest"]] = Blob(os.urandom(65536))
        else:
            layer = source.blob(data)
            dest.store_as = "sha256:" + "1" * 64
        source.image(REPO, "v1", layers=[*layers, layer])
        for _ in range(3):  # a race shows some of the time: three runs
            out = _cli("copy", f"{source.host}/{REPO}:v1", f"{dest.host}/copy/repo:v1")
            assert out.returncode == 1
            assert "Traceback" not in out.stderr and "Traceback" not in out.stdout, out.stderr
            errors = [line for line in out.stderr.splitlines() if line.startswith("ocitransport: error:")]
            assert len(errors) == 1, out.stderr
            expected = "source sent 65536 bytes hashing to" if fault == "wrong-bytes" else \
                f"the registry stored sha256:{'1' * 64} for sha256:"
            assert expected in errors[0]
        assert dest.uploads_open == []


# ------------------------------------------------------------------------------------------ semver

def test_semver_skips_a_5000_digit_tag_and_keeps_the_others() -> None:
    from ocitransport.mirror.semver import MAX_VERSION_NUMBER, SemverError, matching, parse_constraint, parse_version

    huge = "9" * 5000
    tags = ["1.0.0", f"{huge}.0.0", f"1.{huge}.0", "1.2.0", f"1.0.0-{huge}", "2.0.0", str(MAX_VERSION_NUMBER),
            str(MAX_VERSION_NUMBER + 1)]
    assert matching(tags, ">= 1.0") == ["1.0.0", "1.2.0", "2.0.0", str(MAX_VERSION_NUMBER)]
    assert parse_version(f"{huge}.0.0") is None
    assert parse_version(f"1.0.0-{huge}") < parse_version(f"1.0.0-1{huge}")  # type: ignore[operator]
    with pytest.raises(SemverError, match="version number above"):
        parse_constraint(f">= {huge}")


def test_sync_by_semver_with_a_5000_digit_tag(source: HostileRegistry, tmp_path: Path) -> None:
    for tag in ("1.0.0", "1.1.0", "0.9.0"):
        source.image(REPO, tag)
    listed = ["1.0.0", "9" * 5000 + ".0.0", "1.1.0", "0.9.0"]
    source.tag_pages = lambda target: (listed, None)
    with HostileRegistry() as dest:
        config = tmp_path / "sync.yaml"
        config.write_text(json.dumps({"destination": f"{dest.host}/mirror",
                                      source.host: {"images-by-semver": {REPO: ">= 1.0"}}}))
        report = mirror.sync(str(config), keychain=MultiKeychain())
        assert report.ok, report.errors
        assert {ref for (repo, ref) in dest.manifests if ":" not in ref} == {"1.0.0", "1.1.0"}
