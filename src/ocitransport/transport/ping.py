"""``ping``: ``GET /v2/`` without credentials, to learn how a registry wants to be authenticated."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._challenges import parse_challenges
from .._urls import AddressGuard
from .._values import Challenge
from ..exceptions import OCITransportError, TransportError
from ..messages import Request, Response
from ..redirects import Redirects
from ..roundtrip import Read, RoundTripper, Send, Steps, drive_async, drive_sync
from .errors import MAX_ERROR_BODY, make_error

if TYPE_CHECKING:
    from ..name import Registry

#: Connect timeout of the HTTPS probe when a plain-HTTP fallback is allowed. Upstream races the two
#: schemes with a 300 ms head start for HTTPS; sequential probing with a short HTTPS connect timeout
#: gives the same answer where the fallback applies (loopback and private addresses, where a closed
#: or plain port answers at once) without a second connection per ping (docs/deviations.md).
FALLBACK_CONNECT_TIMEOUT = 3.0


class PingError(OCITransportError):
    """Neither scheme answered as a registry (200 or 401); ``errors`` holds each scheme's error."""

    def __init__(self, registry: str, errors: list[BaseException]) -> None:
        super().__init__(f"ping {registry}: " + "; ".join(str(e) for e in errors))
        self.errors = errors


def as_registry(registry: Registry | str) -> Registry:
    from ..name import Registry

    return registry if isinstance(registry, Registry) else Registry(registry)


def ping_steps(registry: Registry, inner: RoundTripper) -> Steps[Challenge]:
    """The ping, as round-trip steps (see ``roundtrip``), for both faces."""
    schemes = ["https", "http"] if registry.allows_http_fallback else ["https"]
    # A ping redirect is a URL the registry hands us: the SSRF rule applies (and its own host is fine).
    via = Redirects(inner, check=AddressGuard(registry.name, what="ping redirect"))
    errors: list[BaseException] = []
    for scheme in schemes:
        # A short connect limit for the probe only; the Client's other limits (first byte, stall, rate)
        # hold as for every request.
        ext = {"connect_timeout": FALLBACK_CONNECT_TIMEOUT} if len(schemes) > 1 else None
        # Streamed: an error body is read only up to MAX_ERROR_BODY, never buffered whole.
        request = Request("GET", f"{scheme}://{registry.name}/v2/", stream=True, extensions=ext)
        try:
            response: Response = yield Send(request, via)
        except TransportError as exc:
            errors.append(exc)
            continue
        insecure = response.url.startswith("http://") if response.url else scheme == "http"
        if response.status == 200:
            response.close()
            return Challenge("", {}, insecure)
        if response.status == 401:
            values = response.headers.get_all("www-authenticate")
            response.close()
            challenges = parse_challenges(values)
            for ch in challenges:
                if ch.scheme in ("basic", "bearer"):
                    ch.insecure = insecure
                    return ch
            if challenges:
                challenges[0].insecure = insecure
                return challenges[0]
            return Challenge(values[0] if values else "", {}, insecure)
        body = yield Read(response, MAX_ERROR_BODY, "error body")
        # Any other status is this scheme's error, and the next scheme is still tried, as upstream's
        # pingParallel does (go-containerregistry pkg/v1/remote/transport/ping.go): a front end that
        # answers 404 or 500 on HTTPS must not hide a plain-HTTP registry on the same port.
        errors.append(make_error(response, body))
    if len(errors) == 1:
        raise errors[0]
    raise PingError(registry.name, errors)


def ping(registry: Registry | str, inner: RoundTripper) -> Challenge:
    """``GET /v2/`` on ``registry`` through ``inner``: a Challenge with an empty scheme when no auth is
    needed, else the registry's preferred (basic or bearer) challenge. HTTPS first; plain HTTP only for
    registries the name rules allow it for (``Challenge.insecure`` then says which one answered)."""
    return drive_sync(ping_steps(as_registry(registry), inner), inner)


async def ping_async(registry: Registry | str, inner: RoundTripper) -> Challenge:
    """``ping`` on the running event loop."""
    return await drive_async(ping_steps(as_registry(registry), inner), inner)
