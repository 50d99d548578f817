"""Adaptive politeness towards each registry: a concurrency limit that backs off when the registry pushes
back, and a pause that every request to that registry honours once one of them is told to wait.

The state is per registry (the request URL's ``host:port``) and shared by every request that goes
through the same :class:`Limit` layer, so one layer under a Client's (or a mirror Session's) chain
makes all of its requests polite together:

* **Concurrency** follows AIMD, like TCP's congestion window: a ``429 Too Many Requests`` or ``503
  Service Unavailable`` answer multiplies the limit by ``decrease`` (once per round of requests: the
  answers to requests admitted before the cut do not cut again), and every other answer adds
  ``1 / limit`` (about one more slot per round of successes), always between ``floor`` and ``ceiling``.
  A request holds its slot until its response head arrives.
* **Pause**: a ``429`` / ``503`` with ``Retry-After`` (seconds or an HTTP date, at most ``max_pause``)
  means no request to that registry goes out before that moment, not only the one that was told so.
  A longer ``Retry-After`` pauses nothing: that request fails at once, saying what was asked.

Requests whose body cannot be replayed (a blob streamed from a source GET into a destination upload)
honour pauses but take no slot: their body may depend on another request to the same registry, which
must never wait for a slot they hold.

The arithmetic (:class:`AIMDLimit`, :class:`RegistryLimit`) is sans-I/O: it receives the time and returns
decisions. The state lives behind :class:`LimitBackend`, so a run spread over several processes can share
one limit per registry through another backend; :class:`LocalLimits` keeps it in this process.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from .._urls import authority
from ..messages import Request, Response
from ..roundtrip import Exchange, Layer, RoundTripper, Sleep, Wait
from .retry import MAX_RETRY_AFTER, parse_retry_after, refused_wait

#: Answers that mean "slow down": the limit is cut, and ``Retry-After`` pauses the registry.
THROTTLE_STATUS_CODES: frozenset[int] = frozenset({429, 503})


@dataclass(frozen=True)
class LimitPolicy:
    """The knobs of the per-registry limit: concurrency starts at ``initial`` (default: ``ceiling``) and
    stays in ``[floor, ceiling]``; ``decrease`` is the factor of a cut; ``max_pause`` (default
    ``retry.MAX_RETRY_AFTER``, 60 s) caps a pause: a ``Retry-After`` asking for more pauses nothing and
    fails its request at once, and a request waits out pauses for at most that long in all."""

    floor: int = 1
    ceiling: int = 32
    initial: int | None = None
    decrease: float = 0.5
    max_pause: float = MAX_RETRY_AFTER
    statuses: frozenset[int] = THROTTLE_STATUS_CODES

    def __post_init__(self) -> None:
        if self.floor < 1 or self.ceiling < self.floor:
            raise ValueError("a limit needs 1 <= floor <= ceiling")
        if not 0.0 < self.decrease < 1.0:
            raise ValueError("decrease must be between 0 and 1")


class AIMDLimit:
    """Additive-increase / multiplicative-decrease arithmetic of one concurrency limit (sans-I/O).

    ``value`` is fractional; ``slots`` the whole number of requests it allows. ``generation`` counts the
    cuts: a throttled answer cuts only when its request was admitted in the current generation.
    """

    __slots__ = ("generation", "lowest", "policy", "value")

    def __init__(self, policy: LimitPolicy) -> None:
        self.policy = policy
        start = policy.ceiling if policy.initial is None else policy.initial
        self.value = float(min(max(start, policy.floor), policy.ceiling))
        self.generation = 0
        self.lowest = self.value

    @property
    def slots(self) -> int:
        return max(self.policy.floor, int(self.value))

    def succeeded(self) -> None:
        """One answer that was not a throttle: grow by ``1 / value`` (a slot per round), up to the ceiling."""
        self.value = min(float(self.policy.ceiling), self.value + 1.0 / self.value)

    def throttled(self, generation: int) -> bool:
        """One throttled answer to a request admitted in ``generation``; ``True`` when it cut the limit."""
        if generation != self.generation:
            return False  # admitted before the last cut: that cut already answered this round
        self.value = max(float(self.policy.floor), self.value * self.policy.decrease)
        self.generation += 1
        self.lowest = min(self.lowest, self.value)
        return True


@dataclass
class LimitStats:
    """What the limits did, for reports: ``throttle_events`` (throttled answers), ``cuts`` (of which cut
    a limit), ``paused_seconds`` (wall-clock time some registry was paused, overlapping pauses of one
    registry counted once), ``queued_seconds`` (summed over requests: time held back for a slot or a
    pause), ``lowest_limit`` (the smallest limit any registry reached; 0 when none was cut) and, per
    registry, its current ``limits``."""

    throttle_events: int = 0
    cuts: int = 0
    paused_seconds: float = 0.0
    queued_seconds: float = 0.0
    lowest_limit: int = 0
    limits: dict[str, int] = field(default_factory=dict)


class Admission:
    """One request's ticket: ``granted`` now, or later through ``future`` (a ``concurrent.futures.Future``
    resolved with ``True`` when a slot is handed over). ``slot`` is false for requests that take none."""

    __slots__ = ("future", "generation", "granted", "queued_at", "registry", "slot")

    def __init__(self, registry: str, generation: int, *, granted: bool, slot: bool = True,
                 future: concurrent.futures.Future[bool] | None = None, queued_at: float = 0.0) -> None:
        self.registry = registry
        self.generation = generation
        self.granted = granted
        self.slot = slot
        self.future = future
        self.queued_at = queued_at


class RegistryLimit:
    """Everything known about one registry (sans-I/O: every method receives ``now``): its limit, requests
    in flight and waiting, its pause, and counters."""

    def __init__(self, policy: LimitPolicy) -> None:
        self.policy = policy
        self.limit = AIMDLimit(policy)
        self.in_flight = 0
        self.waiting: deque[Admission] = deque()
        self.paused_until = 0.0
        self.paused_seconds = 0.0
        self.throttle_events = 0
        self.cuts = 0

    def admit(self, registry: str, now: float, *, slot: bool = True) -> Admission:
        """A ticket for one request: granted when a slot is free (or none is needed), else queued."""
        if not slot:
            return Admission(registry, self.limit.generation, granted=True, slot=False)
        if self.in_flight < self.limit.slots and not self.waiting:
            self.in_flight += 1
            return Admission(registry, self.limit.generation, granted=True)
        ticket = Admission(registry, self.limit.generation, granted=False,
                           future=concurrent.futures.Future(), queued_at=now)
        self.waiting.append(ticket)
        return ticket

    def pause_left(self, now: float) -> float:
        """Seconds until requests may go out again (0 when the registry is not paused)."""
        return max(0.0, self.paused_until - now)

    def pause(self, now: float, seconds: float) -> None:
        """No request before ``now + seconds`` (capped at ``max_pause``); overlapping pauses extend."""
        until = now + min(max(seconds, 0.0), self.policy.max_pause)
        if until <= self.paused_until:
            return
        self.paused_seconds += until - max(now, self.paused_until)
        self.paused_until = until

    def finish(self, ticket: Admission, now: float, *, status: int | None,
               retry_after: float | None = None) -> list[Admission]:
        """A request is over (``status`` of its answer, ``None`` for a transport error). Returns the queued
        tickets that now hold a slot (the caller resolves their futures outside any lock)."""
        if status is not None:
            if status in self.policy.statuses:
                self.throttle_events += 1
                if self.limit.throttled(ticket.generation):
                    self.cuts += 1
                if retry_after is not None:
                    self.pause(now, retry_after)
            else:
                self.limit.succeeded()
        if ticket.slot and ticket.granted:
            ticket.granted = False  # a ticket frees its slot once
            self.in_flight -= 1
        return self._hand_over()

    def withdraw(self, ticket: Admission) -> list[Admission]:
        """A queued request gave up (cancelled); returns tickets that got a slot meanwhile."""
        try:
            self.waiting.remove(ticket)
        except ValueError:
            pass
        return self._hand_over()

    def _hand_over(self) -> list[Admission]:
        granted: list[Admission] = []
        while self.waiting and self.in_flight < self.limit.slots:
            ticket = self.waiting.popleft()
            self.in_flight += 1
            ticket.granted = True
            ticket.generation = self.limit.generation
            granted.append(ticket)
        return granted


class LimitBackend(Protocol):
    """Where per-registry limits live. :class:`LocalLimits` keeps them in this process; a backend shared
    by the workers of a distributed run implements the same five calls."""

    def admit(self, registry: str, *, slot: bool = True) -> Admission:
        """A ticket for one request to ``registry`` (see :class:`Admission`)."""
        ...

    def pause_left(self, registry: str) -> float:
        """Seconds until requests to ``registry`` may go out again."""
        ...

    def finish(self, ticket: Admission, *, status: int | None, retry_after: float | None = None) -> None:
        """The request of ``ticket`` got ``status`` (``None``: no answer); frees its slot."""
        ...

    def withdraw(self, ticket: Admission) -> None:
        """A queued request gave up before getting its slot."""
        ...

    def record_wait(self, seconds: float) -> None:
        """A request was held back ``seconds`` (for :class:`LimitStats`)."""
        ...

    def stats(self) -> LimitStats:
        """Counters so far."""
        ...


class LocalLimits:
    """Per-registry limits kept in this process, safe to share between threads and event loops."""

    def __init__(self, policy: LimitPolicy | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy if policy is not None else LimitPolicy()
        self.clock = clock
        self._lock = threading.Lock()
        self._registries: dict[str, RegistryLimit] = {}
        self._queued_seconds = 0.0

    def registry(self, name: str) -> RegistryLimit:
        """The state of registry ``name`` (``host:port``), created on first use."""
        with self._lock:
            return self._state(name)

    def _state(self, name: str) -> RegistryLimit:
        state = self._registries.get(name)
        if state is None:
            state = self._registries[name] = RegistryLimit(self.policy)
        return state

    def admit(self, registry: str, *, slot: bool = True) -> Admission:
        with self._lock:
            return self._state(registry).admit(registry, self.clock(), slot=slot)

    def pause_left(self, registry: str) -> float:
        with self._lock:
            return self._state(registry).pause_left(self.clock())

    def finish(self, ticket: Admission, *, status: int | None, retry_after: float | None = None) -> None:
        with self._lock:
            granted = self._state(ticket.registry).finish(ticket, self.clock(), status=status,
                                                          retry_after=retry_after)
        _resolve(granted, self)

    def withdraw(self, ticket: Admission) -> None:
        with self._lock:
            granted = self._state(ticket.registry).withdraw(ticket)
        _resolve(granted, self)

    def record_wait(self, seconds: float) -> None:
        with self._lock:
            self._queued_seconds += seconds

    def stats(self) -> LimitStats:
        with self._lock:
            states = dict(self._registries)
            out = LimitStats(queued_seconds=self._queued_seconds)
            for name, state in states.items():
                out.throttle_events += state.throttle_events
                out.cuts += state.cuts
                out.paused_seconds += state.paused_seconds
                out.limits[name] = state.limit.slots
                if state.cuts:
                    lowest = max(self.policy.floor, int(state.limit.lowest))
                    out.lowest_limit = lowest if not out.lowest_limit else min(out.lowest_limit, lowest)
            return out


def _resolve(granted: list[Admission], backend: LimitBackend) -> None:
    """Hand slots to queued tickets; one whose waiter is gone passes its slot on."""
    for ticket in granted:
        future = ticket.future
        if future is not None and future.set_running_or_notify_cancel():
            future.set_result(True)
        else:
            backend.finish(ticket, status=None)


class Limit(Layer):
    """The politeness layer: waits for a slot and for the registry's pause, sends, learns from the answer.

    Put it under the retry layer (``new_retry(new_limit(client))``) so every attempt is admitted and
    every ``Retry-After`` pauses the whole registry."""

    __slots__ = ("backend",)

    def __init__(self, inner: RoundTripper, backend: LimitBackend | None = None) -> None:
        super().__init__(inner)
        self.backend: LimitBackend = backend if backend is not None else LocalLimits()

    def handle(self, request: Request) -> Exchange:
        backend = self.backend
        registry = authority(request.url)
        ticket = backend.admit(registry, slot=request.replayable)
        started = time.monotonic()
        if not ticket.granted:
            assert ticket.future is not None
            try:
                yield Wait(ticket.future)
            except BaseException:
                if not ticket.future.cancel():  # the slot arrived as we gave up: give it back
                    backend.finish(ticket, status=None)
                else:
                    backend.withdraw(ticket)
                raise
        policy = getattr(backend, "policy", None)
        cap = policy.max_pause if isinstance(policy, LimitPolicy) else MAX_RETRY_AFTER
        try:
            # Bounded: each round sleeps out a pause another answer set, and all of them together last at
            # most the cap (a registry paused again and again does not hold a request for ever).
            deadline = time.monotonic() + cap
            for _ in range(100):
                left = min(backend.pause_left(registry), deadline - time.monotonic())
                if left <= 0:
                    break
                yield Sleep(left)
            waited = time.monotonic() - started
            if waited > 0.001:
                backend.record_wait(waited)
            response: Response = yield request
        except BaseException:
            backend.finish(ticket, status=None)
            raise
        retry_after = None
        statuses = policy.statuses if isinstance(policy, LimitPolicy) else THROTTLE_STATUS_CODES
        if response.status in statuses:  # Retry-After on any other answer (a 404, say) is not read
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            if retry_after is not None and retry_after > cap:
                # No pause at all: the request fails at once (the retry layer gives up on it too).
                response.extensions["wait_refused"] = refused_wait(retry_after, cap, "LimitPolicy.max_pause")
                retry_after = None
        backend.finish(ticket, status=response.status, retry_after=retry_after)
        return response


def new_limit(inner: RoundTripper, *, backend: LimitBackend | None = None,
              policy: LimitPolicy | None = None) -> Limit:
    """Wrap ``inner`` in a politeness layer; its state in ``backend`` (default: a new :class:`LocalLimits`
    with ``policy``). Share one layer (or one backend) between all requests that should be polite together."""
    if backend is not None and policy is not None:
        raise ValueError("give a backend or a policy, not both")
    return Limit(inner, backend if backend is not None else LocalLimits(policy))


# ------------------------------------------------------------------------------------------ shared pauses
# The limit classes a cluster needs that need no dask (the dask board, ClusterPauses, is in
# mirror/distributed.py).

class PauseBoard(Protocol):
    """Per-registry "paused until" state shared by every client of a registry (wall-clock seconds).

    The seam for a cluster-wide back-off: ``SharedLimits`` asks ``paused_until`` before each request
    and calls ``pause`` when a registry answers 429/503 with ``Retry-After``. ``ClusterPauses``
    implements it with dask.
    """

    def paused_until(self, registry: str) -> float: ...
    def pause(self, registry: str, until: float) -> None: ...


class LocalPauses:
    """A ``PauseBoard`` for one process (tests, or a Session outside a cluster)."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def paused_until(self, registry: str) -> float:
        return self._until.get(registry, 0.0)

    def pause(self, registry: str, until: float) -> None:
        with self._lock:
            if until > self._until.get(registry, 0.0):
                self._until[registry] = until


