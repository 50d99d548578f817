"""Drop-in transports for requests and httpx on the ocitransport engine.

* ``ocitransport.adapters.requests.RequestsAdapter``: a ``requests.adapters.BaseAdapter``, mounted with
  ``session.mount("https://", adapter)`` and ``"http://"``;
* ``ocitransport.adapters.httpx.HTTPXTransport`` / ``AsyncHTTPXTransport``: ``httpx.Client(transport=...)``.

Each works in two modes. **Plain**: the engine only (connection pool, TLS, streaming, timeouts); the
host library keeps redirects, cookies, auth and content decoding. **Registry mode** (``registry_auth=True``,
``keychain=`` or ``auth=``): requests for a registry host go through the ``ocitransport.transport``
layers (one ping per host, Basic or Bearer with the client's shared token cache, scope upgrades on
``insufficient_scope``, retries), so code written for an open registry works against token auth.

Registry mode rules (:class:`RegistryRouter`):

* A request that already carries an ``Authorization`` header (the host library's own auth, e.g. oras-py
  or python-dxf after their own token dance) is passed through untouched: **the caller's header wins**.
* Registry hosts are those given as ``registries=`` or, by default, any host asked for a ``/v2/`` path.
  Other hosts (token servers, blob storage after a redirect) get no credentials.
* A host whose ping fails with an HTTP answer that is no registry's, or whose credentials are refused
  at setup, is remembered as plain and served without auth (the caller then sees the registry's own
  401 as it would without the adapter); a network failure is not remembered.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
import threading
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any, Union
from urllib.parse import urlsplit

from .._scopes import repository_scope
from .._urls import authority
from ..exceptions import OCITransportError, TransportError
from ..messages import Request
from ..roundtrip import RoundTripper

if TYPE_CHECKING:
    from ..authn import Authenticator, Keychain

__all__ = ["AuthSource", "RegistryRouter", "scope_for"]

log = logging.getLogger("ocitransport")

#: What registry mode takes as ``auth=``: one authenticator for every registry, or one per host.
AuthSource = Union["Authenticator", Mapping[str, "Authenticator"]]

_REPO_PATH = re.compile(r"^/v2/(.+)/(?:manifests|blobs|tags|referrers)/")
_READ_METHODS = frozenset({"GET", "HEAD"})


def scope_for(method: str, url: str) -> list[str]:
    """The repository scope a registry request needs: ``repository:NAME:pull`` for reads,
    ``repository:NAME:push,pull`` for the rest; ``[]`` for paths that name no repository."""
    match = _REPO_PATH.match(urlsplit(url).path)
    if match is None:
        return []
    return [repository_scope(match.group(1), "pull" if method.upper() in _READ_METHODS else "push,pull")]


class RegistryRouter:
    """Chooses, per request, between the plain client and that registry host's authenticated chain.

    One chain per (client, registry host), built once (single flight: concurrent first requests wait for
    one ping and one token). ``keychain`` resolves credentials per registry; ``auth`` is one
    authenticator for all registries or a mapping from host (``"r.example:5000"``) to authenticator;
    neither means anonymous. ``retry`` wraps the client in ``new_retry`` under the auth layers.
    """

    def __init__(self, *, keychain: Keychain | None = None, auth: AuthSource | None = None,
                 registries: Collection[str] | None = None, retry: bool = True) -> None:
        self.keychain = keychain
        self.auth = auth
        self.registries = frozenset(registries) if registries is not None else None
        self.retry = retry
        self._lock = threading.Lock()
        self._chains: dict[tuple[int, str], RoundTripper | concurrent.futures.Future[RoundTripper]] = {}

    # -- decisions ---------------------------------------------------------------------------------
    def wants(self, request: Request) -> bool:
        """Whether ``request`` should get registry auth (see the module docstring)."""
        if "authorization" in request.headers:
            return False
        if self.registries is not None:
            return authority(request.url) in self.registries
        path = urlsplit(request.url).path
        return path.startswith("/v2/")

    def authenticator(self, host: str) -> Authenticator:
        """The credentials for registry ``host``."""
        from ..authn import Anonymous
        from ..name import Registry

        auth = self.auth
        if auth is not None:
            if isinstance(auth, Mapping):
                return auth.get(host, Anonymous)
            return auth
        if self.keychain is not None:
            return self.keychain.resolve(Registry(host, insecure=True))
        return Anonymous

    # -- chains ------------------------------------------------------------------------------------
    def _setup(self, client: RoundTripper, request: Request) -> tuple[Any, Any, Any]:
        from ..name import Registry
        from ..transport import new_retry

        host = authority(request.url)
        registry = Registry(host, insecure=request.url[:5].lower() == "http:")
        inner: RoundTripper = new_retry(client) if self.retry else client
        return registry, self.authenticator(host), inner

    def _claim(self, client: RoundTripper, host: str) -> tuple[Any, bool]:
        """(chain or future, leader?) for ``host``; the leader must settle the future it got."""
        key = (id(client), host)
        with self._lock:
            found = self._chains.get(key)
            if found is not None:
                return found, False
            flight: concurrent.futures.Future[RoundTripper] = concurrent.futures.Future()
            self._chains[key] = flight
            return flight, True

    def _settle(self, client: RoundTripper, host: str, flight: concurrent.futures.Future[RoundTripper],
                chain: RoundTripper | None, error: BaseException | None) -> RoundTripper:
        key = (id(client), host)
        if chain is None:
            if isinstance(error, TransportError) or not isinstance(error, OCITransportError):
                # A network failure (or a bug) is not the registry's answer: ask again next time.
                with self._lock:
                    self._chains.pop(key, None)
            else:
                log.warning("registry auth for %s unavailable, sending without it: %s", host, error)
                with self._lock:
                    self._chains[key] = client
            chain = client
        else:
            with self._lock:
                self._chains[key] = chain
        flight.set_result(chain)
        return chain

    def route(self, client: RoundTripper, request: Request) -> RoundTripper:
        """The round-tripper for ``request``: ``client`` itself, or the host's authenticated chain."""
        if not self.wants(request):
            return client
        host = authority(request.url)
        found, leader = self._claim(client, host)
        if not leader:
            chain: RoundTripper = found.result() if isinstance(found, concurrent.futures.Future) else found
            return chain
        from ..transport import new

        registry, auth, inner = self._setup(client, request)
        try:
            chain = new(registry, auth, inner, scope_for(request.method, request.url))
        except OCITransportError as exc:  # the request goes on without auth
            return self._settle(client, host, found, None, exc)
        except BaseException as exc:
            self._settle(client, host, found, None, exc)
            raise
        return self._settle(client, host, found, chain, None)

    async def route_async(self, client: RoundTripper, request: Request) -> RoundTripper:
        """``route`` without blocking the running event loop."""
        if not self.wants(request):
            return client
        host = authority(request.url)
        found, leader = self._claim(client, host)
        if not leader:
            if isinstance(found, concurrent.futures.Future):
                ready: RoundTripper = await asyncio.wrap_future(found)
                return ready
            return found  # type: ignore[no-any-return]
        from ..transport import new_async

        registry, auth, inner = self._setup(client, request)
        try:
            chain = await new_async(registry, auth, inner, scope_for(request.method, request.url))
        except OCITransportError as exc:
            return self._settle(client, host, found, None, exc)
        except BaseException as exc:
            self._settle(client, host, found, None, exc)
            raise
        return self._settle(client, host, found, chain, None)

    def forget(self, client: RoundTripper) -> None:
        """Drop the chains built on ``client`` (it is being closed)."""
        with self._lock:
            for key in [k for k in self._chains if k[0] == id(client)]:
                del self._chains[key]


def make_router(registry_auth: bool, keychain: Keychain | None, auth: AuthSource | None,
                registries: Collection[str] | None, retry: bool) -> RegistryRouter | None:
    """The router for an adapter's arguments, or ``None`` for plain mode."""
    if not (registry_auth or keychain is not None or auth is not None):
        return None
    if keychain is None and auth is None:
        from ..authn import DefaultKeychain

        keychain = DefaultKeychain()
    return RegistryRouter(keychain=keychain, auth=auth, registries=registries, retry=retry)
