"""Following redirects: one ``Layer`` generator serves the sync and async faces.

libcurl's own FOLLOWLOCATION stays off: which credentials survive a hop and which hops are allowed
at all (the registry layers pass an SSRF guard as ``check``) are decisions of ours.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urljoin, urlsplit

from ._redaction import redact_url
from ._urls import DEFAULT_PORTS, AddressGuard, check_location, origin
from .exceptions import RedirectError
from .messages import Request, Response
from .roundtrip import Exchange, Layer, RoundTripper

__all__ = ["REDIRECT_STATUSES", "Redirects"]

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
#: Dropped whenever scheme, host or port changes (Go's net/http drops the same on a new host).
SENSITIVE_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
#: Dropped when a redirect turns the request into a body-less GET.
BODY_HEADERS = frozenset({"content-length", "content-type", "content-encoding", "transfer-encoding",
                          "content-md5", "digest"})
class Redirects(Layer):
    """Follow 301/302/303/307/308 up to ``max_redirects`` hops (``RedirectError`` beyond).

    * ``Location`` is resolved against the current URL; only http and https targets are followed.
    * 303 (except for HEAD), and 301/302 answering a POST, become a GET without body.
    * Other redirects re-send the method and body: that needs ``request.replayable`` (bytes, a
      seekable file, or no body), else ``RedirectError`` says why.
    * ``Authorization``, ``Proxy-Authorization`` and ``Cookie`` are dropped as soon as scheme, host
      or port differ from the previous hop.
    * Every intermediate response is closed (a streaming body is not left holding a connection).
    * ``check(from_url, to_url)`` runs before each hop and may raise to refuse it. When it is an
      ``AddressGuard`` (the registry layers' SSRF rule), every hop to another host also carries it to
      the engine, which checks the address libcurl connects to (``AddressRefused``); the first request
      asks for its connection's address, so the registry's own address is known to the guard.
    * A ``Location`` longer than ``MAX_LOCATION`` (8 KiB) is refused at once (``RedirectError``).

    A 3xx without ``Location`` is returned as it is. The final response's ``url`` is the last URL.
    """

    __slots__ = ("check", "max_redirects")

    def __init__(self, inner: RoundTripper, *, max_redirects: int = 10,
                 check: Callable[[str, str], None] | None = None) -> None:
        super().__init__(inner)
        self.max_redirects = max_redirects
        self.check = check

    def handle(self, request: Request) -> Exchange:
        current = request
        guard = self.check if isinstance(self.check, AddressGuard) else None
        if guard is not None and not request.extensions.get("primary_ip"):
            current = request.copy()
            current.extensions = {**request.extensions, "primary_ip": True}
        hops = 0
        while True:
            response: Response = yield current
            if guard is not None and hops == 0:
                guard.learn(response.extensions)  # the registry's own address
            if response.status not in REDIRECT_STATUSES:
                return response
            location = response.headers.get("Location")
            if not location:
                return response
            response.close()
            check_location(location, f"{current.method} {redact_url(current.url)}")
            if hops >= self.max_redirects:
                raise RedirectError(f"{request.method} {redact_url(request.url)}: stopped after "
                                    f"{self.max_redirects} redirects")
            hops += 1
            current = self.next_request(current, response.status, location)

    def resume(self, request: Request, response: Response) -> Exchange:
        """``handle(request)`` as it stands once ``request`` was sent and ``response`` came back.

        Senders that try the plain request first (the engine's fast path) call this only when the
        response is a redirect, so requests that are not redirected never pay for the generator.
        """
        gen = self.handle(request)
        first = gen.send(None)
        assert first.url == request.url  # (a guard asks for the connected address on a copy)
        return _continue(gen, response)

    def next_request(self, current: Request, status: int, location: str) -> Request:
        """The request for the next hop (raises ``RedirectError`` when the hop is refused)."""
        target = urljoin(current.url, location.strip())
        scheme = urlsplit(target).scheme.lower()
        if scheme not in DEFAULT_PORTS:
            raise RedirectError(f"{current.method} {redact_url(current.url)}: redirect to unsupported "
                                f"scheme {scheme!r}")
        if self.check is not None:
            self.check(current.url, target)
        extensions = current.extensions
        if isinstance(self.check, AddressGuard) and not self.check.is_registry(origin(target)[1]):
            extensions = {**extensions, "address_guard": self.check}
        elif "address_guard" in extensions:
            extensions = {k: v for k, v in extensions.items() if k != "address_guard"}
        method = current.method
        drop_body = (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST")
        headers = current.headers.copy()
        if origin(target) != origin(current.url):
            for name in headers.keys():  # noqa: SIM118 - a list copy: deleting while iterating
                if name.lower() in SENSITIVE_HEADERS:
                    del headers[name]
        if drop_body:
            for name in headers.keys():  # noqa: SIM118 - a list copy: deleting while iterating
                if name.lower() in BODY_HEADERS:
                    del headers[name]
            new = current.copy(url=target, method="GET" if method != "HEAD" else method,
                               headers=headers, body=None)
            new.extensions = extensions
            return new
        if not current.replayable:
            raise RedirectError(
                f"{method} {redact_url(current.url)}: {status} redirect to {redact_url(target)} needs the "
                "request body again, but it is a one-shot iterator; send bytes or a seekable file")
        new = current.copy(url=target, headers=headers)
        new.extensions = extensions
        return new


def _continue(gen: Exchange, value: object) -> Exchange:
    """Forward a started generator, first sending it ``value`` (steps, results and errors pass through)."""
    try:
        step = gen.send(value)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    while True:
        try:
            received = yield step
        except BaseException as exc:  # noqa: BLE001 - handed to the layer, as drive_* would
            try:
                step = gen.throw(exc)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
        else:
            try:
                step = gen.send(received)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