class SharedLimits:
    """A ``transport.LimitBackend`` for one worker of a cluster: the adaptive per-request concurrency
    (AIMD) of this process, as ``LocalLimits`` keeps it, and pauses shared with every other worker
    through ``board``.

    A ``Retry-After`` that one worker is given pauses that registry for the whole cluster (within the
    board's refresh interval); concurrency cuts stay per worker, and the cluster-wide bound on work per
    registry is the executor's registry semaphores.
    """

    def __init__(self, board: PauseBoard, policy: LimitPolicy | None = None) -> None:
        self.board = board
        self.local = LocalLimits(policy)
        self.policy = self.local.policy

    def admit(self, registry: str, *, slot: bool = True) -> Admission:
        return self.local.admit(registry, slot=slot)

    def pause_left(self, registry: str) -> float:
        # The board's value came from another process (and from a registry): never more than our cap.
        shared = min(self.board.paused_until(registry) - time.time(), self.policy.max_pause)
        return max(self.local.pause_left(registry), shared)

    def finish(self, ticket: Admission, *, status: int | None, retry_after: float | None = None) -> None:
        self.local.finish(ticket, status=status, retry_after=retry_after)
        if status in self.policy.statuses and retry_after is not None:
            self.board.pause(ticket.registry, time.time() + min(max(retry_after, 0.0), self.policy.max_pause))

    def withdraw(self, ticket: Admission) -> None:
        self.local.withdraw(ticket)

    def record_wait(self, seconds: float) -> None:
        self.local.record_wait(seconds)

    def stats(self) -> LimitStats:
        return self.local.stats()


__all__ = [
    "THROTTLE_STATUS_CODES",
    "AIMDLimit",
    "Admission",
    "Limit",
    "LimitBackend",
    "LimitPolicy",
    "LimitStats",
    "LocalLimits",
    "LocalPauses",
    "PauseBoard",
    "RegistryLimit",
    "SharedLimits",
    "new_limit",
]
