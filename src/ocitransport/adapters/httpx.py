"""``HTTPXTransport`` and ``AsyncHTTPXTransport``: httpx transports on the ocitransport engine.

    client = httpx.Client(transport=HTTPXTransport())
    client = httpx.AsyncClient(transport=AsyncHTTPXTransport(registry_auth=True))

httpx keeps what it does: redirects, cookies, auth, content decoding (the body is handed over as
received, so gzip is decoded once, by httpx). The transport maps ``request.extensions["timeout"]``:
``connect`` to the connect timeout, ``read`` (or ``write`` when ``read`` is None) to the engine's stall
limit (whole seconds in libcurl: 0.5 acts as 1), ``pool`` to the wait for a connection slot. A ``write``
limit shorter than that is watched by the transport itself: an upload that takes no bytes for that long
is a ``WriteTimeout`` (checked every ``WRITE_CHECK`` seconds). TLS and
proxy are fixed per transport, as for ``httpx.HTTPTransport``: ``verify`` (bool, CA file/dir path, or an
``ssl.SSLContext``: its CA certificates and ``verify_mode`` are used; libcurl cannot take the context
itself, so a client certificate loaded into it is not seen: pass ``cert=`` as well), ``cert`` (path or
``(cert, key)``) and ``proxy`` (a URL; ``None``: no proxy, environment ignored, as httpx does for an
explicit transport). ``verify=True`` trusts the system CA store.

The ``trace`` request extension is called with httpcore's event names for the request and response
heads (``http11.`` or ``http2.`` ``send_request_headers``, ``send_request_body``,
``receive_response_headers``), once the head is in, after ``connection.connect_tcp`` ones when the
exchange opened a connection and its body arrived with the head (libcurl owns the connections; no
``start_tls`` events). ``AsyncHTTPXTransport`` runs on asyncio; under
trio (anyio's trio backend) each transfer and body read waits in a worker thread.

Response bodies stream (httpx reads them for non-streaming calls), with back-pressure; a small body that
had fully arrived with its head (up to ``ARRIVED_BODY_MAX``) is handed over as bytes, the engine's
objects already released. Request bodies stream from ``request.stream``. Registry mode: see ``ocitransport.adapters``.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import functools
import io
import os
import ssl
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterator
from typing import TYPE_CHECKING, Any

import httpx

from .._redaction import redact_url
from ..client import AsyncClient, Client
from ..engine import BodyStream
from ..messages import Headers, Request, Response, Timeout
from . import AuthSource, RegistryRouter, make_router
from ._errors import is_mapped, to_httpx

if TYPE_CHECKING:
    from ..authn import Keychain
    from ..roundtrip import RoundTripper

__all__ = ["AsyncHTTPXTransport", "HTTPXTransport"]

_BODYLESS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE", "TRACE"})


@functools.lru_cache(maxsize=256)
def _timeout(connect: float | None, stall: float | None, pool: float | None) -> Timeout:
    # httpx has no minimum rate: its read timeout is the longest gap between bytes, our stall limit.
    return Timeout(connect=connect, total=None, stall=stall, pool=pool, min_rate=None)


def map_timeout(extensions: dict[str, Any]) -> Timeout:
    """httpx's per-request timeout dict (``connect``/``read``/``write``/``pool``) as an engine Timeout."""
    t = extensions.get("timeout")
    if not t:
        return _timeout(None, None, None)
    read = t.get("read")
    return _timeout(t.get("connect"), read if read is not None else t.get("write"), t.get("pool"))


#: How often a request whose write timeout is shorter than its stall limit checks its upload (seconds).
WRITE_CHECK = 0.05


class _UploadClock:
    """When the engine last took request-body bytes, and whether it has taken them all: httpx's write
    timeout is how long the upload may make no progress (a send that would block, for httpcore)."""

    __slots__ = ("busy", "done", "last")

    def __init__(self) -> None:
        self.last = time.monotonic()
        self.done = False
        self.busy = False  # the caller's body source is producing its next chunk: not a stalled send

    def stalled(self, limit: float) -> bool:
        return not self.done and not self.busy and time.monotonic() - self.last >= limit


class _ClockedBytes(io.BytesIO):
    """A bytes body (seekable, so it is re-sent as bytes would be) that moves its clock when read."""

    def __init__(self, data: bytes, clock: _UploadClock) -> None:
        super().__init__(data)
        self._clock = clock
        self._size = len(data)

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self._clock.last = time.monotonic()
        self._clock.done = self.tell() >= self._size
        return data

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._clock.done = False
        return super().seek(offset, whence)


