"""The logging layer: one line out, one line back, under the ``ocitransport`` logger, secrets redacted.

URLs go through ``redact_url`` (upstream logs them raw), header values of ``Authorization``, cookies and
registry-auth headers are masked, and token-endpoint bodies are never logged. When DEBUG is off for
the logger the layer costs one ``isEnabledFor`` call per request. See docs/deviations.md.
"""

from __future__ import annotations

import logging
import re
import time

from .._redaction import redact_headers, redact_url
from ..messages import Request, Response
from ..roundtrip import Exchange, Layer, RoundTripper

log = logging.getLogger("ocitransport.transport")

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")


def redact_text(text: str) -> str:
    """``text`` with every URL in it through ``redact_url`` (for error messages in log lines)."""
    return _URL.sub(lambda m: redact_url(m.group()), text)


class Logger(Layer):
    """Logs each request and its response (or error) at DEBUG, with timing."""

    __slots__ = ("log",)

    def __init__(self, inner: RoundTripper, logger: logging.Logger | None = None) -> None:
        super().__init__(inner)
        self.log = log if logger is None else logger

    def round_trip(self, request: Request) -> Response:
        if not self.log.isEnabledFor(logging.DEBUG):
            return self.inner.round_trip(request)
        return super().round_trip(request)

    async def round_trip_async(self, request: Request) -> Response:
        if not self.log.isEnabledFor(logging.DEBUG):
            return await self.inner.round_trip_async(request)
        return await super().round_trip_async(request)

    def handle(self, request: Request) -> Exchange:
        url = redact_url(request.url)
        self.log.debug("--> %s %s %s", request.method, url, redact_headers(request.headers.items()))
        start = time.monotonic()
        try:
            response: Response = yield request
        except Exception as exc:
            # The error's message too, as upstream's logger.go prints the error (not only its type);
            # any URL in it is redacted like the request's.
            self.log.debug("<-- %s: %s %s %s (%.1f ms)", type(exc).__name__, redact_text(str(exc)),
                           request.method, url, (time.monotonic() - start) * 1000)
            raise
        self.log.debug("<-- %d %s %s (%.1f ms) %s", response.status, request.method, url,
                       (time.monotonic() - start) * 1000, redact_headers(response.headers.items()))
        return response


def new_logger(inner: RoundTripper) -> Logger:
    """Wrap ``inner`` in a logging layer (active when the ``ocitransport`` logger is at DEBUG)."""
    return Logger(inner)
