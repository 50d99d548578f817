"""Fail fast on a registry that never answered: a round-tripper that marks a failed connection to a
host that has not answered once in this run (name not resolved, connection refused) as not worth
retrying, as skopeo fails at once on such a registry (containers/image docker/docker_client.go pings
once). A host that answered before keeps every retry: a refused connection there is a restart."""

from __future__ import annotations

import threading

from ._tokens import TokenCache
from ._urls import authority
from .exceptions import ConnectError, TLSError
from .messages import Request, Response
from .roundtrip import RoundTripper

__all__ = ["UNREACHABLE_CURL_CODES", "Reachability", "is_unreachable"]

#: libcurl's COULDNT_RESOLVE_PROXY (5), COULDNT_RESOLVE_HOST (6) and COULDNT_CONNECT (7): no answer at all.
UNREACHABLE_CURL_CODES = frozenset({5, 6, 7})


def is_unreachable(error: BaseException) -> bool:
    """Whether :class:`Reachability` marked ``error`` (the retry layer does not retry it)."""
    return bool(getattr(error, "unreachable", False))


class Reachability(RoundTripper):
    """Wraps ``inner``; remembers which hosts answered (any HTTP response) and marks connect errors to
    the others (``error.unreachable = True``). :attr:`unreachable` names the hosts that failed so."""

    def __init__(self, inner: RoundTripper) -> None:
        self.inner = inner
        self.answered: set[str] = set()
        self.unreachable: set[str] = set()
        self._lock = threading.Lock()

    @property
    def token_cache(self) -> TokenCache:
        """The inner round-tripper's (tokens stay shared with the Client)."""
        return self.inner.token_cache

    def _mark(self, request: Request, exc: Exception) -> None:
        if not isinstance(exc, ConnectError) or isinstance(exc, TLSError):
            return
        if exc.curl_code not in UNREACHABLE_CURL_CODES:
            return
        host = authority(request.url).lower()
        with self._lock:
            if host in self.answered:
                return
            self.unreachable.add(host)
        exc.unreachable = True  # type: ignore[attr-defined]

    def _ok(self, request: Request) -> None:
        host = authority(request.url).lower()
        if host not in self.answered:
            with self._lock:
                self.answered.add(host)
                self.unreachable.discard(host)

    def round_trip(self, request: Request) -> Response:
        try:
            response = self.inner.round_trip(request)
        except Exception as exc:
            self._mark(request, exc)
            raise
        self._ok(request)
        return response

    async def round_trip_async(self, request: Request) -> Response:
        try:
            response = await self.inner.round_trip_async(request)
        except Exception as exc:
            self._mark(request, exc)
            raise
        self._ok(request)
        return response
