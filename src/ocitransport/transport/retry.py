"""The retry layer: backoff, retryable statuses and errors, ``Retry-After``, body rewind on every re-send.

Better than upstream where its users suffer: at least one attempt always (a zero-step backoff never
skips the request), request bodies rewound for each re-send (go-containerregistry#1004), ``Retry-After``
honoured (seconds or an HTTP date) up to ``max_retry_after``, and the last response returned with its
body intact so ``check_error`` still reports the registry's structured error (#2125); see
docs/deviations.md.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import random
import threading
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from .._numbers import is_digits, parse_number
from .._redaction import redact_url
from .._storage_errors import storage_cause
from ..exceptions import (
    ConnectError,
    OCITransportError,
    ProtocolError,
    ReadError,
    TimeoutError,
    TLSError,
    WriteError,
)
from ..messages import Request, Response
from ..roundtrip import Exchange, Layer, Read, RoundTripper, Sleep, drive_async, drive_sync
from .errors import MAX_ERROR_BODY, Error, make_error

log = logging.getLogger("ocitransport")
#: One INFO record per retry, as it happens (the command line shows them without -v).
retry_log = logging.getLogger("ocitransport.retry")

#: The one cap on a server-driven wait: the longest ``Retry-After`` the retry layer waits out
#: (``Retry.max_retry_after``) and the longest pause the limit layer puts on a registry
#: (``LimitPolicy.max_pause``). A registry asking for more gets the request failed at once, with
#: ``registry asked to wait 3170 years (Retry-After), more than the 60 s cap (...)``.
MAX_RETRY_AFTER = 60.0
#: What an overflowing delta-seconds counts as (RFC 9111 section 1.2.2).
OVERFLOW_SECONDS = float(2 ** 31)

#: Statuses the remote defaults retry (upstream's remote package; 499 and 522 are CDN codes).
DEFAULT_RETRY_STATUS_CODES: frozenset[int] = frozenset({408, 429, 500, 502, 503, 504, 499, 522})


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: ``steps`` attempts, sleeping ``duration``, then ``duration * factor``, ...

    Each sleep gets up to ``jitter`` x itself added at random; ``cap`` (when set) bounds one sleep.
    """

    duration: float = 0.1
    factor: float = 3.0
    jitter: float = 0.1
    steps: int = 3
    cap: float | None = None

    def delays(self) -> list[float]:
        """The sleeps between attempts (``steps - 1`` of them), jitter included."""
        return [self.delay(n) for n in range(max(self.steps, 1) - 1)]

    def delay(self, attempt: int) -> float:
        """The sleep after failed attempt ``attempt`` (0: the first), jitter included: what ``delays()``
        holds at that index, also past ``steps`` (for loops that count their own attempts)."""
        d = self.duration * (self.factor ** max(attempt, 0) if self.factor else 1.0)
        step = d if self.cap is None else min(d, self.cap)
        if self.jitter > 0:
            step += random.random() * self.jitter * step
        return step


#: The remote package's defaults: 3 attempts, sleeping about 1 s then 3 s.
REMOTE_BACKOFF = Backoff(duration=1.0, factor=3.0, jitter=0.1, steps=3)

#: Transport errors that a re-send may cure: resets, EOFs, refused connections, stalls.
RETRYABLE_ERRORS: tuple[type[BaseException], ...] = (ConnectError, ReadError, WriteError, ProtocolError,
                                                     TimeoutError)


def is_retryable(error: BaseException) -> bool:
    """The default predicate: temporary registry errors and transient network failures (not TLS)."""
    if isinstance(error, TLSError) or getattr(error, "unreachable", False):
        # unreachable: a host that never answered (ocitransport.reachability): fail fast.
        return False
    if isinstance(error, Error):
        if error.status_code >= 500 and storage_cause(str(error) + error.raw_body.decode("utf-8", "replace")):
            return False  # a full disk or a quota: no retry cures it
        return error.temporary()
    return isinstance(error, RETRYABLE_ERRORS)