def _clocked_iter(chunks: Iterator[bytes], clock: _UploadClock) -> Iterator[bytes]:
    source = iter(chunks)
    while True:
        clock.busy = True
        try:
            chunk = next(source)
        except StopIteration:
            clock.done = True
            return
        finally:
            clock.busy = False
        clock.last = time.monotonic()
        yield chunk
        clock.last = time.monotonic()  # the engine asks for more: what it had went out


async def _clocked_aiter(chunks: AsyncIterator[bytes], clock: _UploadClock) -> AsyncIterator[bytes]:
    source = chunks.__aiter__()
    while True:
        clock.busy = True
        try:
            chunk = await source.__anext__()
        except StopAsyncIteration:
            clock.done = True
            return
        finally:
            clock.busy = False
        clock.last = time.monotonic()
        yield chunk
        clock.last = time.monotonic()


def _write_limit(request: httpx.Request, body: Any) -> float | None:
    """httpx's write timeout when it needs watching: a body to send, and a limit shorter than the
    engine's stall limit for this request (the read timeout), which would otherwise apply to it."""
    if body is None:
        return None
    t = request.extensions.get("timeout") or {}
    write, read = t.get("write"), t.get("read")
    if write is None or (read is not None and read <= write):
        return None
    return float(write)


def _clocked(body: Any, clock: _UploadClock) -> Any:
    if isinstance(body, bytes):
        return _ClockedBytes(body, clock)
    if hasattr(body, "__aiter__"):
        return _clocked_aiter(body, clock)
    return _clocked_iter(body, clock)


def _write_timeout(request: httpx.Request, limit: float) -> httpx.WriteTimeout:
    return httpx.WriteTimeout(f"{request.method} {redact_url(str(request.url))}: no request body bytes "
                              f"sent for {limit:g} s (write timeout)", request=request)


