"""One executor matrix: every scenario runs once with the local executor and once on a dask LocalCluster,
and both must give the same result (every destination digest, the report's counts).

Each scenario is a sync file (the way a user meets per-registry TLS settings) run through ``mirror.sync``:
locally, then with ``executor=DaskExecutor``, each into its own destination prefix. The cluster and its
executor are made once for the module; the registries are the session's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

distributed = pytest.importorskip("distributed")

from ocitransport import mirror
from ocitransport.mirror import Plan, Report, RunOptions
from ocitransport.mirror.distributed import DaskExecutor
from ocitransport.mirror.options import RegistryTLS
from tests.mirror.test_referrers import SBOM_TYPE, SIG_TYPE, _push_fallback, _push_referrer
from tests.servers import raw
from tests.servers.fixtures import require_registry
from tests.servers.raw import OCI_INDEX
from tests.servers.registry import RegistryServer

pytestmark = pytest.mark.registry

AMD64 = {"architecture": "amd64", "os": "linux"}
ARM64 = {"architecture": "arm64", "os": "linux", "variant": "v8"}


@pytest.fixture(scope="module")
def dask_executor() -> Iterator[DaskExecutor]:
    """One LocalCluster of two worker processes (two threads each) for the whole matrix."""
    require_registry()
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=2, dashboard_address=None) \
            as cluster, distributed.Client(cluster) as client:
        client.wait_for_workers(2, timeout=30)
        with DaskExecutor(client) as executor:
            yield executor


@pytest.fixture(scope="module")
def dst() -> Iterator[RegistryServer]:
    """The matrix's destination: an open registry with its access log on (uploads are counted there)."""
    require_registry()
    with RegistryServer(extra_config={"log": {"accesslog": {"disabled": False}}}) as server:
        yield server


Run = Callable[..., tuple[Report, dict[str, str], list[str]]]


def _outcome(report: Report, prefix: str, dst: RegistryServer) -> dict[str, str]:
    """Destination (without the run's prefix) -> digest, checked against the destination registry."""
    out: dict[str, str] = {}
    for result in report.images:
        assert result.destination.startswith(f"{dst.host}/{prefix}/"), result.destination
        name = result.destination[len(f"{dst.host}/{prefix}/"):]
        repo, _, ident = name.rpartition("@") if "@" in name else name.rpartition(":")
        got = raw.get_manifest(dst, f"{prefix}/{repo}", ident)
        assert got.status == 200, (result.destination, got.body[:200])
        assert raw.sha256_digest(got.body) == result.digest, result.destination
        out[f"{name}"] = result.digest
    return out


def _counts(report: Report) -> tuple[int, ...]:
    return (report.images_copied, report.images_skipped, report.images_failed, report.images_not_attempted,
            report.blobs_transferred + report.blobs_mounted, report.bytes_transferred, len(report.errors))


@pytest.fixture
def both(dask_executor: DaskExecutor, dst: RegistryServer, make_repo_name: Callable[[], str]) -> Run:
    """``both(config, **sync_keywords)``: run the sync file locally and on the cluster (each into a fresh
    prefix of ``dst``), assert equal results; the local ``(report, destinations)`` and both prefixes."""

    def run(config: dict[str, Any] | Path, *, reruns: int = 0,
            **keywords: Any) -> tuple[Report, dict[str, str], list[str]]:
        outcomes, prefixes = [], []
        for executor in (None, dask_executor):
            prefix = make_repo_name()
            prefixes.append(prefix)
            for _ in range(reruns + 1):
                if isinstance(config, Path):  # a sync file: the destination given beside it
                    report = mirror.sync(str(config), destination=f"{dst.host}/{prefix}", executor=executor,
                                         **keywords)
                else:
                    report = mirror.sync({**config, "destination": f"{dst.host}/{prefix}"},
                                         executor=executor, **keywords)
            assert report.ok, (executor, report.errors, [r.error for r in report.images if r.error])
            outcomes.append((report, _outcome(report, prefix, dst)))
        (local, local_digests), (dask, dask_digests) = outcomes
        assert dask_digests == local_digests
        assert _counts(dask) == _counts(local)
        return local, local_digests, prefixes

    return run


def _certs(tmp_path: Path, server: RegistryServer, client: bool = False) -> str:
    certs = tmp_path / f"certs-{server.host.replace(':', '-')}"
    certs.mkdir()
    shutil.copy(server.ca_file, certs / "ca.crt")
    if client:
        shutil.copy(server.client_cert, certs / "client.cert")
        shutil.copy(server.client_key, certs / "client.key")
    return str(certs)


# ------------------------------------------------------------------------------------------ TLS

def test_tls_verify_false(both: Run, tls_registry: RegistryServer, make_repo_name: Callable[[], str]) -> None:
    repo = make_repo_name()
    image = raw.push_image(tls_registry, repo, "v1")
    report, digests, _ = both({tls_registry.host: {"images": {repo: ["v1"]}, "tls-verify": False}})
    assert report.images_copied == 1 and list(digests.values()) == [image.digest]


