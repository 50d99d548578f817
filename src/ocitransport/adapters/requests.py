"""``RequestsAdapter``: a ``requests`` transport adapter on the ocitransport engine.

    session = requests.Session()
    adapter = RequestsAdapter()                      # plain: our engine, nothing else
    adapter = RequestsAdapter(registry_auth=True)    # + registry auth from the docker config
    session.mount("https://", adapter)
    session.mount("http://", adapter)

What stays with requests, as with its own ``HTTPAdapter``: redirects, cookies, ``auth=``, content
decoding (``raw`` is a urllib3 ``HTTPResponse`` with ``decode_content=False``, so gzip is decoded once,
by requests). What the adapter maps: ``timeout`` (float, ``(connect, read)`` or urllib3 ``Timeout``; the
read timeout becomes the engine's stall limit, which libcurl counts in whole seconds, so 0.5 acts as 1),
``verify`` (bool or CA file/dir), ``cert`` (path or ``(cert, key)``), ``proxies`` (resolved by requests,
so libcurl's own ``*_proxy`` handling is switched off). ``verify=True`` trusts the system CA store (not
certifi's bundle): a deliberate difference, the store docker and curl use.

Registry mode and the ``Authorization`` rule: see ``ocitransport.adapters``. A shared ``client=`` serves
the requests whose ``verify``/``cert``/proxy are the defaults (``True``/``None``/none); other settings
get adapter-owned clients (the engine fixes TLS and proxy per client), all closed by ``close()``.

Pickling keeps the settings, not the clients (an unpickled adapter opens its own, as stock re-creates
its pools); a shared ``client=`` is not carried over.
"""

from __future__ import annotations

import functools
import http.client
import io
import os
import threading
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import requests
import urllib3
from requests.adapters import BaseAdapter
from requests.cookies import extract_cookies_to_jar
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers, prepend_scheme_if_needed, select_proxy
from urllib3.util import parse_url

from ..client import Client
from ..messages import Headers, Request, Response, Timeout
from . import AuthSource, RegistryRouter, make_router
from ._errors import is_mapped, to_requests, to_urllib3

if TYPE_CHECKING:
    from ..authn import Keychain
    from ..roundtrip import RoundTripper

__all__ = ["RequestsAdapter", "installed"]

_ClientKey = tuple[Any, Any, str]
_NO_TIMEOUT = Timeout(connect=None, total=None, stall=None, pool=None, min_rate=None)


@functools.lru_cache(maxsize=256)
def _timeout(connect: float | None, read: float | None) -> Timeout:
    """One ``Timeout`` object per distinct setting (the engine skips re-arming a handle on identity)."""
    # requests has no minimum rate: its read timeout is the longest gap between bytes, our stall limit.
    return Timeout(connect=connect, total=None, stall=read, pool=None, min_rate=None)


def _seconds(value: Any) -> float | None:
    return value if isinstance(value, (int, float)) else None  # urllib3's default sentinel: no limit


@functools.lru_cache(maxsize=256, typed=True)
def _validated(connect: Any, read: Any) -> Timeout:
    """The engine ``Timeout`` for a (connect, read) pair, validated by urllib3's own ``Timeout`` so that
    ``'3'``, ``0``, ``-1`` and ``True`` raise the ``ValueError`` stock raises (failures are not cached)."""
    checked = urllib3.Timeout(connect=connect, read=read)
    return _timeout(_seconds(checked.connect_timeout), _seconds(checked.read_timeout))


def map_timeout(timeout: Any) -> Timeout:
    """requests' ``timeout`` argument as an engine ``Timeout``: ``None`` waits forever (as stock)."""
    if timeout is None:
        return _NO_TIMEOUT
    if isinstance(timeout, tuple):
        try:
            connect, read = timeout
        except ValueError:
            raise ValueError(f"Invalid timeout {timeout}. Pass a (connect, read) timeout tuple, "
                             "or a single float to set both timeouts to the same value.") from None
    elif isinstance(timeout, urllib3.Timeout):
        return _timeout(_seconds(timeout.connect_timeout), _seconds(timeout.read_timeout))
    else:
        connect = read = timeout
    try:
        return _validated(connect, read)
    except TypeError:  # unhashable: validate without the cache
        return _validated.__wrapped__(connect, read)