def _headers(request: httpx.Request) -> Headers:
    return Headers._from_list([(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw])


def _probe_headers_layout() -> bool:
    """Whether ``httpx.Headers`` keeps ``_list`` as ``(raw name, lower name, value)`` byte triples (httpx
    0.18 to 0.28 do); then response headers are handed over in that layout, without httpx normalizing
    every pair again. Anything else falls back to the public constructor."""
    try:
        probe = httpx.Headers([(b"X-A", b"1")])
        return probe._list == [(b"X-A", b"x-a", b"1")] and probe.encoding == "ascii"
    except Exception:  # noqa: BLE001 - any surprise means: use the public constructor
        return False


_HEADERS_LAYOUT = _probe_headers_layout()


def _httpx_headers(items: list[tuple[str, str]]) -> httpx.Headers:
    """Our response headers as ``httpx.Headers`` (names and values as received, latin-1)."""
    if not _HEADERS_LAYOUT:
        return httpx.Headers([(k.encode("latin-1"), v.encode("latin-1")) for k, v in items])
    triples = []
    for k, v in items:
        raw = k.encode("latin-1")
        triples.append((raw, raw.lower(), v.encode("latin-1")))
    headers = httpx.Headers()
    headers._list = triples
    return headers


def _fixed_body(request: httpx.Request) -> bytes | None:
    """The body when httpx already holds it in memory; raises ``RequestNotRead`` for a stream."""
    content = request.content
    if not content and request.method in _BODYLESS:
        return None
    return content


#: A streamed body that had fully arrived with its head (a small response, the common case) and is
#: at most this long is handed to httpx as bytes: no stream wrappers, no engine calls per chunk.
ARRIVED_BODY_MAX = 64 << 10


def _ours(request: httpx.Request, body: Any) -> Request:
    """Our request for httpx's (both faces): streamed, so httpx reads and decodes the body itself."""
    # A traced request asks for libcurl's timings: they say whether a new connection was opened.
    extensions = {"timing": True} if "trace" in request.extensions else None
    return Request(request.method, str(request.url), _headers(request), body,
                   timeout=map_timeout(request.extensions), stream=True, extensions=extensions)


def _arrived(resp: Response) -> bytes | None:
    """The whole body if it is already here (nothing left to wait for, no error), else ``None``."""
    stream = resp._stream
    if isinstance(stream, BodyStream) and stream.complete and stream.bytes_buffered <= ARRIVED_BODY_MAX:
        return resp.read()  # joins what is buffered; closes the stream (the transfer is over)
    return None


def _response(resp: Response, stream: httpx.SyncByteStream | httpx.AsyncByteStream) -> httpx.Response:
    return httpx.Response(
        resp.status,
        headers=_httpx_headers(resp.headers._items),
        stream=stream,
        extensions={"http_version": resp.http_version.encode("ascii"),
                    "reason_phrase": resp.reason.encode("latin-1")},
    )


def _verify_from_context(context: ssl.SSLContext) -> bool | str:
    """What libcurl can take of an ``ssl.SSLContext`` (httpx 0.28's ``verify=``): ``False`` when it does
    not verify, else a PEM file of the CA certificates loaded into it (``load_verify_locations`` with a
    file or data, as httpx does with certifi's bundle), or ``True`` (the system store) when it holds
    none it can list (``load_default_certs``, a CA directory)."""
    if context.verify_mode == ssl.CERT_NONE:
        return False
    cas = context.get_ca_certs(binary_form=True)
    if not cas:
        return True
    with tempfile.NamedTemporaryFile("w", prefix="ocitransport-ca-", suffix=".pem", delete=False) as f:
        f.write("".join(ssl.DER_cert_to_PEM_cert(der) for der in cas))
    atexit.register(_unlink, f.name)
    return f.name


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _refused_url(request: httpx.Request) -> BaseException | None:
    """What httpcore refuses before connecting, with its words: a scheme other than http(s)
    (``UnsupportedProtocol``); and a port beyond 65535, which httpcore dials and fails to connect to
    while libcurl refuses the URL: ``ConnectError`` on both transports, as stock."""
    scheme = request.url.scheme
    if scheme == "":
        return httpx.UnsupportedProtocol("Request URL is missing an 'http://' or 'https://' protocol.",
                                         request=request)
    if scheme not in ("http", "https"):
        return httpx.UnsupportedProtocol(f"Request URL has an unsupported protocol '{scheme}://'.",
                                         request=request)
    port = request.url.port
    if port is None or port <= 65535:
        return None
    return httpx.ConnectError(f"{request.method} {redact_url(str(request.url))}: port {port} is out of "
                              "range (0-65535)", request=request)


def _trace_events(request: httpx.Request, resp: Response) -> list[tuple[str, dict[str, Any]]]:
    """httpcore's trace events for one exchange (see the module docstring), in order."""
    import httpcore

    version = resp.http_version.encode("ascii")
    http2 = version.startswith(b"HTTP/2")
    prefix = "http2" if http2 else "http11"
    core = httpcore.Request(request.method, str(request.url), headers=request.headers.raw,
                            extensions=request.extensions)
    info: dict[str, Any] = {"request": core}
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in resp.headers.items()]
    received: Any = ((resp.status, headers) if http2 else
                     (version, resp.status, resp.reason.encode("latin-1"), headers))
    events: list[tuple[str, dict[str, Any]]] = []
    timing = resp.extensions.get("timing")
    if timing and timing.get("new_connections"):
        # Known once the transfer is over (a body that arrived with its head): a stream still
        # running has no connection events.
        url = request.url
        port = url.port or (443 if url.scheme == "https" else 80)
        connect = {"host": url.host, "port": port, "local_address": None, "timeout": None,
                   "socket_options": None}
        events += [("connection.connect_tcp.started", connect),
                   ("connection.connect_tcp.complete", {**connect, "return_value": _TraceStream(url.host, port)})]
    for step in ("send_request_headers", "send_request_body"):
        events += [(f"{prefix}.{step}.started", info), (f"{prefix}.{step}.complete", {**info, "return_value": None})]
    events += [(f"{prefix}.receive_response_headers.started", info),
               (f"{prefix}.receive_response_headers.complete", {**info, "return_value": received})]
    return events


class _TraceStream:
    """What a ``connection.connect_tcp.complete`` event's ``return_value`` offers (``get_extra_info``)."""

    def __init__(self, host: str, port: int) -> None:
        self._addr = (host, port)

    def get_extra_info(self, info: str) -> Any:
        return self._addr if info == "server_addr" else None


def _trace(request: httpx.Request, resp: Response) -> None:
    trace = request.extensions.get("trace")
    if trace is not None:
        for name, info in _trace_events(request, resp):
            trace(name, info)


async def _atrace(request: httpx.Request, resp: Response) -> None:
    trace = request.extensions.get("trace")
    if trace is not None:
        for name, info in _trace_events(request, resp):
            await trace(name, info)


