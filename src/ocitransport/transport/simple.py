"""Layers that only touch the request on its way in, and the ``Wrapper`` marker."""

from __future__ import annotations

from .. import __version__
from .._tokens import TokenCache
from .._urls import origin, with_scheme
from ..messages import REQUEST_SLOTS, Request  # noqa: F401 - REQUEST_SLOTS: re-exported with set_header
from ..roundtrip import RequestLayer, RoundTripper

#: Our product token, appended to the caller's User-Agent as upstream appends its own.
PRODUCT = f"ocitransport/{__version__}"

#: ``set_header(request, name, value, key)`` is ``request.with_header(name, value, key)`` (one copy).
set_header = Request.with_header


class UserAgent(RequestLayer):
    """Sets ``User-Agent`` on every request: ``"<caller's ua> ocitransport/<version>"``."""

    __slots__ = ("value",)

    def __init__(self, inner: RoundTripper, ua: str = "") -> None:
        super().__init__(inner)
        self.value = f"{ua} {PRODUCT}" if ua else PRODUCT

    def prepare(self, request: Request) -> Request:
        items = request.headers._items
        if items:
            found = [v for k, v in items if k.lower() == "user-agent"]
            if found == [self.value]:
                return request
        return request.with_header("User-Agent", self.value, "user-agent")


def new_user_agent(inner: RoundTripper, ua: str = "") -> RoundTripper:
    """Wrap ``inner`` in a user-agent layer, unless it already is one (no double wrapping)."""
    if isinstance(inner, UserAgent):
        return inner
    return UserAgent(inner, ua)


class Scheme(RequestLayer):
    """Sends requests for the registry's host with the scheme the ping settled on (http or https);
    other hosts (token servers, blob storage) keep theirs."""

    __slots__ = ("host", "port", "scheme", "prefix")

    def __init__(self, inner: RoundTripper, registry_host: str, port: int, scheme: str) -> None:
        super().__init__(inner)
        self.host, self.port, self.scheme = registry_host, port, scheme
        self.prefix = f"{scheme}://"

    def prepare(self, request: Request) -> Request:
        if request.url.startswith(self.prefix):
            return request
        scheme, host, port = origin(request.url)
        if scheme == self.scheme or host != self.host:
            return request
        # The port stays as written: a registry named without a port is reached on the new scheme's
        # default port.
        if port != self.port and port != {"http": 80, "https": 443}.get(scheme):
            return request
        return request.copy(url=with_scheme(request.url, self.scheme))


class Wrapper(RoundTripper):
    """Marks a round-tripper as fully set up: ``new()`` returns a Wrapper it is given unchanged."""

    __slots__ = ("inner",)

    def __init__(self, inner: RoundTripper) -> None:
        self.inner = inner

    @property
    def token_cache(self) -> TokenCache:
        return self.inner.token_cache

    def round_trip(self, request: Request):  # type: ignore[no-untyped-def]
        return self.inner.round_trip(request)

    async def round_trip_async(self, request: Request):  # type: ignore[no-untyped-def]
        return await self.inner.round_trip_async(request)