class _OriginalResponse:
    """What ``raw._original_response`` is for stock: enough of ``http.client.HTTPResponse`` for cookie
    extraction (``.msg``, an ``HTTPMessage``) and for code that peeks at status and version."""

    __slots__ = ("_closed", "msg", "reason", "status", "version")

    def __init__(self, msg: http.client.HTTPMessage, status: int, reason: str, version: int) -> None:
        self.msg = msg
        self.status = status
        self.reason = reason
        self.version = version
        self._closed = False

    def info(self) -> http.client.HTTPMessage:
        return self.msg

    def getheaders(self) -> list[tuple[str, str]]:
        return list(self.msg.items())

    def isclosed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True


class _BodyFile(io.RawIOBase):
    """A streaming response body as the file object under urllib3's ``HTTPResponse``.

    Engine errors surface as the urllib3 exceptions a socket read would give, so requests maps them
    (``ChunkedEncodingError``, ``ConnectionError``, ``SSLError``) exactly as for its own adapter.
    """

    def __init__(self, response: Response, on_end: Callable[[], None] | None = None) -> None:
        super().__init__()
        self._response = response
        self._chunks: Iterator[bytes] = response.iter_bytes()
        self._rest = b""
        self._done = False
        #: Called once when the body ends (read to its end, failed or closed; also from ``__del__``).
        self._on_end = on_end

    def _ended(self) -> None:
        on_end, self._on_end = self._on_end, None
        if on_end is not None:
            on_end()

    def readable(self) -> bool:
        return True

    def _next(self) -> bytes:
        try:
            return next(self._chunks)
        except StopIteration:
            self._done = True
            self._ended()
            return b""
        except Exception as exc:
            self._done = True
            self._ended()
            if is_mapped(exc):
                raise to_urllib3(exc, self._response.url) from exc
            raise

    def read(self, size: int | None = -1) -> bytes:
        if self.closed:
            return b""
        if size is None or size < 0:
            parts = [self._rest]
            self._rest = b""
            while not self._done:
                parts.append(self._next())
            return b"".join(parts)
        data = self._rest or (b"" if self._done else self._next())
        if len(data) > size:
            self._rest = data[size:]
            return data[:size]
        self._rest = b""
        return data

    read1 = read

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def isclosed(self) -> bool:
        return self.closed or (self._done and not self._rest)

    def close(self) -> None:
        if not self.closed:
            self._response.close()
            self._ended()
        super().close()


class _RawResponse(urllib3.HTTPResponse):
    """urllib3's response over our body; ``release_conn()`` ends the transfer (frees the handle)."""

    def release_conn(self) -> None:
        fp = self._fp
        if fp is not None and not fp.closed:
            fp.close()
        super().release_conn()


def _http_message(items: list[tuple[str, str]]) -> http.client.HTTPMessage:
    msg = http.client.HTTPMessage()
    # What ``msg[name] = value`` stores under the compat32 policy http.client uses, in one step.
    msg._headers = items  # type: ignore[attr-defined]
    return msg


_VERSIONS = {"HTTP/1.1": 11, "HTTP/1.0": 10, "HTTP/2": 20, "HTTP/2.0": 20, "HTTP/3": 30}


def _header_dict(groups: dict[str, list[str]]) -> urllib3.HTTPHeaderDict:
    """A urllib3 ``HTTPHeaderDict`` from ``{lower name: [name as sent, value, value...]}``, the layout
    urllib3 (1.26 and 2.x) keeps itself, instead of one ``add()`` per header."""
    headers = urllib3.HTTPHeaderDict()
    headers._container = groups
    return headers


