"""The Bearer layer: token exchange, a shared single-flight token cache, refresh before expiry, scope
upgrades, and per-request anonymous tokens for other hosts.

Upstream keeps one token per transport and refreshes only after a 401. Here every layer of a Client
shares one ``TokenCache``: one token per (registry, realm, service, scope set, credentials); a token is
refreshed shortly *before* it expires; and when a hundred requests need a token at once, one of them
fetches it while the others wait for that one answer (single flight). Every deliberate difference
from upstream is listed in docs/deviations.md.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import math
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from .._challenges import parse_challenges
from .._numbers import MAX_DIGITS, parse_number
from .._redaction import redact_token_body, redact_url
from .._scopes import merge_scopes, parse_scope, token_query
from .._tokens import TokenCache, _Entry
from .._urls import AddressGuard, address_kind, authority, describe, host_address, origin
from .._values import Challenge
from ..exceptions import OCITransportError, RedirectError, RequestCancelled
from ..messages import Request, Response
from ..redirects import Redirects
from ..roundtrip import Exchange, Layer, Read, RoundTripper, Send, Steps, Wait, drive_async, drive_sync
from .basic import BasicAuth, HostMatch
from .errors import make_error

if TYPE_CHECKING:
    from ..authn import AuthConfig, Authenticator

#: Largest token-endpoint body read (upstream's maxTokenBodySize).
MAX_TOKEN_BODY = 64 * 1024
#: Lifetime assumed when a token response has no usable ``expires_in`` (distribution token spec: 60 s).
DEFAULT_EXPIRES_IN = 60.0
#: ``client_id`` sent in OAuth2 POSTs.
CLIENT_ID = "ocitransport"
#: OAuth2 POST failures after which the token GET is tried (upstream: 404 only; Harbor answers 405,
#: and containerd falls back on 401/403 too).
POST_FALLBACK_STATUSES = frozenset({400, 401, 403, 404, 405})


def _scope_set(scopes: list[str]) -> frozenset[tuple[str, ...]]:
    """What ``scopes`` grant, independent of order and spelling: ``repository:a:push,pull`` and
    ``repository:a:pull,push`` are the same grant (registries echo actions in their own order)."""
    out: set[tuple[str, ...]] = set()
    for scope in scopes:
        try:
            parsed = parse_scope(scope)
        except ValueError:  # not TYPE:NAME:ACTIONS: compared as it is spelled
            out.add((scope,))
        else:
            out.add((parsed.type, parsed.name, *sorted(parsed.actions)))
    return frozenset(out)


class TokenError(OCITransportError):
    """A token could not be obtained or understood (bad realm, bad response, no token)."""


@dataclass(frozen=True)
class Token:
    """A token-endpoint answer. ``access_token`` wins over ``token`` when both are set."""

    token: str
    access_token: str = ""
    refresh_token: str = ""
    expires_in: float = 0

    @property
    def value(self) -> str:
        """The bearer token to send."""
        return self.access_token or self.token

    def __repr__(self) -> str:
        return (f"Token(token=<{'set' if self.token else 'empty'}>, access_token=<"
                f"{'set' if self.access_token else 'empty'}>, refresh_token=<"
                f"{'set' if self.refresh_token else 'empty'}>, expires_in={self.expires_in!r})")


def parse_token(body: bytes, registry: str) -> Token:
    """Decode a token response; the error names the registry and never shows a token."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise TokenError(f"token response for {registry} is not JSON: {redact_token_body(body)}") from None
    if not isinstance(data, dict):
        raise TokenError(f"token response for {registry} is not a JSON object")
    token = data.get("token")
    access = data.get("access_token")
    token = token if isinstance(token, str) else ""
    access = access if isinstance(access, str) else ""
    if not token and not access:
        raise TokenError(f"no token in bearer response from {registry}:\n{redact_token_body(body)}")
    refresh = data.get("refresh_token")
    return Token(token, access, refresh if isinstance(refresh, str) else "", _expires_in(data.get("expires_in")))