def _reason(response: Response | None, error: BaseException | None) -> str:
    if response is not None:
        return f"HTTP {response.status}"
    return " ".join(str(error).split()) or type(error).__name__


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP date, RFC 9110 section 10.2.3);
    ``None`` if absent or bad.

    delta-seconds are ASCII digits only (one parser, ``ocitransport._numbers``); more digits than it reads
    count as 2**31 s, as RFC 9111 section 1.2.2 tells caches to read an overflowing delta-seconds.
    """
    if not value:
        return None
    value = value.strip(" \t")
    if is_digits(value):
        seconds = parse_number(value)
        return OVERFLOW_SECONDS if seconds is None else float(seconds)
    if not value.isascii():
        return None
    try:
        when = parsedate_to_datetime(value)
        if when is None:
            return None
        return max(0.0, when.timestamp() - (time.time() if now is None else now))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def describe_wait(seconds: float) -> str:
    """A wait for people: ``"45 s"``, ``"20 min"``, ``"5 h"``, ``"3 days"``, ``"3170 years"``."""
    for unit, size in (("years", 365.25 * 86400), ("days", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= 2 * size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def refused_wait(seconds: float, cap: float, knob: str) -> str:
    """The line for a ``Retry-After`` over the cap ``knob`` allows (the request fails at once)."""
    return f"registry asked to wait {describe_wait(seconds)} (Retry-After), more than the {cap:g} s cap ({knob})"


def _retry_after(response: Response) -> float | None:
    value = response.headers.get("retry-after")
    after = parse_retry_after(value)
    if after is None and value:
        request = response.request
        where = f"{request.method} {redact_url(request.url)}: " if request is not None else ""
        log.warning("%signoring invalid Retry-After header %r (RFC 9110 section 10.2.3: delta-seconds or "
                    "an HTTP date)", where, value[:40])
    return after


#: How long a :class:`RetryBudget` remembers a request's failures after the last one (seconds): a
#: long-lived Session (a dask worker's) tries a request again in a later run.
BUDGET_MEMORY = 600.0


class RetryBudgetSpent(OCITransportError):
    """A request was not sent: it already failed as many times as the run's retry budget allows."""