def test_cert_dir_with_a_ca(both: Run, tls_registry: RegistryServer, make_repo_name: Callable[[], str],
                            tmp_path: Path) -> None:
    """A private CA in cert-dir used to copy every image locally and none on dask (no TLS paths on workers)."""
    repo = make_repo_name()
    image = raw.push_image(tls_registry, repo, "v1")
    certs = _certs(tmp_path, tls_registry)
    report, digests, _ = both({tls_registry.host: {"images": {repo: ["v1"]}, "cert-dir": certs}})
    assert report.images_copied == 1 and list(digests.values()) == [image.digest]


def test_client_certificate_through_cert_dir(both: Run, mtls_registry: RegistryServer,
                                             make_repo_name: Callable[[], str], tmp_path: Path) -> None:
    repo = make_repo_name()
    image = raw.push_image(mtls_registry, repo, "v1")
    report, digests, _ = both({mtls_registry.host: {"images": {repo: ["v1"]},
                                                 "cert-dir": _certs(tmp_path, mtls_registry, client=True)}})
    assert report.images_copied == 1 and list(digests.values()) == [image.digest]


# ------------------------------------------------------------------------------------------ credentials

def _sync_file(tmp_path: Path, server: RegistryServer, repo: str) -> Path:
    """A sync file copying ``repo:v1`` from ``server`` with its first user's credentials."""
    path = tmp_path / "sync.yaml"
    path.write_text(f"{server.host}:\n"
                    f"  credentials:\n    username: {server.username}\n    password: {server.password}\n"
                    f"  images:\n    {repo}: [v1]\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("auth", ["basic", "bearer"])
def test_file_credentials(both: Run, auth: str, request: pytest.FixtureRequest,
                          make_repo_name: Callable[[], str], tmp_path: Path) -> None:
    """A sync file's credentials for a Basic (htpasswd) and a Bearer (token server) registry: workers
    read them from the file (its path travels in RunOptions), as the local executor does."""
    server: RegistryServer = request.getfixturevalue(f"{auth}_registry")
    if server.token_server is not None:
        server.token_server.anonymous = None  # no anonymous pulls: a token needs the file's credentials
    repo = make_repo_name()
    image = raw.push_image(server, repo, "v1", layers=[os.urandom(2000)])
    report, digests, _ = both(_sync_file(tmp_path, server, repo))
    assert report.images_copied == 1 and list(digests.values()) == [image.digest]
    if server.token_server is not None:
        asked = server.token_server.requests_snapshot()
        assert asked and all(r.username == server.username for r in asked if r.status == 200)


def test_no_secret_in_plan_options_or_tasks(dask_executor: DaskExecutor, basic_registry: RegistryServer,
                                            dst: RegistryServer, make_repo_name: Callable[[], str],
                                            tmp_path: Path) -> None:
    """The pickled Plan, its RunOptions and every task's arguments hold the sync file's path, never its
    password; a sync given as data with credentials says once that workers cannot get them."""
    import pickle

    repo = make_repo_name()
    raw.push_image(basic_registry, repo, "v1")
    path = _sync_file(tmp_path, basic_registry, repo)
    seen: list[Plan] = []

    class Capture:
        def execute(self, plan: Plan, **_: Any) -> Report:
            seen.append(plan)
            return Report()

    mirror.sync(str(path), destination=f"{dst.host}/{make_repo_name()}", executor=Capture())
    (plan,) = seen
    assert plan.options.sync_file == str(path) and plan.units
    secret = basic_registry.password.encode()
    assert secret not in pickle.dumps(plan) and secret not in pickle.dumps(plan.options)
    graph = dask_executor.graph(plan)
    specs = graph.specs()
    # The submitting side read the manifests with the file's credentials too: blob tasks exist.
    assert graph.blobs and not graph.notes, graph.notes
    assert all(secret not in pickle.dumps(spec) for spec in specs)
    assert all(spec.options.sync_file == str(path) for _, spec in specs)


def test_credentials_given_as_data_warn(basic_registry: RegistryServer, dst: RegistryServer,
                                        make_repo_name: Callable[[], str],
                                        caplog: pytest.LogCaptureFixture) -> None:
    repo = make_repo_name()
    raw.push_image(basic_registry, repo, "v1")
    config = {basic_registry.host: {"images": {repo: ["v1"]}, "credentials": {
        "username": basic_registry.username, "password": basic_registry.password}}}

    class Capture:
        def execute(self, plan: Plan, **_: Any) -> Report:
            return Report()

    with caplog.at_level("WARNING", logger="ocitransport.mirror.sync"):
        mirror.sync(config, destination=f"{dst.host}/{make_repo_name()}", executor=Capture())
    warned = [r.getMessage() for r in caplog.records if "do not reach the executor's workers" in r.getMessage()]
    assert len(warned) == 1 and basic_registry.password not in warned[0]


# ------------------------------------------------------------------------------------------ selection

def test_platforms(both: Run, registry: RegistryServer, make_repo_name: Callable[[], str]) -> None:
    repo = make_repo_name()
    amd, arm = raw.push_image(registry, repo, "amd"), raw.push_image(registry, repo, "arm")
    raw.push_index(registry, repo, "multi", [amd, arm], [AMD64, ARM64])
    _, digests, _ = both({registry.host: {"images": {repo: ["multi"]}, "platforms": ["linux/arm64/v8"]}})
    assert list(digests.values()) == [arm.digest]


def test_referrers(both: Run, registry: RegistryServer, make_repo_name: Callable[[], str]) -> None:
    repo = make_repo_name()
    image = raw.push_image(registry, repo, "v1", layers=[os.urandom(2000)])
    subject = (image.digest, len(image.manifest), image.media_type)
    sig = _push_referrer(registry, repo, subject, SIG_TYPE, b"signature of v1")
    sbom = _push_referrer(registry, repo, subject, SBOM_TYPE, os.urandom(3000))
    _push_fallback(registry, repo, image.digest, [sig, sbom])
    _, digests, _ = both({registry.host: {"images": {repo: ["v1"]}}})
    assert {image.digest, sig[0], sbom[0]} <= set(digests.values()), digests


def test_include_and_exclude(both: Run, registry: RegistryServer, make_repo_name: Callable[[], str]) -> None:
    repo = make_repo_name()
    for tag in ("a1", "a2", "b1"):
        raw.push_image(registry, repo, tag)
    _, digests, _ = both({registry.host: {"images-by-tag-regex": {repo: "^a"}, "exclude": ["^a2$"]}})
    assert [name.rsplit(":", 1)[1] for name in digests] == ["a1"]


# ------------------------------------------------------------------------------------------ transfers

def test_chunked_uploads(both: Run, registry: RegistryServer, dst: RegistryServer,
                         make_repo_name: Callable[[], str]) -> None:
    """A small ``chunk_threshold`` reaches both executors: the 300 kB layer goes up in 64 KiB PATCHes."""
    repo = make_repo_name()
    image = raw.push_image(registry, repo, "big", layers=[os.urandom(300_000)])
    report, digests, prefixes = both({registry.host: {"images": {repo: ["big"]}}}, chunk_threshold=64 << 10,
                                     chunk_size=64 << 10)
    assert list(digests.values()) == [image.digest] and report.bytes_transferred >= 300_000
    log = dst.log()
    patches = [len(re.findall(rf'"PATCH /v2/{re.escape(p)}/\S+/blobs/uploads/', log)) for p in prefixes]
    assert patches[0] == patches[1] >= 5, patches


def test_nested_indexes(both: Run, registry: RegistryServer, make_repo_name: Callable[[], str]) -> None:
    """An index of an index of an index of images (the dask path once refused more than 4 levels)."""
    repo = make_repo_name()
    amd, arm = raw.push_image(registry, repo, "amd"), raw.push_image(registry, repo, "arm")
    inner = raw.push_index(registry, repo, "inner", [amd, arm], [AMD64, ARM64])
    level = (inner, raw.get_manifest(registry, repo, inner).body)
    for depth in range(3):
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_INDEX, "digest": level[0], "size": len(level[1])}]}).encode()
        level = (raw.push_manifest(registry, repo, f"nest{depth}", body, OCI_INDEX), body)
    # The registry accepts an index only once every child is there: the top digest proves the tree.
    _, digests, _ = both({registry.host: {"images": {repo: ["nest2"]}}})
    assert list(digests.values()) == [level[0]]


