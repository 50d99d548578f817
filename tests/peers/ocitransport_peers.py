"""pytest plugin for ``scripts/peer-suites.sh``: other projects' own test suites, stock or on our adapters.

Loaded with ``-p ocitransport_peers`` (``tests/peers`` on ``PYTHONPATH``). Environment:

* ``OCITRANSPORT_PEERS=ours`` mounts ``ocitransport.adapters`` by default: every ``requests.Session`` gets a
  ``RequestsAdapter`` for ``http://`` and ``https://``, and every ``httpx.Client`` / ``AsyncClient`` that
  builds its own transport gets an ``HTTPXTransport`` / ``AsyncHTTPXTransport`` (with the client's
  ``verify``, ``cert``, ``http2``, proxy and connection limit). ``stock`` (the default) changes nothing.
* Both modes: a loopback-only guard. Python sockets (stock) and our adapters (libcurl does not use
  Python sockets) refuse any host that is not loopback before resolving or dialling it, and the test is
  written to ``OCITRANSPORT_PEERS_BLOCKED`` (one node id a line). The script deselects the known ones
  before the first run; the guard makes a missed one fail on both sides instead of leaving the machine.
* ``OCITRANSPORT_PEERS_REGISTRY=open|basic-tls|bearer-tls``: start one of our docker-registry fixtures
  (``tests/servers/registry.py``, imported from ``OCITRANSPORT_PEERS_REPO``) for oras-py's tests and
  export ``ORAS_HOST`` / ``ORAS_PORT`` (and ``ORAS_AUTH`` / ``ORAS_USER`` / ``ORAS_PASS``) for them.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import socket
import sys
from typing import Any

import pytest

MODE = os.environ.get("OCITRANSPORT_PEERS", "stock")
_BLOCKED_LOG = os.environ.get("OCITRANSPORT_PEERS_BLOCKED", "")
_current: list[str] = [""]
_registry: list[Any] = []

#: Not resolved, not dialled: the unspecified addresses (a local bind) and names for this machine.
_LOCAL_NAMES = frozenset({"localhost", "0.0.0.0", "::", ""})


def is_loopback(host: Any) -> bool:
    """Whether ``host`` (a name, an IP literal, bytes, or None) stays on this machine."""
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    h = str(host).strip("[]").lower().rstrip(".")
    if h in _LOCAL_NAMES or h.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(h.split("%")[0]).is_loopback
    except ValueError:
        return False


class BlockedAddress(OSError):
    """A peer test tried to reach a host that is not loopback."""


def _blocked(host: Any) -> BlockedAddress:
    if _BLOCKED_LOG and _current[0]:
        with open(_BLOCKED_LOG, "a", encoding="utf-8") as log:
            log.write(f"{_current[0]}\t{host}\n")
    return BlockedAddress(f"peer-suite guard: {host!r} is not a loopback address")


def _guard_sockets() -> None:
    original_getaddrinfo = socket.getaddrinfo
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex

    @functools.wraps(original_getaddrinfo)
    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not is_loopback(host):
            raise socket.gaierror(socket.EAI_NONAME, str(_blocked(host)))
        return original_getaddrinfo(host, *args, **kwargs)

    def _check(sock: socket.socket, address: Any) -> None:
        if (sock.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple)
                and not is_loopback(address[0])):
            raise _blocked(address[0])

    def connect(self: socket.socket, address: Any) -> None:
        _check(self, address)
        return original_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        _check(self, address)
        return original_connect_ex(self, address)

    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]


def _url_hosts(url: str, proxy: str | None = None) -> list[str]:
    """The host an http(s) request dials: its proxy's when it has one (the proxy resolves the rest),
    else its own. Other schemes, and proxies without a host, are the transport's to refuse."""
    from urllib3.util import parse_url

    target = proxy or url
    if proxy and "://" not in proxy:
        target = "http://" + proxy
    try:
        parts = parse_url(target)
    except ValueError:
        return []
    if (parts.scheme or "http").lower() not in ("http", "https") or not parts.host:
        return []
    return [parts.host]