def _raw(response: Response, method: str, url: str, body: io.IOBase, items: list[tuple[str, str]],
         groups: dict[str, list[str]]) -> _RawResponse:
    version = _VERSIONS.get(response.http_version, 11)
    original = _OriginalResponse(_http_message(items), response.status, response.reason, version)
    return _RawResponse(body=body, headers=_header_dict(groups), status=response.status, version=version,
                        version_string=response.http_version, reason=response.reason,
                        preload_content=False, decode_content=False, original_response=original,  # type: ignore[arg-type]
                        request_method=method, request_url=url, enforce_content_length=False)


def _body(body: Any) -> Any:
    """requests' ``PreparedRequest.body`` as an engine body (str is sent as UTF-8, as urllib3 does)."""
    if body is None or isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, (bytearray, memoryview)):
        return bytes(body)
    if hasattr(body, "read"):
        if isinstance(body, io.TextIOBase):
            return (part.encode("utf-8") for part in iter(lambda: body.read(65536), ""))
        return body
    return (part.encode("utf-8") if isinstance(part, str) else bytes(part) for part in body)


def _headers(headers: Any) -> Headers:
    if type(headers) is CaseInsensitiveDict:
        # What PreparedRequest holds: its store already has the (name as given, value) pairs.
        pairs = list(headers._store.values())  # type: ignore[attr-defined, unused-ignore]
        if all(type(name) is str and type(value) is str for name, value in pairs):
            return Headers._from_list(pairs)
    items = []
    for name, value in headers.items():
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        items.append((name, value))
    return Headers._from_list(items)


_IDENTITY = ("", "identity")


def _translate(items: list[tuple[str, str]]) -> tuple[CaseInsensitiveDict[str], dict[str, list[str]]]:
    """One pass over the response headers for both header views requests exposes:
    ``CaseInsensitiveDict(raw.headers)`` as stock builds it (repeats joined with ", ") and the groups
    of ``raw.headers`` (see ``_header_dict``)."""
    store: dict[str, tuple[str, str]] = {}
    groups: dict[str, list[str]] = {}
    for name, value in items:
        key = name.lower()
        group = groups.get(key)
        if group is None:
            groups[key] = [name, value]
            store[key] = (name, value)
        else:
            group.append(value)
            store[key] = (group[0], ", ".join(group[1:]))
    headers: CaseInsensitiveDict[str] = CaseInsensitiveDict()
    headers._store = store  # type: ignore[attr-defined, assignment, unused-ignore]
    return headers, groups


def _case_insensitive(items: list[tuple[str, str]]) -> CaseInsensitiveDict[str]:
    """``CaseInsensitiveDict(raw.headers)`` as stock builds it (repeats joined with ", ")."""
    return _translate(items)[0]


def _check_tls_files(url: str, verify: Any, cert: Any) -> None:
    """Stock's ``HTTPAdapter.cert_verify`` checks, with its messages: a CA path or client certificate
    file that does not exist is an ``OSError`` before any connection (for https URLs)."""
    if not url.lower().startswith("https"):
        return
    if verify and not isinstance(verify, bool) and not os.path.exists(verify):
        raise OSError(f"Could not find a suitable TLS CA certificate bundle, invalid path: {verify}")
    if cert:
        cert_file, key_file = (cert[0], cert[1]) if isinstance(cert, (list, tuple)) else (cert, None)
        if cert_file and not os.path.exists(cert_file):
            raise OSError(f"Could not find the TLS certificate file, invalid path: {cert_file}")
        if key_file and not os.path.exists(key_file):
            raise OSError(f"Could not find the TLS key file, invalid path: {key_file}")