def test_incremental_rerun(both: Run, registry: RegistryServer, make_repo_name: Callable[[], str]) -> None:
    repo = make_repo_name()
    for tag in ("r1", "r2"):
        raw.push_image(registry, repo, tag)
    report, _, _ = both({registry.host: {"images": {repo: ["r1", "r2"]}}}, reruns=1)
    assert report.images_skipped == 2 and report.images_copied == 0 and report.blobs_transferred == 0


# ------------------------------------------------------------------------------------------ the value

def test_run_options_are_frozen_picklable_and_carried_by_the_plan(tmp_path: Path) -> None:
    import pickle

    certs = tmp_path / "c"
    certs.mkdir()
    (certs / "ca.crt").write_text("x")
    (certs / "client.cert").write_text("x")
    (certs / "client.key").write_text("x")
    tls = RegistryTLS.from_cert_dir("r.example", str(certs))
    assert tls == RegistryTLS("r.example", True, (str(certs / "ca.crt"),), str(certs / "client.cert"),
                              str(certs / "client.key"))
    options = RunOptions(jobs=2, tls=(tls,), allow_private_storage=("r.example",))
    plan = Plan(options=options)
    assert pickle.loads(pickle.dumps(plan)).options == options
    with pytest.raises(AttributeError):
        options.jobs = 3  # type: ignore[misc]
    with pytest.raises(ValueError, match="jobs must be greater than zero"):
        RunOptions(jobs=0)
