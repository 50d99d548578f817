"""The exception hierarchy of ocitransport: everything raised on purpose derives from OCITransportError.

Messages name the registry, repository, URL (redacted) and operation; they never contain a secret.
"""

from __future__ import annotations


class OCITransportError(Exception):
    """Root of every error ocitransport raises on purpose."""


class TransportError(OCITransportError):
    """A request could not be completed at the network level.

    ``curl_code`` is libcurl's error number (``CURLE_*``) when the error came from libcurl, else ``None``;
    ``url`` is the request URL with secrets redacted.
    """

    def __init__(self, message: str, *, url: str | None = None, curl_code: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.curl_code = curl_code


class ConnectError(TransportError):
    """The connection could not be established (refused, DNS failure, unreachable)."""


class TimeoutError(TransportError):
    """A connect, total or low-speed (stall) timeout expired."""


class ConnectTimeout(TimeoutError):
    """The connect timeout expired before the connection (TCP and TLS) was up."""


class ReadTimeout(TimeoutError):
    """The total or stall timeout expired while the response was awaited or received."""


class WriteTimeout(TimeoutError):
    """The total or stall timeout expired while the request body was being sent."""


class TLSError(ConnectError):
    """TLS handshake or certificate verification failed."""


class ProxyError(ConnectError):
    """The proxy could not be resolved or refused to set up the tunnel."""


class InvalidURL(TransportError):
    """The URL could not be parsed (libcurl's URL_MALFORMAT)."""


class UnsupportedProtocol(InvalidURL):
    """The URL's scheme is not http or https."""


class ProtocolError(TransportError):
    """The peer broke HTTP (malformed response, bad framing, HTTP/2 stream error)."""


class ReadError(TransportError):
    """Receiving the response failed part-way (reset, truncated body)."""


class WriteError(TransportError):
    """Sending the request failed part-way (reset, body source failed)."""


class RequestCancelled(TransportError):
    """The request was cancelled by its caller before it completed."""


class PoolTimeout(TimeoutError):
    """No connection slot became free in time."""


class BodyTooLarge(OCITransportError):
    """A response body exceeded the documented limit for what it is (error body, token, manifest)."""

    def __init__(self, limit: int, what: str = "body") -> None:
        super().__init__(f"{what} exceeds {limit} byte limit")
        self.limit = limit


class RedirectError(OCITransportError):
    """A redirect was refused: too many hops, a missing Location, or an SSRF guard."""


class AddressRefused(RedirectError):
    """The SSRF guard refused the address a URL a server handed us leads to (a redirect, an upload
    ``Location``, a token realm, a ``Link``); ``address`` is the IP, ``kind`` why. Never retried."""

    def __init__(self, message: str, *, address: str = "", kind: str = "") -> None:
        super().__init__(message)
        self.address = address
        self.kind = kind


class ClientClosed(OCITransportError):
    """The Client was closed; no new request can start."""
