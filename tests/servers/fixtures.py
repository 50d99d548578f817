"""pytest fixtures that start real servers on loopback (loaded by ``pytest_plugins`` in tests/conftest.py).

Registries and nginx are session-scoped (each starts in well under a second, but there is no need to
start one per test); tests stay independent by using fresh repository names (``repo_name``) and, for
bearer auth, a token server reset before and after each test. The fault server is per test.

When ``docker-registry`` or ``nginx`` is missing the tests needing it are skipped, unless ``CI`` is set:
then it is a failure. Tests that use a registry fixture are marked ``registry`` automatically, so
``-m 'not registry'`` leaves them out.
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.servers import process, raw
from tests.servers.credentials import Env, isolated
from tests.servers.faults import FaultServer
from tests.servers.nginx import NginxServer, nginx_binary
from tests.servers.proxy import FaultProxy
from tests.servers.raw import PushedImage, push_blob, push_image, push_index, push_manifest
from tests.servers.registry import RegistryServer, registry_binary
from tests.servers.s3 import S3Server, moto_binary
from tests.servers.shaper import LinkShaper
from tests.servers.token_server import TokenServer

__all__ = [
    "REGISTRY_FIXTURES", "PushedImage", "S3Storage", "ServerKeychain", "push_blob", "push_image", "push_index",
    "push_manifest", "raw", "require_moto", "require_nginx", "require_registry", "unique_repo_name",
]

#: Fixtures that need an external server binary (docker-registry or nginx); tests using them get the
#: ``registry`` marker, so ``-m 'not registry'`` (cibuildwheel's test command) runs without them.
REGISTRY_FIXTURES = frozenset({
    "registry", "basic_registry", "bearer_registry", "bearer_registry_session", "token_server",
    "tls_registry", "mtls_registry", "tls_bearer_registry", "tls_bearer_registry_session",
    "registry_factory", "nginx_server", "nginx_factory", "proxy_factory",
    "s3_storage", "storage", "s3_registry", "s3_dst_registry", "s3_basic_registry", "s3_bearer_registry",
    "s3_bearer_registry_session", "s3_tls_registry", "pull_through_registry", "shaper_factory",
})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if REGISTRY_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.registry)


def _require(found: str | None, what: str, package: str) -> None:
    if found is not None:
        return
    message = f"{what} is not installed (apt-get install {package})"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI is set, so this is a failure", pytrace=False)
    pytest.skip(message)


def require_registry() -> None:
    """Skip the calling test when docker-registry is missing (fail instead when ``CI`` is set)."""
    _require(registry_binary(), "docker-registry", "docker-registry")


def require_nginx() -> None:
    """Skip the calling test when nginx is missing (fail instead when ``CI`` is set)."""
    _require(nginx_binary(), "nginx", "nginx-light")


def require_moto() -> None:
    """Skip the calling test when moto_server is missing (fail instead when ``CI`` is set)."""
    _require(moto_binary(), "moto_server", "python3-moto; or pip install 'moto[server]'")


def _started(**options: Any) -> Iterator[RegistryServer]:
    require_registry()
    with RegistryServer(**options) as server:
        yield server


# ---------------------------------------------------------------------------------------------- registries

@pytest.fixture(scope="session")
def registry() -> Iterator[RegistryServer]:
    """An open registry (no auth, plain HTTP)."""
    yield from _started()


@pytest.fixture(scope="session")
def basic_registry() -> Iterator[RegistryServer]:
    """A registry with htpasswd Basic auth: ``.username`` (``alice``) / ``.password``, ``.users``."""
    yield from _started(auth="basic")


@pytest.fixture(scope="session")
def bearer_registry_session() -> Iterator[RegistryServer]:
    """The session's bearer registry without the per-test token server reset (for fixtures of a wider
    scope than a function; prefer ``bearer_registry`` in tests)."""
    yield from _started(auth="bearer")


def _with_fresh_token_server(server: RegistryServer) -> Iterator[RegistryServer]:
    assert server.token_server is not None
    server.token_server.reset()
    yield server
    server.token_server.reset()


@pytest.fixture
def bearer_registry(bearer_registry_session: RegistryServer) -> Iterator[RegistryServer]:
    """A registry with Bearer auth against ``.token_server`` (reset before and after the test):
    ``alice`` (``.username`` / ``.password``) may do anything, ``bob`` only pull, anonymous only pull."""
    yield from _with_fresh_token_server(bearer_registry_session)


@pytest.fixture(scope="session")
def _tlsbearer_registry_session() -> Iterator[RegistryServer]:
    yield from _started(auth="bearer", tls_enabled=True)


@pytest.fixture
def tls_bearer_registry(_tlsbearer_registry_session: RegistryServer) -> Iterator[RegistryServer]:
    """Like ``bearer_registry`` but over HTTPS, its token server too (same certificate; trust
    ``.ca_file``)."""
    yield from _with_fresh_token_server(_tlsbearer_registry_session)


@pytest.fixture
def token_server(bearer_registry: RegistryServer) -> TokenServer:
    """The token server of ``bearer_registry`` (fresh counters, log and knobs for this test)."""
    assert bearer_registry.token_server is not None
    return bearer_registry.token_server


@pytest.fixture(scope="session")
def tls_registry() -> Iterator[RegistryServer]:
    """An open registry over HTTPS (HTTP/2 by ALPN); trust ``.ca_file``."""
    yield from _started(tls_enabled=True)


@pytest.fixture(scope="session")
def mtls_registry() -> Iterator[RegistryServer]:
    """An open registry over HTTPS that requires a client certificate: ``.ca_file``, ``.client_cert``,
    ``.client_key`` (issued by another CA, ``.client_ca_file``)."""
    yield from _started(mtls=True)


@pytest.fixture
def registry_factory() -> Iterator[Callable[..., RegistryServer]]:
    """Start registries with any :class:`RegistryServer` options; all are stopped after the test.

    ``registry_factory(auth="bearer", tls_enabled=True, token_server_options={"anonymous": None})``
    """
    require_registry()
    started: list[RegistryServer] = []

    def make(**options: Any) -> RegistryServer:
        server = RegistryServer(**options).start()
        started.append(server)
        return server

    yield make
    for server in reversed(started):
        server.stop()


# ---------------------------------------------------------------------------------------------- production

@dataclass
class S3Storage:
    """The object storage of the S3-backed registries, as the session shares it.

    Requests reach moto (``s3``) through ``link`` (a :class:`LinkShaper`, no delay, recording every byte
    clients send: ``link.sent``) then ``proxy`` (a :class:`FaultProxy`: scripted faults and per-request
    ``records``). Registries use ``endpoint`` (the link) as their ``regionendpoint``, so presigned URLs
    name it too, and everything a client sends to storage crosses both. distribution's s3 driver
    never sends HEAD to an object (its Stat lists), so every HEAD the proxy sees on ``.../data`` comes
    from a client following a presigned URL (:meth:`refuse_presigned_head`).
    """

    s3: S3Server
    proxy: FaultProxy
    link: LinkShaper

    @property
    def endpoint(self) -> str:
        return self.link.url

    def reset(self) -> None:
        self.proxy.reset()
        self.link.clear()

    def refuse_presigned_head(self, status: int = 403, times: int = 10_000) -> None:
        """Answer HEAD on blob objects with ``status``, as storage does to a HEAD on a URL presigned for
        GET (GHCR, Pulp, GitLab's virtual registries, Ceph RGW behind them)."""
        self.proxy.answer_status(status, times=times, method="HEAD", path_contains="/data")


class ServerKeychain:
    """A keychain with the first user's credentials (``.username`` / ``.password``) of each server
    given, by host; anonymous elsewhere."""

    def __init__(self, *servers: RegistryServer) -> None:
        from ocitransport.authn import Basic

        self.by_host = {s.host: Basic(s.username, s.password) for s in servers if s.username and s.password}

    def resolve(self, target: Any) -> Any:
        from ocitransport.authn import Anonymous

        registry = getattr(target, "registry", target)
        return self.by_host.get(getattr(registry, "name", ""), Anonymous)


@pytest.fixture(scope="session")
def s3_storage() -> Iterator[S3Storage]:
    """moto with a recording link and a fault proxy in front (:class:`S3Storage`), for the session."""
    require_registry()
    require_moto()
    with S3Server() as s3, FaultProxy(process.LOOPBACK, s3.port) as proxy, \
            LinkShaper(process.LOOPBACK, proxy.port, record=True) as link:
        yield S3Storage(s3, proxy, link)


@pytest.fixture
def storage(s3_storage: S3Storage) -> Iterator[S3Storage]:
    """The session's :class:`S3Storage` with fresh proxy scripts, records and link recording."""
    s3_storage.reset()
    yield s3_storage
    s3_storage.reset()


def _s3_started(s3_storage: S3Storage, **options: Any) -> Iterator[RegistryServer]:
    yield from _started(s3=s3_storage.s3, s3_endpoint=s3_storage.endpoint, **options)


@pytest.fixture(scope="session")
def s3_registry(s3_storage: S3Storage) -> Iterator[RegistryServer]:
    """An open registry on S3 (distribution's s3 driver on moto, redirects on): blob GET and HEAD
    answer 307 to a presigned URL on the storage host."""
    yield from _s3_started(s3_storage)


@pytest.fixture(scope="session")
def s3_dst_registry(s3_storage: S3Storage) -> Iterator[RegistryServer]:
    """A second open registry on S3 (its own bucket), for S3 -> S3 copies."""
    yield from _s3_started(s3_storage)


@pytest.fixture(scope="session")
def s3_basic_registry(s3_storage: S3Storage) -> Iterator[RegistryServer]:
    """A registry on S3 with htpasswd Basic auth (``.username`` / ``.password``)."""
    yield from _s3_started(s3_storage, auth="basic")


@pytest.fixture(scope="session")
def s3_bearer_registry_session(s3_storage: S3Storage) -> Iterator[RegistryServer]:
    yield from _s3_started(s3_storage, auth="bearer")


@pytest.fixture
def s3_bearer_registry(s3_bearer_registry_session: RegistryServer) -> Iterator[RegistryServer]:
    """A registry on S3 with Bearer auth (token server reset around the test), like ``bearer_registry``."""
    yield from _with_fresh_token_server(s3_bearer_registry_session)


@pytest.fixture(scope="session")
def _s3_tls_registry_session(s3_storage: S3Storage) -> Iterator[RegistryServer]:
    yield from _s3_started(s3_storage, auth="bearer", tls_enabled=True)


@pytest.fixture
def s3_tls_registry(_s3_tls_registry_session: RegistryServer) -> Iterator[RegistryServer]:
    """A registry as they run in production: HTTPS with HTTP/2 (ALPN), Bearer auth from a token service
    on its own host:port (HTTPS too), blobs on S3 behind presigned redirects. Trust ``.ca_file``."""
    yield from _with_fresh_token_server(_s3_tls_registry_session)


@pytest.fixture(scope="session")
def pull_through_registry(s3_registry: RegistryServer) -> Iterator[RegistryServer]:
    """A pull-through cache (distribution's ``proxy.remoteurl``) of ``s3_registry``: pulls fill it from
    upstream on demand (following upstream's redirects to storage); pushes answer 405 UNSUPPORTED."""
    yield from _started(extra_config={"proxy": {"remoteurl": s3_registry.url}})


@pytest.fixture
def shaper_factory() -> Iterator[Callable[..., LinkShaper]]:
    """Put servers far away: ``shaper_factory(server, delay=0.05, rate=0)`` -> a started :class:`LinkShaper`
    in front of ``server.port`` (``delay`` one way, each direction); all are stopped after the test."""
    started: list[LinkShaper] = []

    def make(upstream: Any, delay: float = 0.05, rate: int = 0, record: bool = False) -> LinkShaper:
        shaper = LinkShaper(process.LOOPBACK, int(upstream.port), delay=delay, rate=rate, record=record).start()
        started.append(shaper)
        return shaper

    yield make
    for shaper in reversed(started):
        shaper.stop()


# ---------------------------------------------------------------------------------------------- others

@pytest.fixture
def fault_server() -> Iterator[FaultServer]:
    """A fresh misbehaving HTTP/1.1 server for this test (see tests/servers/faults.py)."""
    with FaultServer() as server:
        yield server


@pytest.fixture
def proxy_factory() -> Iterator[Callable[..., FaultProxy]]:
    """Start fault proxies (tests/servers/proxy.py) in front of servers with ``.port``:
    ``proxy_factory(registry, seed=0)`` -> a started :class:`FaultProxy`; all are stopped after the test."""
    started: list[FaultProxy] = []

    def make(upstream: Any, seed: int = 0) -> FaultProxy:
        proxy = FaultProxy(process.LOOPBACK, int(upstream.port), seed=seed).start()
        started.append(proxy)
        return proxy

    yield make
    for proxy in reversed(started):
        proxy.stop()


@pytest.fixture(scope="session")
def nginx_server() -> Iterator[NginxServer]:
    """nginx serving ``/small`` (512 bytes) and ``/v2/`` over plain HTTP."""
    require_nginx()
    with NginxServer() as server:
        yield server


@pytest.fixture
def nginx_factory() -> Iterator[Callable[..., NginxServer]]:
    """Start nginx instances with any :class:`NginxServer` options (``big_mib``, ``tls_enabled``,
    ``http2``, ``workers``); all are stopped after the test."""
    require_nginx()
    started: list[NginxServer] = []

    def make(**options: Any) -> NginxServer:
        server = NginxServer(**options).start()
        started.append(server)
        return server

    yield make
    for server in reversed(started):
        server.stop()


# ---------------------------------------------------------------------------------------------- data

_counter = itertools.count(1)
_session_tag = secrets.token_hex(2)


def unique_repo_name(hint: str = "repo") -> str:
    """A repository name no other test uses: ``test/<hint>-<session>-<n>``, valid for any registry."""
    cleaned = re.sub(r"[^a-z0-9]+", "-", hint.lower()).strip("-")[:40].strip("-") or "repo"
    return f"test/{cleaned}-{_session_tag}{next(_counter)}"


@pytest.fixture
def repo_name(request: pytest.FixtureRequest) -> str:
    """A fresh repository name derived from the test's name."""
    return unique_repo_name(request.node.name)


@pytest.fixture
def make_repo_name(request: pytest.FixtureRequest) -> Callable[[], str]:
    """A callable returning a fresh repository name on every call (for tests needing several)."""
    return lambda: unique_repo_name(request.node.name)


@pytest.fixture
def env(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Env:
    """This test's own credential stores and helper (:mod:`tests.servers.credentials`)."""
    return isolated(tmp_path, monkeypatch)
