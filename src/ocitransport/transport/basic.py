"""The Basic layer: the registry's credentials on requests for the registry's own host, nowhere else."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._urls import DEFAULT_PORTS, origin, split_authority
from ..messages import Request
from ..roundtrip import RequestLayer, RoundTripper

if TYPE_CHECKING:
    from ..authn import Authenticator


class HostMatch:
    """Whether a request URL is for one host: same host name, and the same port (a target written
    without a port matches the default port of the request's scheme). Upstream compares strings and
    misses ``r.example`` vs ``r.example:443``."""

    __slots__ = ("host", "port")

    def __init__(self, target: str, scheme: str = "https") -> None:
        host, port = split_authority(target, scheme)
        explicit = ":" in target.rpartition("]")[2]
        self.host = host
        self.port: int | None = port if explicit else None

    def __call__(self, url: str) -> bool:
        scheme, host, port = origin(url)
        if host != self.host:
            return False
        if self.port is None:
            return port == DEFAULT_PORTS.get(scheme)
        return port == self.port


class BasicAuth(RequestLayer):
    """Adds the authenticator's ``Authorization`` to requests whose host is ``target``.

    The authenticator is asked on every request (credentials may rotate); ``Anonymous`` adds nothing.
    """

    __slots__ = ("auth", "matches", "anonymous")

    def __init__(self, inner: RoundTripper, auth: Authenticator, target: str, scheme: str = "https") -> None:
        super().__init__(inner)
        from ..authn import Anonymous

        self.auth = auth
        self.anonymous = auth is Anonymous
        self.matches = HostMatch(target, scheme)

    def prepare(self, request: Request) -> Request:
        if self.anonymous or not self.matches(request.url):
            return request
        value = self.auth.authorization().authorization_header()
        if value is None:
            return request
        return request.with_header("Authorization", value)