def _expires_in(value: Any) -> float:
    """``expires_in`` seconds (a JSON number, or a string of ASCII digits as some servers send it); 0 (the
    default lifetime) when absent, not positive, not finite or not a number (float() would take "1e9",
    " 12 " and "١٢"). issued_at is not read: the lifetime counts from our receipt of the token."""
    if isinstance(value, str):
        value = parse_number(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0.0
    seconds = float(value) if value < 10 ** MAX_DIGITS else 0.0
    return seconds if 0.0 < seconds < math.inf else 0.0


def validate_realm(realm: str, registry_host: str, insecure: bool) -> None:
    """Upstream's realm SSRF guard: https (http only for an insecure registry); the registry's own
    host:port always allowed; other loopback, private, link-local, unspecified or multicast addresses
    refused in every spelling libcurl connects to (``2852039166``, ``0xa9fea9fe``, ``127.1``,
    ``[::ffff:a9fe:a9fe]``...). A DNS name is judged by the address it resolves to, when the token
    request connects (the engine's guard)."""
    try:
        parts = urlsplit(realm)
        host = parts.hostname or ""
    except ValueError as exc:
        raise TokenError(f'invalid realm in www-authenticate: parsing realm "{realm}": {exc}') from None
    if parts.scheme == "http" and not insecure:
        raise TokenError('invalid realm in www-authenticate: realm scheme "http" not allowed for a secure '
                         "registry; use https")
    if parts.scheme not in ("http", "https"):
        raise TokenError(f'invalid realm in www-authenticate: realm scheme "{parts.scheme}" not allowed; '
                         "must be https (or http for insecure registries)")
    if not host:
        raise TokenError(f'invalid realm in www-authenticate: parsing realm "{realm}": no host')
    if registry_host and parts.netloc.rpartition("@")[2] == registry_host:
        return
    # A token server on the registry's own machine (another port of the same IP literal) is no step
    # into the network beyond what the registry already is; upstream (#2258) only allows the very same
    # host:port, which breaks a registry on 127.0.0.1:5000 with its token server on 127.0.0.1:5001.
    if registry_host and AddressGuard(registry_host).is_registry(host):
        return
    kind = address_kind(host)
    if kind:
        raise TokenError(f'invalid realm in www-authenticate: realm host "{host}" is a private or '
                         f"link-local address ({host_address(host)}, {describe(kind)})")


class _RealmGuard(AddressGuard):
    """The realm rule for the token server's redirects (``validate_realm`` on every hop), and the
    address rule the engine applies to token requests that leave the registry's host.

    A token server named by DNS may be on a private address when the registry itself is on a loopback or
    private one (GitLab: registry.corp and its token endpoint gitlab.corp on the same private network);
    literal private realms stay refused by ``validate_realm``, as upstream does."""

    __slots__ = ("insecure",)

    def __init__(self, registry_host: str, insecure: bool) -> None:
        super().__init__(registry_host, private_storage=None, what="token request")
        self.insecure = insecure

    def __call__(self, from_url: str, to_url: str) -> None:
        try:
            validate_realm(to_url, self.registry, self.insecure)
        except TokenError as exc:
            raise RedirectError(f'refusing token-server redirect to "{redact_url(to_url)}": '
                                f"{str(exc).removeprefix('invalid realm in www-authenticate: ')}") from None


def _redirect_guard(registry_host: str, insecure: bool) -> _RealmGuard:
    return _RealmGuard(registry_host, insecure)


def _guarded(via: Redirects, url: str) -> dict[str, Any] | None:
    """The engine's address guard for a token request to ``url`` (none on the registry's own host)."""
    guard = via.check
    if isinstance(guard, AddressGuard) and not guard.is_registry(origin(url)[1]):
        return {"address_guard": guard}
    return None


def token_cache_for(rt: RoundTripper) -> TokenCache:
    """The TokenCache Bearer layers built on ``rt`` share: ``rt.token_cache`` (a Client's own)."""
    return rt.token_cache


def _credential_id(auth: Authenticator) -> str:
    cfg: AuthConfig = auth.authorization()
    raw = "\0".join((cfg.username, cfg.password, cfg.auth, cfg.identity_token, cfg.registry_token))
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class BearerAuth(Layer):
    """Adds ``Authorization: Bearer`` to requests for the registry and keeps the token fresh."""

    __slots__ = ("registry", "auth", "realm", "service", "scopes", "insecure", "cache", "matches",
                 "password_grant", "_cred", "_lock", "_token_get", "_token_post", "_key_of")

    def __init__(
        self,
        inner: RoundTripper,
        *,
        registry: str,
        auth: Authenticator,
        challenge: Challenge,
        scopes: list[str] | None = None,
        cache: TokenCache | None = None,
        password_grant: bool = False,
    ) -> None:
        super().__init__(inner)
        realm = challenge.parameters.get("realm")
        if not realm:
            raise TokenError(f"malformed www-authenticate, missing realm: {challenge.parameters}")
        validate_realm(realm, registry, challenge.insecure)
        self.registry = registry
        self.auth = auth
        self.realm = realm
        self.service = challenge.parameters.get("service", "")
        self.scopes: list[str] = list(scopes or [])
        self.insecure = challenge.insecure
        self.cache = inner.token_cache if cache is None else cache
        self.matches = HostMatch(registry, "http" if challenge.insecure else "https")
        self.password_grant = password_grant
        self._cred = _credential_id(auth)
        self._key_of: tuple[list[str], tuple[Any, ...]] | None = None
        self._lock = threading.Lock()
        guard = _redirect_guard(registry, urlsplit(realm).scheme == "http")
        realm_host = authority(realm)
        self._token_get = Redirects(BasicAuth(inner, auth, realm_host, urlsplit(realm).scheme), check=guard)
        self._token_post = Redirects(inner, check=guard)

    # -- the layer ------------------------------------------------------------------------------
    # Both faces take a fast path for the common case (a request for the registry while the cached
    # token is fresh): no generator, no lock, one header copy. Everything else - fetching, waiting on
    # another request's fetch, 401s - goes through ``handle``, the one place the logic lives.
    def _fresh(self, request: Request) -> tuple[list[str], _Entry] | None:
        if not self.matches(request.url):
            return None
        scopes = self.scopes
        cached = self._key_of
        key = cached[1] if cached is not None and cached[0] is scopes else self._key(scopes)
        entry = self.cache.entries.get(key)  # a dict read needs no lock
        if entry is None or time.monotonic() >= entry.refresh_at:
            return None
        return scopes, entry

    def round_trip(self, request: Request) -> Response:
        fresh = self._fresh(request)
        if fresh is None:
            return drive_sync(self.handle(request), self.inner)
        scopes, entry = fresh
        response = self.inner.round_trip(request.with_header("Authorization", entry.header, "authorization"))
        if response.status != 401:
            return response
        return drive_sync(self._unauthorized(request, scopes, entry.token, response), self.inner)

    async def round_trip_async(self, request: Request) -> Response:
        fresh = self._fresh(request)
        if fresh is None:
            return await drive_async(self.handle(request), self.inner)
        scopes, entry = fresh
        response = await self.inner.round_trip_async(
            request.with_header("Authorization", entry.header, "authorization"))
        if response.status != 401:
            return response
        return await drive_async(self._unauthorized(request, scopes, entry.token, response), self.inner)

    def handle(self, request: Request) -> Exchange:
        response: Response
        if not self.matches(request.url):
            response = yield request
            if response.status == 401:
                response = yield from self._other_host(request, response)
            return response
        scopes = self.scopes
        token = yield from self._token(scopes)
        response = yield request.with_header("Authorization", f"Bearer {token}", "authorization")
        if response.status != 401:
            return response
        return (yield from self._unauthorized(request, scopes, token, response))

    def _unauthorized(self, request: Request, scopes: list[str], token: str, response: Response) -> Exchange:
        """A 401 for ``token``: upgrade the scopes the registry asks for (or refresh a token it
        rejects) and send the request once more."""
        challenges = parse_challenges(response.headers.get_all("www-authenticate"))
        if not challenges:
            return response
        wanted = [s for c in challenges for s in c.parameters.get("scope", "").split() if s]
        with self._lock:
            merged = merge_scopes(wanted, self.scopes) if wanted else self.scopes
            if _scope_set(merged) == _scope_set(scopes):
                # The same grants spelled differently (a challenge saying "pull,push" for our
                # "push,pull"): a refresh of the rejected token, not an upgrade to a new cache key.
                merged = scopes
            else:
                self.scopes = merged
        if not request.replayable:
            # The body cannot be sent again: the caller gets the 401, but a token the registry
            # rejected (one that died early) is not handed to its next attempt.
            if merged is scopes:
                self.cache.discard(self._key(scopes), token)
            return response
        response.close()
        token = yield from self._token(merged, stale=token if merged == scopes else None)
        request.rewind()
        again: Response = yield request.with_header("Authorization", f"Bearer {token}", "authorization")
        return again

    # -- tokens ---------------------------------------------------------------------------------
    def _key(self, scopes: list[str]) -> tuple[Any, ...]:
        # Scope lists are replaced, never mutated, so the key of the current list is kept.
        cached = self._key_of
        if cached is not None and cached[0] is scopes:
            return cached[1]
        key = (self.registry, self.realm, self.service, _scope_set(scopes), self._cred)
        self._key_of = (scopes, key)
        return key

    def _token(self, scopes: list[str], stale: str | None = None) -> Steps[str]:
        """A usable token for ``scopes``: cached, being fetched by another request, or fetched here."""
        cache = self.cache
        key = self._key(scopes)
        for _ in range(3):
            now = time.monotonic()
            with cache.lock:
                entry = cache.entries.get(key)
                usable = entry is not None and entry.token != stale and now < entry.expires_at
                if usable and now < entry.refresh_at:  # type: ignore[union-attr]
                    return entry.token  # type: ignore[union-attr]
                flight = cache.flights.get(key)
                leader = flight is None
                if leader:
                    flight = cache.flights[key] = concurrent.futures.Future()
                    cache.fetches += 1
            if not leader:
                if usable:
                    return entry.token  # type: ignore[union-attr]  # due for refresh, still valid
                token: str = yield Wait(flight)  # type: ignore[arg-type]
                if token != stale:
                    return token
                continue
            try:
                tok = yield from self.fetch(scopes)
            except BaseException as exc:
                with cache.lock:
                    cache.flights.pop(key, None)
                flight.set_exception(exc if isinstance(exc, Exception)  # type: ignore[union-attr]
                                     else RequestCancelled("token request cancelled"))
                raise
            lifetime = tok.expires_in or DEFAULT_EXPIRES_IN
            with cache.lock:
                cache.put(key, tok.value, lifetime, time.monotonic())
                cache.flights.pop(key, None)
            flight.set_result(tok.value)  # type: ignore[union-attr]
            return tok.value
        raise TokenError(f"the token server for {self.registry} keeps returning a token the registry rejects")

    def seed(self, token: Token) -> None:
        """Put a token obtained earlier (``exchange``) in the cache for this layer's scopes."""
        self.cache.store(self._key(self.scopes), token.value, token.expires_in or DEFAULT_EXPIRES_IN, time.monotonic())

    def fetch(self, scopes: list[str]) -> Steps[Token]:
        """A new token for ``scopes``: a credential's registry token as it is (upstream's bearer
        refresh), else one from the realm (a network exchange, no cache)."""
        cfg = self.auth.authorization()
        if cfg.registry_token:
            return Token(cfg.registry_token)
        return (yield from self.exchange(scopes, cfg))

    def exchange(self, scopes: list[str], cfg: AuthConfig | None = None) -> Steps[Token]:
        """A token from the realm, always over the network (upstream's ``Exchange``): a registry token
        is not handed back; it goes to the realm as ``Authorization: Bearer`` like any credential."""
        if cfg is None:
            cfg = self.auth.authorization()
        if cfg.identity_token or (self.password_grant and cfg.username and cfg.password):
            try:
                tok = yield from self._post(cfg, scopes)
            except Exception as exc:
                from .errors import Error

                if not (isinstance(exc, Error) and exc.status_code in POST_FALLBACK_STATUSES):
                    raise
                tok = yield from self._get(scopes)
        else:
            tok = yield from self._get(scopes)
        if tok.refresh_token:
            from ..authn import IdentityToken

            # A refresh token replaces the credential from now on (upstream does the same); the cache key
            # keeps the original credential's identity so every layer still shares the token.
            self.auth = IdentityToken(tok.refresh_token)
        return tok

    def _get(self, scopes: list[str]) -> Steps[Token]:
        base, _, query = self.realm.partition("?")
        url = f"{base}?{token_query(self.service, scopes, query)}"
        # Streamed, so that Read stops at MAX_TOKEN_BODY instead of buffering an endless body first.
        response = yield Send(Request("GET", url, stream=True, extensions=_guarded(self._token_get, url)),
                              self._token_get)
        return (yield from self._token_response(response))

    def _post(self, cfg: AuthConfig, scopes: list[str]) -> Steps[Token]:
        form: dict[str, str] = {}
        if cfg.identity_token:
            form.update(grant_type="refresh_token", refresh_token=cfg.identity_token)
        else:
            form.update(grant_type="password", username=cfg.username, password=cfg.password)
        form["client_id"] = CLIENT_ID
        if self.service:
            form["service"] = self.service
        if scopes:
            form["scope"] = " ".join(scopes)
        request = Request("POST", self.realm, {"Content-Type": "application/x-www-form-urlencoded"},
                          urlencode(form).encode(), stream=True, extensions=_guarded(self._token_post, self.realm))
        response = yield Send(request, self._token_post)
        return (yield from self._token_response(response))

    def _token_response(self, response: Response) -> Steps[Token]:
        body = yield Read(response, MAX_TOKEN_BODY, "token response")
        if response.status != 200:
            raise make_error(response, body)
        return parse_token(body, self.registry)

    def _other_host(self, request: Request, response: Response) -> Exchange:
        """A 401 from another host (after a redirect): an anonymous token from that host's own realm,
        valid for this one request. The registry's token never goes there."""
        if not request.replayable:
            return response
        scheme = origin(request.url)[0]
        other = authority(request.url)
        for ch in parse_challenges(response.headers.get_all("www-authenticate")):
            realm = ch.parameters.get("realm")
            if ch.scheme != "bearer" or not realm:
                continue
            try:
                validate_realm(realm, other, scheme == "http")
            except TokenError:
                continue
            from ..authn import Anonymous

            # Its own throwaway cache: the token is for this one request, not for the Client's.
            anon = BearerAuth(self.inner, registry=other, auth=Anonymous, cache=TokenCache(),
                              challenge=Challenge(ch.scheme, ch.parameters, insecure=scheme == "http"))
            try:
                tok = yield from anon._get([ch.parameters.get("scope", "")])
            except Exception:  # noqa: BLE001 - try the next challenge, then send once more as is
                continue
            response.close()
            request.rewind()
            with_token: Response = yield request.with_header("Authorization", f"Bearer {tok.value}")
            return with_token
        response.close()
        request.rewind()
        plain: Response = yield request
        return plain


__all__ = ["BearerAuth", "Token", "TokenCache", "TokenError", "parse_token", "token_cache_for",
           "validate_realm"]