def _mount_requests() -> None:
    import requests
    from requests.utils import select_proxy

    from ocitransport.adapters.requests import RequestsAdapter

    original_init = requests.Session.__init__

    @functools.wraps(original_init)
    def __init__(self: requests.Session, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        adapter = RequestsAdapter()
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    requests.Session.__init__ = __init__  # type: ignore[method-assign]

    original_send = RequestsAdapter.send

    @functools.wraps(original_send)
    def send(self: RequestsAdapter, request: Any, *args: Any, **kwargs: Any) -> Any:
        proxies = kwargs.get("proxies") or (args[4] if len(args) > 4 else None)
        proxy = select_proxy(request.url, proxies) if proxies else None
        for host in _url_hosts(request.url, proxy):
            if not is_loopback(host):
                raise requests.exceptions.ConnectionError(str(_blocked(host)), request=request)
        return original_send(self, request, *args, **kwargs)

    RequestsAdapter.send = send  # type: ignore[method-assign]


def _mount_httpx() -> None:
    import httpx

    from ocitransport.adapters.httpx import AsyncHTTPXTransport, HTTPXTransport

    def options(verify: Any, cert: Any, http2: bool, limits: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"verify": verify, "cert": cert, "http2": http2}
        if limits is not None and limits.max_connections:
            out["max_connections"] = out["max_connections_per_host"] = limits.max_connections
        return out

    def proxy_url(proxy: Any) -> str:
        url = proxy.url
        if proxy.auth:
            url = url.copy_with(username=proxy.auth[0], password=proxy.auth[1])
        return str(url)

    def init_transport(self: Any, kind: type, verify: Any = True, cert: Any = None, trust_env: bool = True,
                       http1: bool = True, http2: bool = False, limits: Any = None,
                       transport: Any = None) -> Any:
        if transport is not None:
            return transport
        return kind(**options(verify, cert, http2, limits))

    def init_proxy_transport(self: Any, kind: type, proxy: Any, verify: Any = True, cert: Any = None,
                             trust_env: bool = True, http1: bool = True, http2: bool = False,
                             limits: Any = None) -> Any:
        return kind(proxy=proxy_url(proxy), **options(verify, cert, http2, limits))

    httpx.Client._init_transport = functools.partialmethod(init_transport, HTTPXTransport)  # type: ignore[assignment,method-assign]
    httpx.Client._init_proxy_transport = functools.partialmethod(  # type: ignore[assignment,method-assign]
        init_proxy_transport, HTTPXTransport)
    httpx.AsyncClient._init_transport = functools.partialmethod(  # type: ignore[assignment,method-assign]
        init_transport, AsyncHTTPXTransport)
    httpx.AsyncClient._init_proxy_transport = functools.partialmethod(  # type: ignore[assignment,method-assign]
        init_proxy_transport, AsyncHTTPXTransport)

    def check(request: httpx.Request, proxy: str) -> None:
        for host in _url_hosts(str(request.url), proxy):
            if not is_loopback(host):
                raise httpx.ConnectError(str(_blocked(host)), request=request)

    original_sync = HTTPXTransport.handle_request
    original_async = AsyncHTTPXTransport.handle_async_request

    def handle_request(self: HTTPXTransport, request: httpx.Request) -> httpx.Response:
        check(request, getattr(self, "_peer_proxy", ""))
        return original_sync(self, request)

    async def handle_async_request(self: AsyncHTTPXTransport, request: httpx.Request) -> httpx.Response:
        check(request, getattr(self, "_peer_proxy", ""))
        return await original_async(self, request)

    HTTPXTransport.handle_request = handle_request  # type: ignore[method-assign]
    AsyncHTTPXTransport.handle_async_request = handle_async_request  # type: ignore[method-assign]

    for kind in (HTTPXTransport, AsyncHTTPXTransport):
        original_init = kind.__init__

        def __init__(self: Any, *args: Any, _init: Any = original_init, **kwargs: Any) -> None:
            self._peer_proxy = str(kwargs.get("proxy") or "")
            _init(self, *args, **kwargs)

        kind.__init__ = __init__  # type: ignore[method-assign]


def _start_registry(kind: str) -> None:
    repo = os.environ["OCITRANSPORT_PEERS_REPO"]
    sys.path.insert(0, repo)
    try:
        from tests.servers.registry import RegistryServer
    finally:
        sys.path.remove(repo)
    if kind == "open":
        server = RegistryServer()
    elif kind == "basic-tls":
        server = RegistryServer(auth="basic", tls_enabled=True)
    elif kind == "bearer-tls":
        server = RegistryServer(auth="bearer", tls_enabled=True)
    else:
        raise pytest.UsageError(f"OCITRANSPORT_PEERS_REGISTRY={kind!r}: expected open, basic-tls or bearer-tls")
    server.start()
    _registry.append(server)
    host, _, port = server.host.rpartition(":")
    os.environ.update(ORAS_HOST=host, ORAS_PORT=port)
    if server.password:
        os.environ.update(ORAS_AUTH="true", ORAS_USER=str(server.username), ORAS_PASS=server.password)


def pytest_configure(config: pytest.Config) -> None:
    _guard_sockets()
    if MODE == "ours":
        try:
            _mount_requests()
        except ImportError:
            pass
        try:
            _mount_httpx()
        except ImportError:
            pass
    elif MODE != "stock":
        raise pytest.UsageError(f"OCITRANSPORT_PEERS={MODE!r}: expected stock or ours")
    registry = os.environ.get("OCITRANSPORT_PEERS_REGISTRY")
    if registry:
        _start_registry(registry)


def pytest_unconfigure(config: pytest.Config) -> None:
    while _registry:
        _registry.pop().stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    _current[0] = item.nodeid
    try:
        return (yield)
    finally:
        _current[0] = ""
