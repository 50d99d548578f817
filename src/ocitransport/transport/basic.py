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
    misses ``r.example`` vs ``r.example:443`` (docs/deviations.md)."""

    __slots__ = ("host", "port", "_seen")

    #: Distinct ``scheme://authority`` prefixes remembered per matcher (a layer sees a handful).
    MAX_SEEN = 64

    def __init__(self, target: str, scheme: str = "https") -> None:
        host, port = split_authority(target, scheme)
        explicit = ":" in target.rpartition("]")[2]
        self.host = host
        self.port: int | None = port if explicit else None
        self._seen: dict[str, bool] = {}

    def __call__(self, url: str) -> bool:
        # Asked on every request: the answer depends only on the URL's "scheme://authority" part,
        # which is cut out without parsing and looked up in this matcher's own small table.
        end = url.find("/", url.find("://") + 3)
        prefix = url if end == -1 else url[:end]
        seen = self._seen.get(prefix)
        if seen is None:
            seen = self._match(url)
            if len(self._seen) < self.MAX_SEEN:
                self._seen[prefix] = seen
        return seen

    def _match(self, url: str) -> bool:
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

    __slots__ = ("auth", "matches", "anonymous", "_header")

    def __init__(self, inner: RoundTripper, auth: Authenticator, target: str, scheme: str = "https") -> None:
        super().__init__(inner)
        from ..authn import Anonymous

        self.auth = auth
        self.anonymous = auth is Anonymous
        self.matches = HostMatch(target, scheme)
        # (credentials, header) of the last request: an AuthConfig is immutable, so the header is
        # re-encoded only when the authenticator hands out different credentials.
        self._header: tuple[object, str | None] = (None, None)

    def prepare(self, request: Request) -> Request:
        if self.anonymous or not self.matches(request.url):
            return request
        cfg = self.auth.authorization()
        last, value = self._header
        if cfg is not last:
            value = cfg.authorization_header()
            self._header = (cfg, value)
        if value is None:
            return request
        return request.with_header("Authorization", value, "authorization")
