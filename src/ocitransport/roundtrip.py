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

``drive_sync`` and ``drive_async`` run the same generator on either face, so no layer is written twice;
``drive_future`` runs one on futures (``Client.submit`` and ``Client.map`` follow redirects with it).
An exception raised while carrying out a step is thrown into the generator at its ``yield``, so
layers handle transport errors with ordinary ``try``/``except``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable, Generator
from typing import Any, Generic, TypeVar

from ._tokens import TokenCache
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

    @property
    def token_cache(self) -> TokenCache:
        """The tokens shared by the Bearer layers built on this round-tripper.

        A Client owns one and every layer hands down its inner's, so all transports on one Client share
        their tokens; any other round-tripper keeps one of its own, made on first use.
        """
        cache: TokenCache | None = self.__dict__.get("_token_cache")
        if cache is None:
            cache = self.__dict__.setdefault("_token_cache", TokenCache())  # atomic: one wins a race
        return cache


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


#: How long ``FlowFuture.result()`` sleeps when the hop it drove is in but another thread's driver has
#: not run the hop's callback yet (rare; the callback runs right after the hop settles).
FLOW_HANDOFF = 0.001


class FlowFuture(concurrent.futures.Future, Generic[T]):  # type: ignore[type-arg]
    """The future of a layer's generator run by ``drive_future``: the hop in flight is a future too.

    Each step is taken in the done-callback of the previous hop (on whichever thread completed it, the
    engine's driver), so no thread waits for a chain; ``result()`` drives the hop in flight (an
    ``EngineFuture`` drives the engine); ``cancel()`` cancels it.
    """

    def __init__(self, exchange: Steps[T], submit: Callable[[Request], concurrent.futures.Future[Any]]) -> None:
        super().__init__()
        self._gen = exchange
        self._submit = submit
        self._hop: concurrent.futures.Future[Any] | None = None

    def _advance(self, value: Any, error: BaseException | None) -> None:
        gen = self._gen
        while True:
            if self.done():  # cancelled while the hop ran
                gen.close()
                return
            try:
                step = gen.send(value) if error is None else gen.throw(error)
            except StopIteration as stop:
                self._settle(stop.value, None)
                return
            except BaseException as exc:  # noqa: BLE001 - the chain's own error is the result
                self._settle(None, exc)
                return
            try:
                if type(step) is Request:
                    hop = self._submit(step)
                elif type(step) is Wait:
                    hop = step.future
                else:
                    raise TypeError(f"a flow on futures can only send requests and wait for futures, not {step!r}")
            except BaseException as exc:  # noqa: BLE001 - e.g. ClientClosed: handed to the layer
                value, error = None, exc
                continue
            self._hop = hop
            hop.add_done_callback(self._on_hop)  # runs at once if the hop is already done
            return

    def _on_hop(self, hop: concurrent.futures.Future[Any]) -> None:
        if hop.cancelled():
            self._advance(None, concurrent.futures.CancelledError())
            return
        error = hop.exception(0)
        self._advance(None if error is not None else hop.result(0), error)

    def _settle(self, result: Any, error: BaseException | None) -> None:
        self._hop = None
        try:
            if error is None:
                self.set_result(result)
            else:
                self.set_exception(error)
        except concurrent.futures.InvalidStateError:
            pass  # cancelled meanwhile

    def cancel(self) -> bool:
        if not super().cancel():
            return False
        hop = self._hop
        if hop is not None:
            hop.cancel()
        return True

    def _drive(self, timeout: float | None) -> float | None:
        """Drive the hops in flight until done; the time left of ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done():
            hop = self._hop
            remaining = None if deadline is None else deadline - time.monotonic()
            if hop is None or (remaining is not None and remaining <= 0):
                break
            try:
                hop.exception(remaining)
            except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
                pass
            if self._hop is hop and not self.done():
                with self._condition:  # the hop is in: its callback is about to advance the flow
                    if self._hop is hop and not self.done():
                        self._condition.wait(FLOW_HANDOFF)
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    def result(self, timeout: float | None = None) -> T:
        return super().result(self._drive(timeout))  # type: ignore[no-any-return]

    def exception(self, timeout: float | None = None) -> BaseException | None:
        return super().exception(self._drive(timeout))


def drive_future(exchange: Steps[T], submit: Callable[[Request], concurrent.futures.Future[Any]]) -> FlowFuture[T]:
    """Run a layer's generator on futures: each ``Request`` step is ``submit(step)``, each ``Wait`` step
    waits for its future; the result is a ``FlowFuture``. Other steps fail the flow with ``TypeError``.
    """
    flow: FlowFuture[T] = FlowFuture(exchange, submit)
    flow._advance(None, None)
    return flow


class Layer(RoundTripper):
    """A round-tripper that wraps ``inner`` and writes its logic once, in ``handle``."""

    __slots__ = ("inner",)

    def __init__(self, inner: RoundTripper) -> None:
        self.inner = inner

    @property
    def token_cache(self) -> TokenCache:
        return self.inner.token_cache

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

    @property
    def token_cache(self) -> TokenCache:
        return self.inner.token_cache

    def prepare(self, request: Request) -> Request:
        return request

    def round_trip(self, request: Request) -> Response:
        return self.inner.round_trip(self.prepare(request))

    async def round_trip_async(self, request: Request) -> Response:
        return await self.inner.round_trip_async(self.prepare(request))
