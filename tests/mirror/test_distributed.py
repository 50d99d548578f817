"""Scale-out on dask.distributed: real registries, a real LocalCluster of worker processes.

The source images live in the session's open ``registry``; destinations are fresh registries with their
access log on, so uploads are counted where they land (``PUT ...?digest=`` answered 201). Faults come
from ``RegistryProxy``, a small real HTTP proxy in front of a registry that can answer a storm of 429s.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")

from ocitransport.mirror import ImageResult, ImageUnit, Plan, plan_repository
from ocitransport.mirror.distributed import PLUGIN_NAME, DaskExecutor, LocalPauses, SharedLimits
from tests.servers import process, raw
from tests.servers.faults import FaultServer
from tests.servers.fixtures import require_registry, unique_repo_name
from tests.servers.proxy import WINDOW, DockerHubQuota, FaultProxy
from tests.servers.registry import RegistryServer

pytestmark = pytest.mark.registry

REPOS = 6
TAGS = 5
ACCESS_LOG = {"log": {"accesslog": {"disabled": False}}}
_BLOB_PUT = re.compile(r'"PUT /v2/(\S+?)/blobs/uploads/\S*[?&]digest=sha256%3A([0-9a-f]{64})\S* HTTP/[\d.]+" 201 ')
_MANIFEST_PUT = re.compile(r'"PUT /v2/(\S+?)/manifests/(\S+) HTTP/[\d.]+" 201 ')


# ---------------------------------------------------------------------------------------------- proxy

_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, and 100-continue answered by the base class
    server: _ProxyServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _forward(self) -> None:
        proxy = self.server.proxy
        body = self._read_body()
        fault = proxy._arrived(self.command, self.path)
        if fault is not None:
            status, retry_after, codes = fault
            payload = json.dumps({"errors": [{"code": c, "message": "injected"} for c in codes]}).encode()
            self.send_response(status)
            if retry_after:
                self.send_header("Retry-After", str(retry_after))
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
            return
        conn = getattr(self, "_upstream", None)
        if conn is None:
            conn = self._upstream = HTTPConnection(process.LOOPBACK, proxy.upstream.port, timeout=30)
        conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for name, value in self.headers.items():
            if name.lower() not in _HOP and name.lower() not in ("content-length", "expect"):
                conn.putheader(name, value)
        if body or self.command in ("PUT", "POST", "PATCH"):
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body or None)
        response = conn.getresponse()
        data = response.read()
        self.send_response(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in _HOP and name.lower() != "content-length":
                self.send_header(name, value)
        length = response.getheader("Content-Length") if self.command == "HEAD" else str(len(data))
        self.send_header("Content-Length", length or "0")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _forward


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    proxy: RegistryProxy


class RegistryProxy:
    """A forwarding HTTP/1.1 proxy in front of ``upstream`` (Host kept, so upload Locations point back
    here). ``answer_status(429, times=3, retry_after=2, after=20)`` answers the 3 requests following the
    20th itself, with ``Retry-After: 2``; ``method`` / ``path_contains`` narrow the requests counted and
    answered, ``codes`` are the error codes of the answer's body. ``arrivals``: ``(monotonic time, method,
    path, faulted)``."""

    def __init__(self, upstream: RegistryServer) -> None:
        self.upstream = upstream
        self.arrivals: list[tuple[float, str, str, bool]] = []
        self._lock = threading.Lock()
        # status, times left, retry_after, skip, codes, method, path_contains
        self._fault: tuple[int, int, int, int, tuple[str, ...], str | None, str] | None = None
        self._server = _ProxyServer((process.LOOPBACK, 0), _ProxyHandler)
        self._server.proxy = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def host(self) -> str:
        return f"{process.LOOPBACK}:{self._server.server_address[1]}"

    def answer_status(self, status: int, *, times: int, retry_after: int = 0, after: int = 0,
                      codes: tuple[str, ...] = ("TOOMANYREQUESTS",), method: str | None = None,
                      path_contains: str = "") -> None:
        with self._lock:
            self._fault = (status, times, retry_after, after, codes, method, path_contains)

    def _arrived(self, method: str, path: str) -> tuple[int, int, tuple[str, ...]] | None:
        with self._lock:
            fault = self._fault
            answer: tuple[int, int, tuple[str, ...]] | None = None
            if fault is not None and (fault[5] in (None, method)) and fault[6] in path:
                status, times, retry_after, skip, codes, want, contains = fault
                if skip > 0:
                    self._fault = (status, times, retry_after, skip - 1, codes, want, contains)
                elif times > 0:
                    self._fault = (status, times - 1, retry_after, 0, codes, want, contains)
                    answer = (status, retry_after, codes)
            self.arrivals.append((time.monotonic(), method, path, answer is not None))
            return answer

    def __enter__(self) -> RegistryProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


# ---------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def cluster_env(basic_registry: RegistryServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A docker config holding ``basic_registry``'s credentials, in the environment the workers inherit."""
    directory = tmp_path_factory.mktemp("docker-config")
    assert basic_registry.username and basic_registry.password
    secret = base64.b64encode(f"{basic_registry.username}:{basic_registry.password}".encode()).decode()
    (directory / "config.json").write_text(json.dumps({"auths": {basic_registry.host: {"auth": secret}}}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DOCKER_CONFIG", str(directory))
        yield directory


@pytest.fixture(scope="module")
def cluster(cluster_env: Path) -> Iterator[Any]:
    """Two worker processes of two threads each (they inherit OCITRANSPORT_NO_EXTENSIONS, DOCKER_CONFIG)."""
    require_registry()
    # A killed worker's registry leases come back after 5 s instead of 30.
    with dask.config.set({"distributed.scheduler.locks.lease-timeout": "5s",
                          "distributed.scheduler.locks.lease-validation-interval": "1s"}), \
            distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=2,
                                     dashboard_address=None) as local:
        yield local


@pytest.fixture
def client(cluster: Any) -> Iterator[Any]:
    with distributed.Client(cluster) as dask_client:
        dask_client.wait_for_workers(2, timeout=30)
        yield dask_client


@pytest.fixture(scope="module")
def fleet(registry: RegistryServer) -> dict[str, list[raw.PushedImage]]:
    """30 images in 6 source repositories (5 tags each): 3 base layers shared by all, one layer and a
    config of their own."""
    base = [os.urandom(2048) for _ in range(3)]
    images: dict[str, list[raw.PushedImage]] = {}
    for _ in range(REPOS):
        repo = unique_repo_name("fleet")
        images[repo] = [raw.push_image(registry, repo, f"v{i}", layers=[*base, os.urandom(1024)])
                        for i in range(TAGS)]
    return images


def _plan(registry: RegistryServer, dst_host: str, fleet: dict[str, list[raw.PushedImage]],
          repos: int = REPOS, names: dict[str, str] | None = None) -> tuple[Plan, dict[str, str]]:
    """One plan for ``repos`` source repositories (to fresh destination repositories unless ``names``
    gives them); and the destination repository by source repository."""
    plan = Plan()
    names = dict(names or {})
    for repo in list(fleet)[:repos]:
        names.setdefault(repo, unique_repo_name("dst"))
        part = plan_repository(f"{registry.host}/{repo}", f"{dst_host}/{names[repo]}")
        assert not part.errors
        plan.units.extend(part.units)
    assert len(plan.units) == repos * TAGS
    return plan, names


def _blob_puts(dst: RegistryServer) -> Counter[str]:
    return Counter("sha256:" + m.group(2) for m in _BLOB_PUT.finditer(dst.log()))


def _assert_copied(dst: RegistryServer, fleet: dict[str, list[raw.PushedImage]], names: dict[str, str]) -> None:
    """Every image at the destination with its exact manifest bytes and every blob."""
    for repo, dst_repo in names.items():
        for image in fleet[repo]:
            got = raw.get_manifest(dst, dst_repo, image.tag)
            assert got.status == 200 and raw.sha256_digest(got.body) == image.digest, (dst_repo, image.tag)
            for digest in image.blobs:
                assert raw.blob_exists(dst, dst_repo, digest), (dst_repo, digest)


def _all_digests(fleet: dict[str, list[raw.PushedImage]], names: dict[str, str]) -> set[str]:
    return {d for repo in names for image in fleet[repo] for d in image.blobs}


# ---------------------------------------------------------------------------------------------- tests

def test_shared_blobs_are_uploaded_once_for_the_whole_cluster(
        client: Any, registry: RegistryServer, registry_factory: Callable[..., RegistryServer],
        fleet: dict[str, list[raw.PushedImage]]) -> None:
    dst = registry_factory(extra_config=ACCESS_LOG)
    plan, names = _plan(registry, dst.host, fleet)
    with DaskExecutor(client, default_limit=3) as executor:
        report = executor.execute(plan, jobs=4, retries=3)
        assert report.ok, report.errors
        assert report.images_copied == REPOS * TAGS
        _assert_copied(dst, fleet, names)
        digests = _all_digests(fleet, names)
        puts = _blob_puts(dst)
        assert set(puts) == digests and set(puts.values()) == {1}, puts.most_common(3)
        # Shared base layers (and everything else) were uploaded once and mounted everywhere else.
        assert report.blobs_transferred == len(digests) == 3 + 2 * REPOS * TAGS
        # Base layers mounted into each other repository (twice when two workers race to the same one),
        # then found there by the other tags.
        assert 3 * (REPOS - 1) <= report.blobs_mounted <= 3 * (REPOS - 1) * TAGS
        assert report.blobs_transferred + report.blobs_mounted + report.blobs_skipped == REPOS * TAGS * 5
        manifests = Counter(m.group(1) for m in _MANIFEST_PUT.finditer(dst.log()))
        assert manifests == Counter({names[r]: TAGS for r in names})
        # Each task held a lease of both registries' semaphores (limit 3), and all were given back.
        sems = client.run_on_scheduler(_semaphore_state)
        assert {name: n for name, (n, _) in sems.items() if name.endswith("-3")} == {
            f"ocitransport-registry-{registry.host}-3": len(digests) + REPOS * TAGS,
            f"ocitransport-registry-{dst.host}-3": len(digests) + REPOS * TAGS}
        workers = client.run(_leases_held).values()
        assert sum(n for n, _ in workers) >= 2 and not any(held for _, held in workers)  # all given back
        # The scheduler agrees, except for dask's own race: a Semaphore's periodic lease refresh that
        # crosses its release puts the released lease back ("Refreshing an unknown lease ID"), until
        # the lease timeout expires it. Such a lease is held by no worker, and there can be a few.
        held = {name: n for name, (_, n) in sems.items() if name.endswith("-3")}
        assert all(n <= 2 for n in held.values()), held

        # The same plan again: every key is done, nothing is resubmitted, the destination sees nothing.
        before = dst.log()
        again = executor.execute(plan, jobs=4, retries=3)
        assert again.ok and again.images_copied == REPOS * TAGS
        assert dst.log() == before

    # A new run (fresh plan, fresh executor): everything is up to date, no task at all.
    plan2, _ = _plan(registry, dst.host, fleet, names=names)
    assert all(u.up_to_date for u in plan2.units)
    with DaskExecutor(client) as fresh:
        rerun = fresh.execute(plan2, jobs=4, retries=3, keep_going=True, include_nondistributable=False,
                              progress=None)
    assert rerun.ok and rerun.images_skipped == REPOS * TAGS and _blob_puts(dst) == puts


def _leases_held(dask_worker: Any) -> tuple[int, int]:
    """This worker's registry semaphores and the leases it still holds of them."""
    state = getattr(dask_worker.plugins.get(PLUGIN_NAME), "_state", None)
    sems = [] if state is None else list(state._semaphores.values())
    return len(sems), sum(len(sem._leases) for sem in sems)


def _semaphore_state(dask_scheduler: Any) -> dict[str, tuple[int, int]]:
    ext = dask_scheduler.extensions["semaphores"]
    return {name: (ext.metrics["acquire_total"][name], len(ext.leases[name]))
            for name in ext.max_leases if str(name).startswith("ocitransport-registry-")}


class _KillOnFirstImage:
    """Progress that SIGKILLs the worker process busiest at the first finished image."""

    def __init__(self, client: Any, cluster: Any) -> None:
        self.client = client
        self.cluster = cluster
        self.killed: int | None = None
        self.done: list[ImageResult] = []

    def planned(self, units: list[ImageUnit]) -> None:
        pass

    def bytes_done(self, n: int) -> None:
        pass

    def image_done(self, result: ImageResult) -> None:
        self.done.append(result)
        if self.killed is not None:
            return
        processing = self.client.processing()
        busiest = max(processing, key=lambda address: len(processing[address]))
        assert processing[busiest], "no task in flight to interrupt"
        for nanny in self.cluster.workers.values():
            if nanny.worker_address == busiest:
                self.killed = nanny.pid
                os.kill(nanny.pid, signal.SIGKILL)
                return
        raise AssertionError(f"no nanny for {busiest}")


def test_a_killed_worker_still_completes_the_run(
        client: Any, cluster: Any, registry: RegistryServer, registry_factory: Callable[..., RegistryServer],
        fleet: dict[str, list[raw.PushedImage]]) -> None:
    dst = registry_factory(extra_config=ACCESS_LOG)
    plan, names = _plan(registry, dst.host, fleet)
    progress = _KillOnFirstImage(client, cluster)
    with DaskExecutor(client) as executor:
        report = executor.execute(plan, jobs=4, retries=3, progress=progress)
    assert progress.killed is not None
    assert report.ok, report.errors
    assert report.images_copied + report.images_skipped == REPOS * TAGS == len(progress.done)
    _assert_copied(dst, fleet, names)
    puts = _blob_puts(dst)
    assert set(puts) == _all_digests(fleet, names) and set(puts.values()) == {1}
    # The nanny replaced the killed process.
    assert process.wait_until(lambda: len(client.scheduler_info()["workers"]) == 2, timeout=30)
    assert progress.killed not in {n.pid for n in cluster.workers.values()}


def test_a_429_storm_pauses_the_cluster_instead_of_failing_it(
        client: Any, registry: RegistryServer, registry_factory: Callable[..., RegistryServer],
        fleet: dict[str, list[raw.PushedImage]]) -> None:
    dst = registry_factory()
    with RegistryProxy(dst) as proxy:
        plan, names = _plan(registry, proxy.host, fleet, repos=2)
        proxy.answer_status(429, times=3, retry_after=2, after=20)
        with DaskExecutor(client) as executor:
            report = executor.execute(plan, jobs=4, retries=3)
        arrivals = list(proxy.arrivals)
    assert report.ok, report.errors
    assert report.images_copied == 2 * TAGS
    assert report.retries >= 3  # the storm's answers were re-sent, not failed
    _assert_copied(dst, fleet, names)
    faulted = [t for t, _, _, f in arrivals if f]
    assert len(faulted) == 3
    first = faulted[0]
    # Retry-After: 2 paused every worker: after the pause has spread (well under a second), nothing
    # reaches the registry until it ends, although the run was far from done.
    quiet = [(t - first, m, p) for t, m, p, _ in arrivals if first + 1.0 <= t <= first + 1.9]
    assert quiet == []
    assert sum(1 for t, *_ in arrivals if t > first + 1.9) > 20


def test_a_manifest_refused_for_an_unknown_blob_is_pushed_after_a_check(
        client: Any, registry: RegistryServer, registry_factory: Callable[..., RegistryServer],
        fleet: dict[str, list[raw.PushedImage]]) -> None:
    """What a manifest PUT gets when another worker writes one of its blobs into the same repository at
    that moment (distribution reads the half-written link): the blobs are asked for again, then the
    PUT succeeds; a manifest is never pushed on the strength of a worker's bookkeeping alone."""
    dst = registry_factory()
    with RegistryProxy(dst) as proxy:
        plan, names = _plan(registry, proxy.host, fleet, repos=1)
        proxy.answer_status(400, times=2, codes=("DIGEST_INVALID", "MANIFEST_BLOB_UNKNOWN"), method="PUT",
                            path_contains="/manifests/", after=1)
        with DaskExecutor(client) as executor:
            report = executor.execute(plan, jobs=4, retries=2)
        refused = [(m, p) for _, m, p, f in proxy.arrivals if f]
    assert len(refused) == 2
    assert report.ok, report.errors
    assert report.images_copied == TAGS and report.retries >= 2
    _assert_copied(dst, fleet, names)


def test_credentials_stay_on_the_workers(
        client: Any, registry: RegistryServer, basic_registry: RegistryServer,
        fleet: dict[str, list[raw.PushedImage]]) -> None:
    """Workers authenticate with their own docker config; no task argument carries the password."""
    repo = next(iter(fleet))
    dst_repo = unique_repo_name("auth")
    plan = plan_repository(f"{registry.host}/{repo}", f"{basic_registry.host}/{dst_repo}", tags=["v0", "v1"])
    assert len(plan.units) == 2 and not plan.errors
    password = basic_registry.password
    assert password
    secrets = [password.encode(), base64.b64encode(f"{basic_registry.username}:{password}".encode())]
    with DaskExecutor(client) as executor:
        graph = executor.graph(plan)
        shipped = distributed.protocol.pickle.dumps(graph.specs())
        assert not any(s in shipped for s in secrets)
        report = executor.execute(plan, jobs=2, retries=1)
        assert report.ok, report.errors
        assert report.images_copied == 2
        # What the scheduler holds for our tasks (their run specs, pickled) has no secret either.
        specs = client.run_on_scheduler(_pickled_run_specs)
        assert len(specs) >= 2 + 2 * 2
        assert not any(s in spec for spec in specs for s in secrets)
    got = raw.get_manifest(basic_registry, dst_repo, "v1")
    assert got.status == 200 and raw.sha256_digest(got.body) == fleet[repo][1].digest


def _pickled_run_specs(dask_scheduler: Any) -> list[bytes]:
    from distributed.protocol.pickle import dumps

    return [dumps(ts.run_spec) for key, ts in dask_scheduler.tasks.items()
            if str(key).startswith("ocitransport-") and ts.run_spec is not None]


def test_shared_limits_pause_a_registry_for_every_worker(fault_server: FaultServer) -> None:
    """The back-off seam without a cluster: a Retry-After one Session is given goes on the board, and a
    pause on the board (as another worker would put it) holds back this Session's requests to that
    registry (``127.0.0.1:port``) only (``localhost:port`` is another registry to it)."""
    from ocitransport import transport
    from ocitransport.client import Client
    from ocitransport.messages import Request

    port = fault_server.host.rsplit(":", 1)[1]
    board = LocalPauses()
    with Client() as http:
        told = transport.new_limit(http, backend=SharedLimits(board))
        answer = told.round_trip(Request("GET", f"http://127.0.0.1:{port}/status/429?retry_after=1"))
        assert answer.status == 429
        assert time.time() + 0.5 < board.paused_until(f"127.0.0.1:{port}") <= time.time() + 1.0

        other_worker = transport.new_limit(http, backend=SharedLimits(board))  # its own local state
        started = time.monotonic()
        assert other_worker.round_trip(Request("GET", f"http://localhost:{port}/status/200")).status == 200
        elsewhere = time.monotonic() - started
        assert other_worker.round_trip(Request("GET", f"http://127.0.0.1:{port}/status/200")).status == 200
        waited = time.monotonic() - started
    assert elsewhere < 0.5  # another registry is not held back
    assert waited >= 0.5  # the paused one waited for the pause it learned from the board
    assert [r.path for r in fault_server.requests] == ["/status/429", "/status/200", "/status/200"]


_MANIFEST_GET = re.compile(r'"GET /v2/(\S+?)/manifests/(sha256:[0-9a-f]{64}) HTTP/[\d.]+" 200 ')


def test_workers_do_not_pull_manifests_the_submit_side_read(
        client: Any, registry: RegistryServer, registry_factory: Callable[..., RegistryServer]) -> None:
    """Each source manifest is pulled once for the whole run (Docker Hub counts manifest GETs against
    the pull quota): the graph ships what the submitting side read to the tasks that need it."""
    src = registry_factory(extra_config=ACCESS_LOG)
    dst = registry_factory()
    base = os.urandom(1024)
    amd = raw.push_image(src, "ship/app", "v1-amd64", layers=[base, os.urandom(512)])
    arm = raw.push_image(src, "ship/app", "v1-arm64", layers=[base, os.urandom(512)])
    raw.push_index(src, "ship/app", "v1", [amd, arm])
    plan = plan_repository(f"{src.host}/ship/app", f"{dst.host}/ship/app", referrers=False)
    assert not plan.errors and len(plan.units) == 3
    with DaskExecutor(client) as executor:
        report = executor.execute(plan, jobs=2, retries=1)
    assert report.ok, report.errors
    gets = Counter(m.group(2) for m in _MANIFEST_GET.finditer(src.log()))
    assert gets and set(gets.values()) == {1}, gets
    for tag in ("v1-amd64", "v1-arm64", "v1"):
        assert raw.get_manifest(dst, "ship/app", tag).status == 200


def test_pull_quota_reaches_the_report(client: Any, registry: RegistryServer,
                                       registry_factory: Callable[..., RegistryServer],
                                       proxy_factory: Callable[..., FaultProxy]) -> None:
    """A source stating Docker Hub's pull quota: the cluster run's report has the lowest figure seen
    (the manifests are read on the submitting side, and workers do not read them again)."""
    dst = registry_factory()
    repo = unique_repo_name("quota")
    for i in range(3):
        raw.push_image(registry, repo, f"v{i}", layers=[os.urandom(256)])
    proxy = proxy_factory(registry)
    quota = DockerHubQuota(50)
    proxy.add_headers = quota
    plan = plan_repository(f"{proxy.host}/{repo}", f"{dst.host}/{repo}", referrers=False)
    assert not plan.errors and len(plan.units) == 3
    with DaskExecutor(client) as executor:
        report = executor.execute(plan, jobs=2, retries=1)
    assert report.ok, report.errors
    assert quota.remaining == 47  # one GET per image, all of them on the submitting side
    assert report.pull_quota == {proxy.host: {"remaining": 47, "limit": 100, "window_seconds": WINDOW}}
