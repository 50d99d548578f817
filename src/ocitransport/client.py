"""``Client`` and ``AsyncClient``: the public faces of one engine (one CurlMulti per client).

Both are ``RoundTripper``s: ``round_trip(request)`` sends exactly one request (no redirects), which is
what the registry layers wrap. ``request()`` and its shorthands follow redirects through the
``Redirects`` layer (one generator for both faces) unless told not to.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

from ._tokens import TokenCache
from .engine import Engine, Group
from .messages import DEFAULT_TIMEOUT, Body, HeaderSource, Request, Response, Timeout
from .redirects import REDIRECT_STATUSES, Redirects
from .roundtrip import RoundTripper, drive_async, drive_future, drive_sync

__all__ = ["AsyncClient", "Client"]


class _Base(RoundTripper):
    def __init__(
        self,
        *,
        max_connections: int = 128,
        max_connections_per_host: int = 16,
        timeout: Timeout = DEFAULT_TIMEOUT,
        verify: bool | str = True,
        cert: str | tuple[str, str] | None = None,
        proxy: str | None = None,
        http2: bool = True,
        user_agent: str | None = None,
        follow_redirects: bool = True,
        max_redirects: int = 10,
        redirect_check: Callable[[str, str], None] | None = None,
    ) -> None:
        self._engine = Engine(max_connections=max_connections,
                              max_connections_per_host=max_connections_per_host, timeout=timeout,
                              verify=verify, cert=cert, proxy=proxy, http2=http2, user_agent=user_agent)
        self.follow_redirects = follow_redirects
        self._redirects = Redirects(self._engine, max_redirects=max_redirects, check=redirect_check)
        self._token_cache = TokenCache()

    @property
    def engine(self) -> Engine:
        """The engine (one CurlMulti) this client drives."""
        return self._engine

    @property
    def token_cache(self) -> TokenCache:
        """The bearer tokens of this client, shared by every transport built on it (``transport.new``)."""
        return self._token_cache

    @property
    def timeout(self) -> Timeout:
        return self._engine.timeout

    @property
    def closed(self) -> bool:
        return self._engine.closed

    def round_trip(self, request: Request) -> Response:
        """Send exactly one request (no redirects); blocks, driving the engine while it waits."""
        return self._engine.round_trip(request)

    async def round_trip_async(self, request: Request) -> Response:
        """Send exactly one request (no redirects) without blocking the running event loop."""
        return await self._engine.round_trip_async(request)

    def _follow(self, follow_redirects: bool | None) -> bool:
        return self.follow_redirects if follow_redirects is None else follow_redirects


class Client(_Base):
    """A thread-safe HTTP client on one pycurl multi handle.

    ``Client(*, max_connections=128, max_connections_per_host=16, timeout=Timeout(), verify=True,
    cert=None, proxy=None, http2=True, user_agent=None, follow_redirects=True, max_redirects=10,
    redirect_check=None)``

    * ``verify``: ``True`` (system CAs), ``False`` (no verification: insecure registries) or a CA
      file or directory path. ``cert``: a PEM path holding cert and key, or ``(cert, key)``.
    * ``proxy``: an explicit proxy URL; by default libcurl honours ``http_proxy``/``https_proxy``/
      ``no_proxy``; ``""`` turns the environment off.
    * ``redirect_check(from_url, to_url)`` runs before every redirect hop and may raise.

    The calling thread drives the transfers while it waits (no thread per request); a single
    background thread serves futures when nobody waits. Use it as a context manager or ``close()`` it.
    """

    def request(self, method: str, url: str, *, headers: HeaderSource = None, body: Body = None,
                timeout: Timeout | None = None, stream: bool = False, follow_redirects: bool | None = None,
                extensions: dict[str, Any] | None = None) -> Response:
        """Send a request and return its response (body read unless ``stream=True``).

        ``extensions``: ``"sha256": True`` puts the body's hex digest in ``response.extensions["sha256"]``;
        ``"sha256_upload": True`` that of the sent body in ``["sha256_upload"]``; ``"sink"``: a binary
        file or callable that receives the body instead of ``response.content``; ``"timing": True``
        puts libcurl's timings and ``new_connections`` in ``["timing"]``.
        """
        return self.send(Request(method, url, headers, body, timeout=timeout, stream=stream,
                                 extensions=extensions), follow_redirects=follow_redirects)

    def send(self, request: Request, *, follow_redirects: bool | None = None) -> Response:
        """Send a prepared ``Request`` (following redirects unless told otherwise)."""
        engine = self._engine
        response = engine.round_trip(request)
        if response.status in REDIRECT_STATUSES and self._follow(follow_redirects):
            return drive_sync(self._redirects.resume(request, response), engine)
        return response

    def get(self, url: str, **kwargs: Any) -> Response:
        return self.request("GET", url, **kwargs)

    def head(self, url: str, **kwargs: Any) -> Response:
        return self.request("HEAD", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> Response:
        return self.request("PUT", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> Response:
        return self.request("POST", url, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> Response:
        return self.request("PATCH", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> Response:
        return self.request("DELETE", url, **kwargs)

    @contextlib.contextmanager
    def stream(self, method: str, url: str, **kwargs: Any) -> Iterator[Response]:
        """``with client.stream("GET", url) as response:`` a streaming response, closed on exit."""
        response = self.request(method, url, stream=True, **kwargs)
        try:
            yield response
        finally:
            response.close()

    def submit(self, request_or_method: Request | str, url: str | None = None, *,
               follow_redirects: bool | None = None, **kwargs: Any) -> concurrent.futures.Future[Response]:
        """Start a request and return a ``concurrent.futures.Future`` of its ``Response``.

        Takes a ``Request`` or the arguments of ``request()``. ``future.result()`` drives the engine
        itself if no other thread does; ``future.cancel()`` cancels the transfer (RequestCancelled).
        """
        if isinstance(request_or_method, Request):
            if url is not None or kwargs:
                raise TypeError("submit(request) takes no other request arguments")
            req = request_or_method
        else:
            if url is None:
                raise TypeError("submit(method, url, ...) needs a url")
            req = Request(request_or_method, url, kwargs.pop("headers", None), kwargs.pop("body", None),
                          **kwargs)
        if not self._follow(follow_redirects):
            return self._engine.submit(req)
        return drive_future(self._redirects.handle(req), self._engine)

    def map(self, requests: Iterable[Request], *, concurrency: int = 64, return_exceptions: bool = False,
            follow_redirects: bool | None = None) -> Iterator[Response | BaseException]:
        """Send many requests, at most ``concurrency`` at a time; yield the responses in input order.

        The iterating thread drives the engine (nothing progresses between ``next()`` calls unless
        another thread drives). A failed request raises its exception at its position, after the
        requests still in flight are cancelled; with ``return_exceptions=True`` the exception object
        is yielded in its place instead and the run goes on. Closing the iterator early cancels the
        requests in flight. ``requests`` is consumed lazily.
        """
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        return self._map(requests, concurrency, return_exceptions, self._follow(follow_redirects))

    def _map(self, requests: Iterable[Request], concurrency: int, return_exceptions: bool,
             follow: bool) -> Iterator[Response | BaseException]:
        engine = self._engine
        group = Group(engine)  # woken on every completion, so the window refills before the head is in
        window: collections.deque[concurrent.futures.Future[Response]] = collections.deque()
        source = iter(requests)
        exhausted = False
        handle = self._redirects.handle
        started = 0
        # Results wait in order behind a slow head; cap how many may pile up meanwhile.
        backlog = concurrency * 4
        try:
            while True:
                # Transfers in flight: requests started plus redirect hops, less transfers finished.
                while (not exhausted and started + group.redirects - group.count < concurrency
                       and len(window) < backlog):
                    req = next(source, None)
                    if req is None:
                        exhausted = True
                        break
                    if not isinstance(req, Request):
                        raise TypeError(f"map() takes Request objects, not {type(req).__name__}")
                    window.append(drive_future(handle(req), group) if follow else engine.submit(req, waiter=group))
                    started += 1
                if not window:
                    return
                head = window[0]
                if not head.done():
                    group.ready = False
                    if not head.done():
                        engine.wait(group, None)  # returns on any completion: refill first
                    continue
                window.popleft()
                error = head.exception()
                if error is not None:
                    if not return_exceptions:
                        raise error
                    yield error
                else:
                    yield head.result()
        finally:
            for item in window:
                item.cancel()

    def close(self) -> None:
        """Fail pending requests with ``ClientClosed``, stop the engine. Idempotent."""
        self._engine.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_Base):
    """The asyncio face: the same engine, awaited on the caller's event loop without blocking it.

    Same constructor as ``Client``. Transfers are driven by the engine's thread (or any sync driver);
    results come back to the loop in batches via ``call_soon_threadsafe``.
    """

    async def request(self, method: str, url: str, *, headers: HeaderSource = None, body: Body = None,
                      timeout: Timeout | None = None, stream: bool = False,
                      follow_redirects: bool | None = None,
                      extensions: dict[str, Any] | None = None) -> Response:
        """Send a request; ``body`` may also be an async iterator of bytes (pumped with back-pressure)."""
        return await self.send(Request(method, url, headers, body, timeout=timeout, stream=stream,
                                       extensions=extensions), follow_redirects=follow_redirects)

    async def send(self, request: Request, *, follow_redirects: bool | None = None) -> Response:
        """Send a prepared ``Request`` (following redirects unless told otherwise)."""
        engine = self._engine
        response = await engine.round_trip_async(request)
        if response.status in REDIRECT_STATUSES and self._follow(follow_redirects):
            return await drive_async(self._redirects.resume(request, response), engine)
        return response

    async def get(self, url: str, **kwargs: Any) -> Response:
        return await self.request("GET", url, **kwargs)

    async def head(self, url: str, **kwargs: Any) -> Response:
        return await self.request("HEAD", url, **kwargs)

    async def put(self, url: str, **kwargs: Any) -> Response:
        return await self.request("PUT", url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> Response:
        return await self.request("POST", url, **kwargs)

    async def patch(self, url: str, **kwargs: Any) -> Response:
        return await self.request("PATCH", url, **kwargs)

    async def delete(self, url: str, **kwargs: Any) -> Response:
        return await self.request("DELETE", url, **kwargs)

    @contextlib.asynccontextmanager
    async def stream(self, method: str, url: str, **kwargs: Any) -> AsyncIterator[Response]:
        """``async with client.stream("GET", url) as response:`` a streaming response, closed on exit."""
        response = await self.request(method, url, stream=True, **kwargs)
        try:
            yield response
        finally:
            response.close()

    def submit(self, request_or_method: Request | str, url: str | None = None, *,
               follow_redirects: bool | None = None, **kwargs: Any) -> asyncio.Task[Response]:
        """Start a request as a task on the running loop (cancel the task to cancel the transfer)."""
        if isinstance(request_or_method, Request):
            if url is not None or kwargs:
                raise TypeError("submit(request) takes no other request arguments")
            return asyncio.ensure_future(self.send(request_or_method, follow_redirects=follow_redirects))
        if url is None:
            raise TypeError("submit(method, url, ...) needs a url")
        return asyncio.ensure_future(self.request(request_or_method, url, follow_redirects=follow_redirects,
                                                  **kwargs))

    async def map(self, requests: Iterable[Request], *, concurrency: int = 64,
                  return_exceptions: bool = False,
                  follow_redirects: bool | None = None) -> AsyncIterator[Response | BaseException]:
        """Like ``Client.map``: at most ``concurrency`` in flight, results in input order."""
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        window: collections.deque[asyncio.Task[Response]] = collections.deque()
        source = iter(requests)
        exhausted = False
        try:
            while True:
                while not exhausted and len(window) < concurrency:
                    req = next(source, None)
                    if req is None:
                        exhausted = True
                        break
                    window.append(asyncio.ensure_future(self.send(req, follow_redirects=follow_redirects)))
                if not window:
                    return
                task = window.popleft()
                try:
                    result: Response | BaseException = await task
                except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
                    raise
                except BaseException as exc:
                    if not return_exceptions:
                        raise
                    result = exc
                yield result
        finally:
            for task in window:
                task.cancel()

    async def aclose(self) -> None:
        """Fail pending requests with ``ClientClosed`` and stop the engine. Idempotent."""
        self._engine.close()

    def close(self) -> None:
        self._engine.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

