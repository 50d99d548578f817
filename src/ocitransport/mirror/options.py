"""Run options: one frozen, picklable value carried by the Plan and honoured alike by every executor.

``RunOptions`` holds what decides how a plan is run (jobs, retries, chunking, platforms, referrers,
non-distributable layers, registries allowed private storage, per-registry TLS *paths*); it never holds a
secret, so it travels to dask workers with the tasks. ``tls_transport`` turns its TLS part into the
round tripper a Session sends through: each registry host with its own TLS settings gets its own Client.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypedDict

from .. import transport
from .._urls import authority
from ..name import Registry
from ..roundtrip import RoundTripper
from .blobs import CHUNK_SIZE, CHUNK_THRESHOLD
from .concurrency import AUTO, Jobs, check_jobs, most_jobs

if TYPE_CHECKING:
    from ..client import Client
    from ..messages import Request, Response

__all__ = ["RegistryTLS", "RunOptions", "cert_dir_files", "pool_limits", "tls_transport"]


@dataclass(frozen=True)
class RegistryTLS:
    """TLS settings of one registry: file paths only (the files are read by libcurl on each process).

    ``verify=False``: certificates are not checked (and plain HTTP is allowed, as ``tls-verify: false``
    of a sync file). ``ca_files``: CA certificates trusted for this registry besides the system's.
    ``cert`` / ``key``: a client certificate and its key (mutual TLS)."""

    registry: str
    verify: bool = True
    ca_files: tuple[str, ...] = ()
    cert: str = ""
    key: str = ""

    @classmethod
    def from_cert_dir(cls, registry: str, cert_dir: str | None, *, verify: bool = True) -> RegistryTLS:
        """The settings of a containers-style certificate directory (``*.crt`` CAs, ``*.cert`` +
        ``*.key`` client pair), as containers/image pkg/tlsclientconfig/tlsclientconfig.go reads it."""
        cas, pair = cert_dir_files(cert_dir) if cert_dir else ([], None)
        return cls(registry, verify, tuple(cas), *(pair or ("", "")))

    @property
    def default(self) -> bool:
        """Whether these are the Client's defaults (no Client of its own needed)."""
        return self.verify and not self.ca_files and not self.cert


@dataclass(frozen=True)
class RunOptions:
    """How a plan is run: built once (from CLI flags, library keywords or a sync file), carried by the
    :class:`~ocitransport.mirror.plan.Plan`, and honoured the same way by the local and dask executors.

    ``jobs``: images (and blob streams) at once, or ``"auto"`` (latency-aware, mirror/concurrency.py);
    ``retries``: the retry budget of one request (see the
    README's retry policy); ``chunk_threshold`` / ``chunk_size``: blobs above the threshold go up in
    chunks of that size; ``platforms`` / ``referrers``: what planning selects; ``include_nondistributable``:
    copy foreign layers too; ``allow_private_storage``: registries whose storage may be on private
    addresses; ``tls``: per-registry TLS paths; ``sync_file``: the absolute path of the sync file whose
    ``credentials`` each dask worker reads itself (``SyncConfig.load(path).keychain(...)``): like the TLS
    paths, the file must exist at that same path on every worker. Never holds a secret.
    """

    jobs: Jobs = AUTO
    retries: int = 3
    include_nondistributable: bool = False
    chunk_threshold: int = CHUNK_THRESHOLD
    chunk_size: int = CHUNK_SIZE
    platforms: tuple[str, ...] = ()
    referrers: bool = True
    allow_private_storage: tuple[str, ...] = ()
    tls: tuple[RegistryTLS, ...] = field(default=())
    sync_file: str = ""

    def __post_init__(self) -> None:
        check_jobs(self.jobs)
        if self.retries < 0:
            raise ValueError("retries must not be negative")
        if self.chunk_size < 1:
            raise ValueError("chunk_size must be greater than zero")

    @property
    def backoff(self) -> transport.Backoff:
        """The run's one backoff (``session.run_backoff``): every wait of the run follows it."""
        from .session import run_backoff

        return run_backoff(self.retries)

    def with_(self, **changes: Any) -> RunOptions:
        """A copy with ``changes`` (sequences normalised to sorted tuples where order does not matter)."""
        if "allow_private_storage" in changes:
            changes["allow_private_storage"] = tuple(sorted(set(changes["allow_private_storage"])))
        if "platforms" in changes:
            changes["platforms"] = tuple(changes["platforms"] or ())
        if "tls" in changes:
            changes["tls"] = tuple(changes["tls"])
        return replace(self, **changes)