class RequestsAdapter(BaseAdapter):
    """A ``requests`` adapter that sends every request through one ocitransport ``Client``.

    ``RequestsAdapter(*, client=None, registry_auth=False, keychain=None, auth=None, registries=None,
    retry=True, **client_options)``: ``client_options`` (``max_connections``,
    ``max_connections_per_host``, ``http2``, ``user_agent``) go to the clients the adapter creates.
    """

    __attrs__: ClassVar[list[str]] = []

    def __init__(self, *, client: Client | None = None, registry_auth: bool = False,
                 keychain: Keychain | None = None, auth: AuthSource | None = None,
                 registries: Collection[str] | None = None, retry: bool = True,
                 **client_options: Any) -> None:
        super().__init__()
        self._shared = client
        self._options = client_options
        self._clients: dict[_ClientKey, Client] = {}
        #: The (key, client) of the last request: sessions send the same settings every time.
        self._last: tuple[_ClientKey, Client] | None = None
        self._lock = threading.Lock()
        #: Open streamed bodies per adapter-owned client, and the clients ``close()`` left open for them.
        self._streams: dict[Client, int] = {}
        self._closing: set[Client] = set()
        #: What ``__getstate__`` keeps: the settings, not the live clients (stock pickles its settings).
        self._config: dict[str, Any] = dict(registry_auth=registry_auth, keychain=keychain, auth=auth,
                                            registries=registries, retry=retry, **client_options)
        self.router: RegistryRouter | None = make_router(registry_auth, keychain, auth, registries, retry)

    def client_for(self, verify: Any = True, cert: Any = None, proxy: str = "") -> Client:
        """The client serving these TLS and proxy settings (created on first use)."""
        if isinstance(cert, (list, tuple)):
            cert = tuple(os.fspath(c) for c in cert)
        elif cert is not None:
            cert = os.fspath(cert)
        if not isinstance(verify, bool):
            verify = os.fspath(verify)  # the engine takes str paths only
        key = (verify, cert, proxy)
        last = self._last
        if last is not None and last[0] == key:
            return last[1]
        found = self._clients.get(key)
        if found is not None:
            return found
        if self._shared is not None and verify is True and cert is None and not proxy:
            self._last = (key, self._shared)
            return self._shared
        with self._lock:
            found = self._clients.get(key)
            if found is None:
                found = Client(verify=verify, cert=cert, proxy=proxy, follow_redirects=False,
                               **self._options)
                self._clients[key] = found
        self._last = (key, found)
        return found

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None,
             verify: bool | str = True, cert: Any = None,
             proxies: Mapping[str, str] | None = None) -> requests.Response:
        """Send a ``PreparedRequest`` and return a ``requests.Response`` (see the module docstring)."""
        url = request.url
        assert url is not None
        proxy = (select_proxy(url, proxies) or "") if proxies else ""
        if proxy:
            # As stock's proxy_manager_for: a scheme-less proxy is http, and one without a host is an
            # error of its own rather than a host name to resolve.
            proxy = prepend_scheme_if_needed(proxy, "http")  # type: ignore[no-untyped-call]
            if not parse_url(proxy).host:
                raise requests.exceptions.InvalidProxyURL(
                    "Please check proxy URL. It is malformed and could be missing the host.")
        _check_tls_files(url, verify, cert)
        try:
            client = self.client_for(verify, cert, proxy)
            ours = Request(request.method or "GET", url, _headers(request.headers), _body(request.body),
                           timeout=map_timeout(timeout), stream=stream)
            rt: RoundTripper = client
            if self.router is not None:
                rt = self.router.route(client, ours)
            response = rt.round_trip(ours)
        except Exception as exc:
            if is_mapped(exc):
                raise to_requests(exc, request, via_proxy=bool(proxy)) from exc
            raise
        return self._build(request, response, client)

    def build_response(self, req: requests.PreparedRequest, resp: Response) -> requests.Response:
        """A ``requests.Response`` as ``HTTPAdapter.build_response`` makes one, over our response."""
        return self._build(req, resp, None)

    def _stream_opened(self, client: Client | None) -> Callable[[], None] | None:
        """Count a streamed body of ``client``; the callback uncounts it (see ``close``)."""
        if client is None or client is self._shared:
            return None
        with self._lock:
            self._streams[client] = self._streams.get(client, 0) + 1
        return functools.partial(self._stream_ended, client)

    def _stream_ended(self, client: Client) -> None:
        with self._lock:
            left = self._streams.get(client, 0) - 1
            if left > 0:
                self._streams[client] = left
                return
            self._streams.pop(client, None)
            if client not in self._closing:
                return
            self._closing.discard(client)
        self._close_client(client)

    def _close_client(self, client: Client) -> None:
        if self.router is not None:
            self.router.forget(client)
        client.close()

    def _build(self, req: requests.PreparedRequest, resp: Response, client: Client | None) -> requests.Response:
        r = requests.Response()
        url = req.url or ""
        method = req.method or "GET"
        items = resp.headers.items()
        headers, groups = _translate(items)
        if resp.is_streaming:
            raw = _raw(resp, method, url, _BodyFile(resp, self._stream_opened(client)), items, groups)
        else:
            content = resp.content
            fp = io.BytesIO(content)
            if (headers.get("content-encoding") or "").strip().lower() in _IDENTITY:
                # Nothing to decode: hand requests the body we already hold (Session skips its read).
                # ``raw`` is then at its end, as stock's is once ``content`` has read it.
                r._content = content
                r._content_consumed = True  # type: ignore[attr-defined, unused-ignore]
                fp.seek(0, io.SEEK_END)
            raw = _raw(resp, method, url, fp, items, groups)
        r.status_code = resp.status
        r.headers = headers
        r.encoding = get_encoding_from_headers(headers)
        r.raw = raw
        r.reason = resp.reason
        r.url = url
        if "set-cookie" in groups or "set-cookie2" in groups:
            # Without these headers the jar has nothing to take (stock's call would be a no-op).
            extract_cookies_to_jar(r.cookies, req, raw)  # type: ignore[no-untyped-call, unused-ignore]
        r.request = req
        r.connection = self  # type: ignore[assignment]
        return r

    def close(self) -> None:
        """Close the clients this adapter created (a shared ``client=`` stays open). Idempotent.

        As with ``HTTPAdapter`` (whose ``close()`` clears its pools), the adapter stays usable: the
        next request opens a new client. ``Session.close()`` calls this for every mounted adapter, so
        an adapter shared by several sessions is best closed by its owner, after the sessions.

        A client with streamed bodies still open is closed when the last of them ends (read to the end,
        closed, or collected), so ``with Session() as s: r = s.get(u, stream=True)`` can still read
        ``r`` after the block, as with stock (whose connections outlive the pool's ``clear()``).
        """
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
            self._last = None
            busy = {c for c in clients if self._streams.get(c)}
            self._closing.update(busy)
        for client in clients:
            if client not in busy:
                self._close_client(client)

    def __getstate__(self) -> dict[str, Any]:
        """The adapter's settings (as stock pickles its own): an unpickled adapter opens new clients.
        A shared ``client=`` is not carried over (it owns live curl handles)."""
        return dict(self._config)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]


class installed:
    """Mount ``adapter`` on every ``requests.Session`` while the block runs, including the throwaway
    sessions of ``requests.get()``, for libraries that keep their sessions private (python-dxf).

    ``with installed(RequestsAdapter(registry_auth=True)) as adapter: ...`` The adapter is closed on
    exit when this context created it (``installed()`` with no argument).
    """

    _lock = threading.Lock()

    def __init__(self, adapter: RequestsAdapter | None = None, **options: Any) -> None:
        self._own = adapter is None
        self.adapter = adapter if adapter is not None else RequestsAdapter(**options)
        self._saved: Any = None

    def __enter__(self) -> RequestsAdapter:
        adapter = self.adapter
        original = requests.Session.get_adapter

        def get_adapter(session: requests.Session, url: str) -> BaseAdapter:
            if url.lower().startswith(("http://", "https://")):
                return adapter
            return original(session, url)

        with self._lock:
            self._saved = original
            requests.Session.get_adapter = get_adapter  # type: ignore[method-assign,assignment]
        return adapter

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            requests.Session.get_adapter = self._saved  # type: ignore[method-assign]
        if self._own:
            self.adapter.close()
