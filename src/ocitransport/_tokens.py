"""``TokenCache``: the bearer tokens of one Client, shared by every Bearer layer built on it.

Plain data and one lock (no I/O): the Client owns one and hands it down its chain of layers
(``RoundTripper.token_cache``); ``transport/bearer.py`` fetches, refreshes and single-flights the tokens.
"""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any

__all__ = ["TokenCache"]


class _Entry:
    """A cached token, its ``Authorization`` value (built once, sent with every request) and times."""

    __slots__ = ("token", "header", "expires_at", "refresh_at")

    def __init__(self, token: str, expires_at: float, refresh_at: float) -> None:
        self.token = token
        self.header = f"Bearer {token}"
        self.expires_at = expires_at
        self.refresh_at = refresh_at


class TokenCache:
    """Tokens shared by every Bearer layer of one Client, with one fetch in flight per key."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: dict[tuple[Any, ...], _Entry] = {}
        self.flights: dict[tuple[Any, ...], concurrent.futures.Future[str]] = {}
        #: Token fetches made, for reports and tests.
        self.fetches = 0

    def put(self, key: tuple[Any, ...], token: str, lifetime: float, now: float) -> None:
        """Cache ``token`` under ``key`` for ``lifetime`` seconds from ``now`` (the caller holds ``lock``)."""
        # Refresh ahead of expiry by a fifth of the lifetime, at most 30 s: long enough that a request
        # never leaves with a token that dies on the way, short enough to keep tokens in use.
        margin = min(30.0, lifetime / 5)
        self.entries[key] = _Entry(token, now + lifetime, now + lifetime - margin)

    def discard(self, key: tuple[Any, ...], token: str) -> None:
        """Forget ``token`` under ``key`` (the registry rejected it): the next request fetches anew."""
        with self.lock:
            entry = self.entries.get(key)
            if entry is not None and entry.token == token:
                del self.entries[key]

    def store(self, key: tuple[Any, ...], token: str, lifetime: float, now: float) -> None:
        """``put`` under the cache's lock (for a token obtained elsewhere, ``transport.from_token``)."""
        with self.lock:
            self.put(key, token, lifetime, now)