class RetryBudget:
    """One retry budget per request, shared by every layer that repeats it.

    Within a :func:`retry_budget` scope (a planning step, one image's copy), a request (method and URL)
    may fail at most ``attempts`` times in all (default: the retry layer's ``Backoff.steps``, which is
    ``retries + 1``), whether the re-sends come from the retry layer or from a caller that repeats a
    whole step (a planning read, an image copied again): once spent, the retry layer stops re-sending it
    and refuses to send it again with :class:`RetryBudgetSpent` (not retryable, so every outer loop stops
    too). A success gives the request its whole budget back; failures are forgotten
    :data:`BUDGET_MEMORY` seconds after the last one. Failures are what the retry layer retries
    (retryable statuses and errors); a body that breaks after its status line is the caller's to count.
    """

    __slots__ = ("attempts", "memory", "_failed", "_lock")

    def __init__(self, attempts: int | None = None, *, memory: float = BUDGET_MEMORY) -> None:
        self.attempts = None if attempts is None else max(attempts, 1)
        self.memory = memory
        self._failed: dict[tuple[str, str, str], tuple[int, float, str]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(request: Request) -> tuple[str, str, str]:
        # The lane tells apart concurrent requests of one scope that share a URL (the POST that starts
        # each blob's upload): each blob copy is a lane of its own (see retry_lane).
        return _lane.get(), request.method, request.url

    def failures(self, request: Request) -> int:
        """How many times ``request`` failed (within the memory)."""
        found = self._failed.get(self._key(request))
        if found is None or time.monotonic() - found[1] > self.memory:
            return 0
        return found[0]

    def allows(self, request: Request, attempts: int) -> bool:
        """Whether ``request`` may be sent (again); ``attempts``: the layer's limit when none was set."""
        return self.failures(request) < (self.attempts or attempts)

    def check(self, request: Request, attempts: int) -> None:
        """Raise :class:`RetryBudgetSpent` when ``request`` may not be sent."""
        if self.allows(request, attempts):
            return
        count, _, last = self._failed.get(self._key(request), (0, 0.0, ""))
        raise RetryBudgetSpent(f"{request.method} {redact_url(request.url)}: not sent again, it failed "
                               f"{count} times (retry budget: retries + 1 attempts per request); last: {last}")

    def failed(self, request: Request, what: str) -> None:
        key = self._key(request)
        with self._lock:
            count = self.failures(request)
            self._failed[key] = (count + 1, time.monotonic(), what)

    def succeeded(self, request: Request) -> None:
        if self._failed:
            with self._lock:
                self._failed.pop(self._key(request), None)


_budget: contextvars.ContextVar[RetryBudget | None] = contextvars.ContextVar("ocitransport_retry_budget",
                                                                            default=None)


_lane: contextvars.ContextVar[str] = contextvars.ContextVar("ocitransport_retry_lane", default="")


@contextlib.contextmanager
def retry_lane(name: str) -> Iterator[None]:
    """Requests sent inside count in the budget under ``name`` too: concurrent work of one scope that
    sends the same request (each blob's upload starts with ``POST .../blobs/uploads/``) does not spend
    the others' budget."""
    token = _lane.set(name)
    try:
        yield
    finally:
        _lane.reset(token)


@contextlib.contextmanager
def retry_budget(attempts: int | None = None) -> Iterator[RetryBudget]:
    """A scope whose requests share one :class:`RetryBudget` (nested scopes and the tasks started inside
    share the outermost one): every retry layer they pass draws from it."""
    current = _budget.get()
    if current is not None:
        yield current
        return
    budget = RetryBudget(attempts)
    token = _budget.set(budget)
    try:
        yield budget
    finally:
        _budget.reset(token)


def current_budget() -> RetryBudget | None:
    """The :class:`RetryBudget` of the :func:`retry_budget` scope this code runs in, if any."""
    return _budget.get()


def _failure(response: Response | None, error: BaseException | None) -> str:
    if error is not None:
        return " ".join(str(error).split())[:300] or type(error).__name__
    assert response is not None
    return f"status {response.status}"


class Retry(Layer):
    """Re-sends a request that failed with a retryable error or status, with backoff."""

    __slots__ = ("backoff", "budget", "predicate", "status_codes", "max_retry_after")

    def __init__(
        self,
        inner: RoundTripper,
        *,
        backoff: Backoff | None = None,
        predicate: Callable[[BaseException], bool] | None = None,
        status_codes: Collection[int] | None = None,
        max_retry_after: float = MAX_RETRY_AFTER,
        budget: RetryBudget | None = None,
    ) -> None:
        super().__init__(inner)
        self.backoff = REMOTE_BACKOFF if backoff is None else backoff
        #: Failures per request shared with whatever repeats requests above this layer (default: the
        #: :func:`retry_budget` scope the request is sent in, if any; else per call).
        self.budget = budget
        self.predicate = is_retryable if predicate is None else predicate
        self.status_codes = DEFAULT_RETRY_STATUS_CODES if status_codes is None else frozenset(status_codes)
        self.max_retry_after = max_retry_after

    # Both faces send the first attempt straight to the inner round-tripper (no generator: a success
    # costs nothing here); only a failure or a retryable status enters ``_again``, the one place the
    # retry logic lives, which ``handle`` (the generator face other layers compose with) shares.
    def round_trip(self, request: Request) -> Response:
        budget = self.budget if self.budget is not None else _budget.get()
        if budget is not None:
            budget.check(request, max(self.backoff.steps, 1))
        try:
            response = self.inner.round_trip(request)
        except Exception as exc:  # noqa: BLE001 - decided by the predicate in _again
            return drive_sync(self._again(request, None, exc), self.inner)
        if response.status not in self.status_codes:
            if budget is not None:
                budget.succeeded(request)
            return response
        return drive_sync(self._again(request, response, None), self.inner)

    async def round_trip_async(self, request: Request) -> Response:
        budget = self.budget if self.budget is not None else _budget.get()
        if budget is not None:
            budget.check(request, max(self.backoff.steps, 1))
        try:
            response = await self.inner.round_trip_async(request)
        except Exception as exc:  # noqa: BLE001 - decided by the predicate in _again
            return await drive_async(self._again(request, None, exc), self.inner)
        if response.status not in self.status_codes:
            if budget is not None:
                budget.succeeded(request)
            return response
        return await drive_async(self._again(request, response, None), self.inner)

    def handle(self, request: Request) -> Exchange:
        budget = self.budget if self.budget is not None else _budget.get()
        if budget is not None:
            budget.check(request, max(self.backoff.steps, 1))
        try:
            response: Response = yield request
        except Exception as exc:  # noqa: BLE001 - decided by the predicate in _again
            return (yield from self._again(request, None, exc))
        if response.status not in self.status_codes:
            if budget is not None:
                budget.succeeded(request)
            return response
        return (yield from self._again(request, response, None))

    def _again(self, request: Request, response: Response | None, error: BaseException | None) -> Exchange:
        """Retries after a first attempt that gave ``response`` or raised ``error``."""
        delays = self.backoff.delays()  # drawn on the first failure: successes never get here
        budget = self.budget if self.budget is not None else _budget.get()
        limit = max(self.backoff.steps, 1)
        attempt = 0
        waited = 0.0
        while True:
            if budget is not None:
                if response is not None and response.status not in self.status_codes:
                    budget.succeeded(request)
                elif error is None or self.predicate(error):
                    budget.failed(request, _failure(response, error))
            spent = budget is not None and not budget.allows(request, limit)
            if error is not None:
                if attempt >= len(delays) or spent or not request.replayable or not self.predicate(error):
                    raise error
                delay = delays[attempt]
            else:
                assert response is not None
                if response.status not in self.status_codes or attempt >= len(delays) or spent \
                        or not request.replayable:
                    if attempt:
                        response.extensions["retries"] = attempt
                        response.extensions["retry_wait"] = waited
                    return response
                # Read (at most 64 KiB of) the body so the caller's check_error still sees it, and so
                # the predicate can look at the registry's diagnostics.
                body = yield Read(response, MAX_ERROR_BODY, "error body")
                if not self.predicate(make_error(response, body, temporary=True)):
                    return response
                delay = delays[attempt]
                if response.extensions.get("wait_refused"):  # a layer below refused the wait already
                    response.extensions["retries"] = attempt
                    return response
                after = _retry_after(response)
                if after is not None:
                    if after > self.max_retry_after:
                        # Fail at once, saying why: waiting that long would hang the caller.
                        response.extensions["retries"] = attempt
                        response.extensions["wait_refused"] = refused_wait(after, self.max_retry_after,
                                                                           "Retry.max_retry_after")
                        return response
                    delay = max(delay, after)
            attempt += 1
            waited += delay
            what = f"{request.method} {redact_url(request.url)}"
            reason = _reason(response, error)
            retry_log.info("%s: retrying in %.1fs (%d/%d) after: %s", what, delay, attempt, len(delays),
                           reason[len(what) + 2:] if reason.startswith(f"{what}: ") else reason)
            yield Sleep(delay)
            request.rewind()
            response, error = None, None
            try:
                response = yield request
            except Exception as exc:  # noqa: BLE001 - decided by the predicate above
                error = exc


def new_retry(
    inner: RoundTripper,
    *,
    backoff: Backoff | None = None,
    predicate: Callable[[BaseException], bool] | None = None,
    status_codes: Collection[int] | None = None,
    max_retry_after: float = MAX_RETRY_AFTER,
    budget: RetryBudget | None = None,
) -> Retry:
    """Wrap ``inner`` in a retry layer (defaults: the remote package's backoff, statuses and errors;
    ``budget``: failures per request shared with the layers above, see :class:`RetryBudget`)."""
    return Retry(inner, backoff=backoff, predicate=predicate, status_codes=status_codes,
                 max_retry_after=max_retry_after, budget=budget)


__all__ = ["BUDGET_MEMORY", "DEFAULT_RETRY_STATUS_CODES", "MAX_RETRY_AFTER", "REMOTE_BACKOFF", "Backoff", "Retry",
           "RetryBudget", "RetryBudgetSpent", "current_budget", "describe_wait", "is_retryable", "new_retry",
           "parse_retry_after", "refused_wait", "retry_budget", "retry_lane"]
