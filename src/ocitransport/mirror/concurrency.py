"""What a mirror run learns from every request: latency samples for ``--jobs auto``
(:class:`~ocitransport.transport.autotune.ConcurrencyController`) and, per registry, the new TCP
connections and TLS handshakes the engine made (libcurl's ``NUM_CONNECTS`` of each transfer)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Literal

from .._urls import authority
from ..messages import Request, Response
from ..roundtrip import Exchange, Layer, RoundTripper
from ..transport.autotune import AUTO_CEILING, ConcurrencyController
from ..transport.limit import THROTTLE_STATUS_CODES

#: ``jobs`` value that asks for latency-aware concurrency (the default of the CLI and the library).
AUTO: Literal["auto"] = "auto"
#: A run's ``jobs``: a fixed number of images in flight, or :data:`AUTO`.
Jobs = int | Literal["auto"]


def check_jobs(jobs: object) -> None:
    """Raise ``ValueError`` unless ``jobs`` is a whole number above zero or ``"auto"``."""
    if jobs == AUTO:
        return
    if isinstance(jobs, bool) or not isinstance(jobs, int):
        raise ValueError(f'jobs must be a number greater than zero or "auto", not {jobs!r}')
    if jobs < 1:
        raise ValueError("jobs must be greater than zero")


def most_jobs(jobs: Jobs) -> int:
    """The most images ``jobs`` can have in flight (``auto``: the controller's ceiling), for pool sizes
    and planning's concurrent requests."""
    return AUTO_CEILING if jobs == AUTO else int(jobs)

class Connections:
    """New TCP connections and TLS handshakes per registry (``host:port``) during a run."""

    def __init__(self) -> None:
        self.connections: dict[str, int] = {}
        self.handshakes: dict[str, int] = {}

    def note(self, registry: str, tls: bool, extensions: dict[str, Any]) -> None:
        """Count the transfer whose response carries ``extensions`` (the engine's ``timing``)."""
        timing = extensions.get("timing")
        new = int(timing.get("new_connections", 0) or 0) if isinstance(timing, dict) else 0
        if new:
            self.connections[registry] = self.connections.get(registry, 0) + new
            if tls:  # every new connection to an https URL began with a TLS handshake
                self.handshakes[registry] = self.handshakes.get(registry, 0) + new

    def counts(self) -> dict[str, dict[str, int]]:
        """``{registry: {"connections": n, "tls_handshakes": m}}``."""
        return {r: {"connections": n, "tls_handshakes": self.handshakes.get(r, 0)}
                for r, n in sorted(self.connections.items())}


class Observe(Layer):
    """The bottom layer of a mirror Session: asks the engine for each transfer's connection count, and
    feeds each answer's time to its head (and throttles) to ``controller`` when there is one."""

    __slots__ = ("clock", "connections", "controller", "limited", "on_change")

    def __init__(self, inner: RoundTripper, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(inner)
        self.connections = Connections()
        self.controller: ConcurrencyController | None = None
        #: Called when the controller changed its limit.
        self.on_change: Callable[[], None] | None = None
        #: Whether the controller's limit holds work back now (as many images in flight as it allows, or
        #: more waiting); ``None``: always assumed.
        self.limited: Callable[[], bool] | None = None
        self.clock = clock

    def handle(self, request: Request) -> Exchange:
        ext = dict(request.extensions) if request.extensions else {}
        ext["timing"] = True
        request.extensions = ext
        started = self.clock()
        response: Response = yield request
        registry = authority(request.url)
        tls = request.url.startswith("https:")
        self.connections.note(registry, tls, response.extensions)
        controller = self.controller
        if controller is not None:
            now = self.clock()
            limited = self.limited
            if controller.sample(now, now - started, throttled=response.status in THROTTLE_STATUS_CODES,
                                 limited=limited is None or limited()):
                wake = self.on_change
                if wake is not None:
                    wake()
        return response


class Gate:
    """Images in flight under a controller's limit: ``enter`` waits while the limit is reached."""

    def __init__(self, controller: ConcurrencyController) -> None:
        self.controller = controller
        self.in_flight = 0
        self._changed = asyncio.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Future[None]] = set()

    async def enter(self) -> None:
        """Wait until one more image may be in flight, and take its place."""
        self._loop = asyncio.get_running_loop()
        self._tasks = {t for t in self._tasks if not t.done()}
        async with self._changed:
            await self._changed.wait_for(lambda: self.in_flight < self.controller.limit)
            self.in_flight += 1

    async def leave(self) -> None:
        """An image is over: its place is free."""
        async with self._changed:
            self.in_flight -= 1
            self._changed.notify_all()

    async def nudge(self) -> None:
        """Wake waiters (the limit may have grown)."""
        async with self._changed:
            self._changed.notify_all()

    def wake(self) -> None:
        """:meth:`nudge` from any thread (the controller changes its limit where an answer arrives)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(lambda: self._tasks.add(asyncio.ensure_future(self.nudge())))


__all__ = ["AUTO", "Connections", "Gate", "Jobs", "Observe", "check_jobs", "most_jobs"]
