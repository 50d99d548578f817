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
import threading
import time
from collections.abc import Generator
from concurrent.futures._base import (  # the state names cf.Future uses internally
    CANCELLED,
    CANCELLED_AND_NOTIFIED,
    FINISHED,
    PENDING,
)
from typing import Any, Generic, Protocol, TypeVar

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


class Hops(Protocol):
    """What ``FlowFuture`` needs of the round-tripper that carries its requests (an ``Engine``)."""

    def start_hop(self, request: Request, flow: FlowFuture[Any]) -> Any:
        """Send ``request``; call ``flow._settle(response, error)`` once it is in (on the driving thread).
        Returns a handle for ``wait`` and ``cancel``."""
        ...

    def wait(self, hop: Any, timeout: float | None) -> bool:
        """Drive (or wait for the driver) until ``hop`` is in or ``timeout`` passed."""
        ...

    def cancel(self, hop: Any, error: BaseException | None) -> None:
        """Stop ``hop``; its flow was cancelled."""
        ...


class FlowFuture(concurrent.futures.Future, Generic[T]):  # type: ignore[type-arg]
    """A ``concurrent.futures.Future`` for a layer's generator whose requests are hops of ``Hops``.

    Each step is taken when the previous hop settles, on the thread that completed it (the engine's
    driver), so no thread waits for a chain. With no generator the result is that of the one hop
    (``Engine.submit``). It is a real ``Future`` (``wait``, ``as_completed``, ``asyncio.wrap_future``
    work) that builds its ``Condition`` only when something blocks on it; ``result()`` and
    ``exception()`` first drive the hop in flight themselves; ``cancel()`` cancels that hop.
    """

    def __init__(self, hops: Hops, exchange: Steps[T] | None = None) -> None:
        self._state = PENDING
        self._result = None
        self._exception = None
        self._waiters: list[Any] = []
        self._done_callbacks: list[Any] = []
        self._cond: threading.Condition | None = None
        self._hops = hops
        self._gen = exchange
        self._hop: Any = None
        #: Hops started so far (the first request included).
        self.hops = 0

    @property
    def _condition(self) -> threading.Condition:  # type: ignore[override]
        cond = self._cond
        if cond is None:
            with _COND_LOCK:
                cond = self._cond
                if cond is None:
                    cond = self._cond = threading.Condition()
        return cond

    def done(self) -> bool:
        return self._state in (FINISHED, CANCELLED, CANCELLED_AND_NOTIFIED)

    def running(self) -> bool:
        return self._state == PENDING

    def cancelled(self) -> bool:
        return self._state in (CANCELLED, CANCELLED_AND_NOTIFIED)

    def cancel(self) -> bool:
        if self._state == FINISHED:
            return False
        # Settle as cancelled first, so a completion racing in from the driver cannot win after
        # the hop was already asked to stop.
        cancelled = super().cancel()
        hop = self._hop
        if cancelled and hop is not None:
            self._hops.cancel(hop, None)
        return cancelled

    def _start(self, request: Request) -> None:
        self.hops += 1
        self._hop = None
        hop = self._hops.start_hop(request, self)
        if self._hop is None and self._state == PENDING:  # else it settled meanwhile, maybe with a next hop
            self._hop = hop

    def _settle(self, result: Any, error: BaseException | None) -> None:
        """The hop in flight is in (called once per hop, on the driving thread)."""
        gen = self._gen
        if self._state != PENDING:
            if gen is not None:
                gen.close()  # cancelled meanwhile
            return
        if gen is None:
            self._finish(result, error)
            return
        value: Any = result
        while True:
            try:
                step = gen.send(value) if error is None else gen.throw(error)
            except StopIteration as stop:
                self._finish(stop.value, None)
                return
            except BaseException as exc:  # noqa: BLE001 - the chain's own error is the result
                self._finish(None, exc)
                return
            try:
                if type(step) is not Request:
                    raise TypeError(f"a flow on futures can only send requests, not {step!r}")
                self._start(step)
                return
            except BaseException as exc:  # noqa: BLE001 - e.g. ClientClosed: handed to the layer
                value, error = None, exc

    def _finish(self, result: Any, error: BaseException | None) -> None:
        self._hop = None
        if self._cond is None:
            self._result = result
            self._exception = error
            self._state = FINISHED
            if self._cond is None:  # nobody started blocking after the state was written
                self._invoke_callbacks()  # type: ignore[attr-defined]
                return
            with self._cond:
                for waiter in self._waiters:
                    if error is None:
                        waiter.add_result(self)
                    else:
                        waiter.add_exception(self)
                self._cond.notify_all()
            self._invoke_callbacks()
            return
        try:
            if error is None:
                super().set_result(result)
            else:
                super().set_exception(error)
        except concurrent.futures.InvalidStateError:
            pass

    def _drive(self, timeout: float | None) -> float | None:
        """Drive the hops in flight until settled or ``timeout`` passed; the time left, if any."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._state == PENDING:
            hop = self._hop
            remaining = None if deadline is None else deadline - time.monotonic()
            if hop is None or (remaining is not None and remaining <= 0):
                break
            self._hops.wait(hop, remaining)
            if self._hop is hop:
                break  # in, and settled or about to be: the Condition path covers the rest
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    def result(self, timeout: float | None = None) -> T:
        if self._state == FINISHED:
            if self._exception is not None:
                raise self._exception
            return self._result  # type: ignore[return-value]
        left = self._drive(timeout)
        if self._state == FINISHED:
            if self._exception is not None:
                raise self._exception
            return self._result  # type: ignore[return-value]
        return super().result(timeout=0 if self._state != PENDING else left)  # type: ignore[no-any-return]

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if self._state == FINISHED:
            return self._exception
        left = self._drive(timeout)
        if self._state == FINISHED:
            return self._exception
        return super().exception(timeout=0 if self._state != PENDING else left)


_COND_LOCK = threading.Lock()


def drive_future(exchange: Steps[T], hops: Hops) -> FlowFuture[T]:
    """Run a layer's generator on futures: each ``Request`` step is a hop of ``hops``, taken when the
    previous one settles; other steps fail the flow with ``TypeError``. Returns the flow's future; an
    error starting the first request is raised here."""
    flow: FlowFuture[T] = FlowFuture(hops, exchange)
    try:
        step = exchange.send(None)
    except StopIteration as stop:
        flow._finish(stop.value, None)
        return flow
    try:
        if type(step) is not Request:
            raise TypeError(f"a flow on futures can only send requests, not {step!r}")
        flow._start(step)  # what fails here (ClientClosed, a bad body) raises to the caller, as submit() does
    except BaseException:
        exchange.close()
        raise
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