class _SyncStream(httpx.SyncByteStream):
    """The response body as httpx iterates it; engine errors become httpx errors mid-stream."""

    def __init__(self, response: Response, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._response.iter_bytes()
        except Exception as exc:
            if is_mapped(exc):
                raise to_httpx(exc, self._request) from exc
            raise

    def close(self) -> None:
        self._response.close()
        # httpx keeps its response (and this stream) in a reference cycle until the cyclic GC runs:
        # let go of ours, and of the engine objects behind it, now.
        self._response = _CLOSED


class _AsyncStream(httpx.AsyncByteStream):
    def __init__(self, response: Response, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_bytes():
                yield chunk
        except Exception as exc:
            if is_mapped(exc):
                raise to_httpx(exc, self._request) from exc
            raise

    async def aclose(self) -> None:
        self._response.close()
        self._response = _CLOSED


async def _in_worker(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` on a worker thread of the running (non-asyncio) event loop: trio's own threads
    under trio (whatever anyio version is installed), anyio's otherwise."""
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            trio.lowlevel.current_trio_token()
        except RuntimeError:
            pass
        else:
            return await trio.to_thread.run_sync(fn, *args)
    import anyio.to_thread

    return await anyio.to_thread.run_sync(fn, *args)


class _ThreadStream(_AsyncStream):
    """A response body read on anyio worker threads (``AsyncHTTPXTransport`` off asyncio)."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunks = self._response.iter_bytes()
        try:
            while True:
                chunk = await _in_worker(next, chunks, None)
                if chunk is None:
                    return
                yield chunk
        except Exception as exc:
            if is_mapped(exc):
                raise to_httpx(exc, self._request) from exc
            raise


_CLOSED = Response(0)  # what a closed stream wrapper holds instead of the engine's response


class _Options:
    """What both transports take: a shared client or the options for their own, and registry mode."""

    def _setup(self, client: Client | AsyncClient | None, verify: Any, cert: Any, proxy: str | None,
               registry_auth: bool, keychain: Keychain | None, auth: AuthSource | None,
               registries: Collection[str] | None, retry: bool, options: dict[str, Any],
               kind: type[Client | AsyncClient]) -> None:
        self._own = client is None
        if client is None:
            if isinstance(verify, ssl.SSLContext):
                verify = _verify_from_context(verify)
            if not isinstance(verify, bool):
                verify = os.fspath(verify)  # the engine takes str paths only
            if cert is not None:
                cert = tuple(os.fspath(c) for c in cert) if isinstance(cert, (tuple, list)) else os.fspath(cert)
            client = kind(verify=verify, cert=cert, proxy="" if proxy is None else str(proxy),
                          follow_redirects=False, **options)
        self.client: Client | AsyncClient = client
        self.router: RegistryRouter | None = make_router(registry_auth, keychain, auth, registries, retry)

    def _close(self) -> None:
        if self.router is not None:
            self.router.forget(self.client)
        if self._own:
            self.client.close()


class HTTPXTransport(_Options, httpx.BaseTransport):
    """A sync httpx transport: ``httpx.Client(transport=HTTPXTransport(...))``.

    ``HTTPXTransport(*, client=None, verify=True, cert=None, proxy=None, registry_auth=False,
    keychain=None, auth=None, registries=None, retry=True, **client_options)``; ``client_options``
    (``max_connections``, ``max_connections_per_host``, ``http2``, ``user_agent``) go to the client it
    creates. A shared ``client=`` is used as configured (its TLS and proxy settings) and not closed.
    """

    def __init__(self, *, client: Client | None = None, verify: bool | str = True,
                 cert: str | tuple[str, str] | None = None, proxy: str | httpx.URL | None = None,
                 registry_auth: bool = False, keychain: Keychain | None = None,
                 auth: AuthSource | None = None, registries: Collection[str] | None = None,
                 retry: bool = True, **client_options: Any) -> None:
        self._setup(client, verify, cert, proxy, registry_auth, keychain, auth, registries, retry,  # type: ignore[arg-type]
                    client_options, Client)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        bad_port = _refused_url(request)
        if bad_port is not None:
            raise bad_port
        try:
            body: Any = _fixed_body(request)
        except httpx.RequestNotRead:
            body = iter(request.stream)  # type: ignore[arg-type]
        client = self.client
        write = _write_limit(request, body) if self.router is None and isinstance(client, Client) else None
        try:
            if write is not None and isinstance(client, Client):
                resp = self._watched(client, request, body, write)
            else:
                ours = _ours(request, body)
                rt: RoundTripper = self.client
                if self.router is not None:
                    rt = self.router.route(self.client, ours)
                resp = rt.round_trip(ours)
            body = _arrived(resp)
        except Exception as exc:
            if is_mapped(exc):
                raise to_httpx(exc, request) from exc
            raise
        _trace(request, resp)
        if body is not None:
            return _response(resp, httpx.ByteStream(body))
        return _response(resp, _SyncStream(resp, request))

    @staticmethod
    def _watched(client: Client, request: httpx.Request, body: Any, limit: float) -> Response:
        """The exchange with httpx's write timeout watched apart from the read one (the engine has one
        stall limit per transfer): the upload may make no progress for ``limit`` seconds."""
        clock = _UploadClock()
        future = client.submit(_ours(request, _clocked(body, clock)))
        while True:
            try:
                response: Response = future.result(timeout=min(WRITE_CHECK, limit))
                return response
            except concurrent.futures.TimeoutError:
                if clock.stalled(limit):
                    future.cancel()
                    raise _write_timeout(request, limit) from None

    def close(self) -> None:
        """Close the client this transport created (a shared one stays open). Idempotent."""
        self._close()


class AsyncHTTPXTransport(_Options, httpx.AsyncBaseTransport):
    """An asyncio httpx transport: ``httpx.AsyncClient(transport=AsyncHTTPXTransport(...))``.

    Same arguments as :class:`HTTPXTransport`; ``client=`` may be a ``Client`` or an ``AsyncClient``
    (both have the awaitable face). Transfers run on the engine's thread; the caller's event loop is
    never blocked. Under trio (no asyncio loop running) each transfer waits in an anyio worker thread.
    """

    def __init__(self, *, client: Client | AsyncClient | None = None, verify: bool | str = True,
                 cert: str | tuple[str, str] | None = None, proxy: str | httpx.URL | None = None,
                 registry_auth: bool = False, keychain: Keychain | None = None,
                 auth: AuthSource | None = None, registries: Collection[str] | None = None,
                 retry: bool = True, **client_options: Any) -> None:
        self._setup(client, verify, cert, proxy, registry_auth, keychain, auth, registries, retry,  # type: ignore[arg-type]
                    client_options, AsyncClient)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        bad_port = _refused_url(request)
        if bad_port is not None:
            raise bad_port
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # not asyncio: trio, through anyio
            return await self._in_thread(request)
        try:
            body: Any = _fixed_body(request)
        except httpx.RequestNotRead:
            body = _aiter(request.stream)  # type: ignore[arg-type]
        write = _write_limit(request, body) if self.router is None else None
        try:
            if write is not None:
                resp = await self._watched(request, body, write)
            else:
                ours = _ours(request, body)
                rt: RoundTripper = self.client
                if self.router is not None:
                    rt = await self.router.route_async(self.client, ours)
                resp = await rt.round_trip_async(ours)
            body = _arrived(resp)
        except Exception as exc:
            if is_mapped(exc):
                raise to_httpx(exc, request) from exc
            raise
        await _atrace(request, resp)
        if body is not None:
            return _response(resp, httpx.ByteStream(body))
        return _response(resp, _AsyncStream(resp, request))

    async def _watched(self, request: httpx.Request, body: Any, limit: float) -> Response:
        """``HTTPXTransport._watched`` on the event loop (a cancelled wait cancels the transfer)."""
        clock = _UploadClock()
        task = asyncio.ensure_future(self.client.round_trip_async(_ours(request, _clocked(body, clock))))
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=min(WRITE_CHECK, limit))
                if done:
                    return task.result()
                if clock.stalled(limit):
                    raise _write_timeout(request, limit)
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def _in_thread(self, request: httpx.Request) -> httpx.Response:
        """The exchange on a worker thread (anyio's, so any backend it runs on): the sync face of the
        same client. A streamed request body is read first (it is an async iterator of this loop)."""
        try:
            body: Any = _fixed_body(request)
        except httpx.RequestNotRead:
            body = b"".join([chunk async for chunk in request.stream])  # type: ignore[union-attr]

        def send() -> tuple[Response, bytes | None]:
            ours = _ours(request, body)
            rt: RoundTripper = self.client
            if self.router is not None:
                rt = self.router.route(self.client, ours)
            resp = rt.round_trip(ours)
            return resp, _arrived(resp)

        try:
            resp, arrived = await _in_worker(send)
        except Exception as exc:
            if is_mapped(exc):
                raise to_httpx(exc, request) from exc
            raise
        await _atrace(request, resp)
        if arrived is not None:
            return _response(resp, httpx.ByteStream(arrived))
        return _response(resp, _ThreadStream(resp, request))

    async def aclose(self) -> None:
        """Close the client this transport created (a shared one stays open). Idempotent."""
        self._close()


async def _aiter(stream: httpx.AsyncByteStream) -> AsyncIterator[bytes]:
    async for chunk in stream:
        yield chunk