def cert_dir_files(path: str) -> tuple[list[str], tuple[str, str] | None]:
    """``(CA files, (client cert, key) or None)`` of a containers-style certificate directory."""
    entries = sorted(os.listdir(path))
    cas = [os.path.join(path, e) for e in entries if e.endswith(".crt")]
    cert = None
    for entry in entries:
        if entry.endswith(".cert"):
            key = entry[: -len(".cert")] + ".key"
            if key in entries:
                cert = (os.path.join(path, entry), os.path.join(path, key))
                break
    return cas, cert


class PoolLimits(TypedDict):
    """Connection-pool keywords of a Client (see :func:`pool_limits`)."""

    max_connections: int
    max_connections_per_host: int


def pool_limits(jobs: int) -> PoolLimits:
    """Connection-pool sizes for a Client that runs ``jobs`` images at once: a streamed copy holds a
    connection to each side, planning and blob checks a few more; below this the pool, not ``jobs``,
    would bound the concurrency (the Client's defaults are 128 in all, 16 per host)."""
    return PoolLimits(max_connections=max(128, jobs * 4), max_connections_per_host=max(16, jobs * 2))


def _hosts_of(name: str) -> list[str]:
    registry = Registry(name)
    hosts = {registry.name.lower()}
    if registry.is_docker_hub:
        hosts |= {"registry-1.docker.io", "index.docker.io", "docker.io"}
    return sorted(hosts)


class RegistryRouter(RoundTripper):
    """Sends each request through the Client made for its registry host (its own TLS settings), or
    through the run's Client for every other host (token servers included)."""

    def __init__(self, default: Client, by_host: Mapping[str, Client]) -> None:
        self.default = default
        self.by_host = dict(by_host)

    def _pick(self, url: str) -> Client:
        return self.by_host.get(authority(url).lower(), self.default)

    def round_trip(self, request: Request) -> Response:
        return self._pick(request.url).round_trip(request)

    async def round_trip_async(self, request: Request) -> Response:
        return await self._pick(request.url).round_trip_async(request)


def _bundle(cas: tuple[str, ...], made: list[str]) -> str:
    # libcurl's CAPATH wants hashed file names: concatenate the system CAs and the given CA files into
    # one bundle instead, so both are trusted, as the docker daemon does.
    from ..engine import system_ca

    system, _ = system_ca()
    parts = [system] if system and os.path.isfile(system) else []
    fd, name = tempfile.mkstemp(prefix="ocitransport-ca-", suffix=".pem")
    made.append(name)
    with os.fdopen(fd, "wb") as out:
        for path in [*parts, *cas]:
            with open(path, "rb") as f:
                out.write(f.read().rstrip(b"\n") + b"\n")
    return name


@contextlib.contextmanager
def tls_transport(base: Client, tls: tuple[RegistryTLS, ...], jobs: Jobs) -> Iterator[RoundTripper]:
    """``base``, or a router sending each registry with its own TLS settings through a Client made for
    them (made here, closed on exit, with their CA bundles)."""
    from ..client import Client

    clients: dict[str, Client] = {}
    bundles: list[str] = []
    try:
        for item in tls:
            if item.default:
                continue
            verify: bool | str = item.verify
            if item.ca_files and item.verify:
                verify = _bundle(item.ca_files, bundles)
            cert = (item.cert, item.key) if item.cert else None
            client = Client(verify=verify, cert=cert, **pool_limits(most_jobs(jobs)))
            for host in _hosts_of(item.registry):
                clients[host] = client
        yield RegistryRouter(base, clients) if clients else base
    finally:
        for client in {id(c): c for c in clients.values()}.values():
            client.close()
        for name in bundles:
            with contextlib.suppress(OSError):
                os.unlink(name)
