"""Round-trippers: the composable request -> response chain every layer of ocitransport is built from.

A ``RoundTripper`` sends one request and returns one response, with a sync face (``round_trip``) and an
async face (``round_trip_async``). The engine is the innermost one; registry layers (scheme, auth,
retry, user agent, logging, redirects) wrap an inner round-tripper.

A layer writes its logic **once**, as a generator (``Layer.handle``) that yields what it needs done and
receives the result:

* a ``Request``: send it through the inner round-tripper, receive the ``Response``;
* ``Send(request, via)``: send it through another round-tripper (a token endpoint, say);
* ``Sleep(seconds)``: wait (retry backoff, ``Retry-After``);
* ``Wait(future)``: wait for a ``concurrent.futures.Future`` (a token refresh another request started);
* ``Read(response, limit)``: read a response body, at most ``limit`` bytes (raises ``BodyTooLarge``).

``drive_sync`` and ``drive_async`` run the same generator on either face, so no layer is written twice.
An exception raised while carrying out a step is thrown into the generator at its ``yield``, so
layers handle transport errors with ordinary ``try``/``except``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Generator
from typing import Any, TypeVar

from .exceptions import BodyTooLarge
from .messages import Request, Response

T = TypeVar("T")

#: A generator of steps (``Send``, ``Read``, ``Sleep``, ...) whose result is a ``T``: ``Steps[Token]``.
Steps = Generator[Any, Any, T]
#: What ``Layer.handle`` generators look like.
Exchange = Steps[Response]


class RoundTripper:
    """Sends one request and returns its response. Subclasses implement both faces."""

    def round_trip(self, request: Request) -> Response:
        raise NotImplementedError

    async def round_trip_async(self, request: Request) -> Response:
        raise NotImplementedError

    def close(self) -> None:
        """Release what this round-tripper owns. Layers close nothing: the engine's owner closes it."""


class Send:
    """Step: send ``request`` through ``via`` (another round-tripper) instead of the inner one."""

    __slots__ = ("request", "via")

    def __init__(self, request: Request, via: RoundTripper) -> None:
        self.request = request
        self.via = via


class Sleep:
    """Step: wait ``seconds``."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


class Wait:
    """Step: wait for ``future`` (a ``concurrent.futures.Future``) and receive its result."""

    __slots__ = ("future",)

    def __init__(self, future: concurrent.futures.Future[Any]) -> None:
        self.future = future


class Read:
    """Step: read ``response``'s body, at most ``limit`` bytes (``None``: no limit); receive the bytes.

    A body longer than ``limit`` raises ``BodyTooLarge`` and is never truncated silently.
    """

    __slots__ = ("response", "limit", "what")

    def __init__(self, response: Response, limit: int | None = None, what: str = "body") -> None:
        self.response = response
        self.limit = limit
        self.what = what


def _check_limit(data: bytes, step: Read) -> bytes:
    if step.limit is not None and len(data) > step.limit:
        raise BodyTooLarge(step.limit, step.what)
    return data


def _read_sync(step: Read) -> bytes:
    response = step.response
    if not response.is_streaming:
        return _check_limit(response.content, step)
    if step.limit is None:
        return response.read()
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size > step.limit:
                raise BodyTooLarge(step.limit, step.what)
    finally:
        response.close()
    data = b"".join(chunks)
    response._content = data
    return data


async def _read_async(step: Read) -> bytes:
    response = step.response
    if not response.is_streaming:
        return _check_limit(response.content, step)
    if step.limit is None:
        return await response.aread()
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in response.aiter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size > step.limit:
                raise BodyTooLarge(step.limit, step.what)
    finally:
        response.close()
    data = b"".join(chunks)
    response._content = data
    return data


def drive_sync(exchange: Steps[T], inner: RoundTripper) -> T:
    """Run a layer's generator on the calling thread, blocking on each step."""
    send = exchange.send
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = send(value) if error is None else exchange.throw(error)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        error = None
        try:
            if type(step) is Request:
                value = inner.round_trip(step)
            elif type(step) is Send:
                value = step.via.round_trip(step.request)
            elif type(step) is Sleep:
                if step.seconds > 0:
                    time.sleep(step.seconds)
                value = None
            elif type(step) is Wait:
                value = step.future.result()
            elif type(step) is Read:
                value = _read_sync(step)
            else:
                raise TypeError(f"a layer yielded {step!r}, which is not a round-trip step")
        except BaseException as exc:  # noqa: BLE001 - handed to the layer, which re-raises what it can't handle
            error, value = exc, None


async def drive_async(exchange: Steps[T], inner: RoundTripper) -> T:
    """Run a layer's generator on the running event loop, awaiting each step."""
    send = exchange.send
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = send(value) if error is None else exchange.throw(error)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        error = None
        try:
            if type(step) is Request:
                value = await inner.round_trip_async(step)
            elif type(step) is Send:
                value = await step.via.round_trip_async(step.request)
            elif type(step) is Sleep:
                await asyncio.sleep(step.seconds)
                value = None
            elif type(step) is Wait:
                value = await asyncio.wrap_future(step.future)
            elif type(step) is Read:
                value = await _read_async(step)
            else:
                raise TypeError(f"a layer yielded {step!r}, which is not a round-trip step")
        except BaseException as exc:  # noqa: BLE001
            error, value = exc, None


class Layer(RoundTripper):
    """A round-tripper that wraps ``inner`` and writes its logic once, in ``handle``."""

    __slots__ = ("inner",)

    def __init__(self, inner: RoundTripper) -> None:
        self.inner = inner

    def handle(self, request: Request) -> Exchange:
        """The layer's logic: yield steps (see the module docstring), return the response."""
        return (yield request)  # type: ignore[no-any-return]

    def round_trip(self, request: Request) -> Response:
        return drive_sync(self.handle(request), self.inner)

    async def round_trip_async(self, request: Request) -> Response:
        return await drive_async(self.handle(request), self.inner)


class RequestLayer(RoundTripper):
    """A layer that only rewrites the request on its way in (user agent, scheme): no generator needed."""

    __slots__ = ("inner",)

    def __init__(self, inner: RoundTripper) -> None:
        self.inner = inner

    def prepare(self, request: Request) -> Request:
        return request

    def round_trip(self, request: Request) -> Response:
        return self.inner.round_trip(self.prepare(request))

    async def round_trip_async(self, request: Request) -> Response:
        return await self.inner.round_trip_async(self.prepare(request))
