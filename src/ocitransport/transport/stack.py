"""``new``, ``exchange`` and ``from_token``: build an authenticated transport for one registry."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .._urls import split_authority
from .._values import Challenge
from ..roundtrip import RoundTripper, Steps, drive_async, drive_sync
from .basic import BasicAuth
from .bearer import BearerAuth, Token, TokenError
from .ping import as_registry, ping_steps
from .simple import Scheme, Wrapper, new_user_agent

if TYPE_CHECKING:
    from ..authn import Authenticator
    from ..name import Registry


def _stack_steps(registry: Registry, auth: Authenticator, inner: RoundTripper, scopes: Sequence[str],
                 password_grant: bool) -> Steps[Wrapper]:
    challenge: Challenge = yield from ping_steps(registry, inner)
    rt = new_user_agent(inner)
    scheme = "http" if challenge.insecure else "https"
    host, port = split_authority(registry.name, scheme)
    rt = Scheme(rt, host, port, scheme)
    if challenge.scheme != "bearer":
        return Wrapper(BasicAuth(rt, auth, registry.name, scheme))
    bearer = BearerAuth(rt, registry=registry.name, auth=auth, challenge=challenge, scopes=list(scopes),
                        password_grant=password_grant)
    # Fetch the first token now, as upstream does, so bad credentials fail here with a clear error.
    yield from bearer._token(bearer.scopes)
    return Wrapper(bearer)


def new(registry: Registry | str, auth: Authenticator, inner: RoundTripper, scopes: Sequence[str] = (),
        *, password_grant: bool = False) -> RoundTripper:
    """An authenticated round-tripper for ``registry``: ping, then Basic or Bearer as it asks.

    ``inner`` is usually a ``Client`` (or a chain ending in one). A ``Wrapper`` is returned unchanged:
    it is already set up. ``password_grant=True`` asks bearer realms for tokens with the OAuth2 password
    grant (POST) before falling back to the token GET.
    """
    if isinstance(inner, Wrapper):
        return inner
    reg = as_registry(registry)
    return drive_sync(_stack_steps(reg, auth, inner, scopes, password_grant), inner)


async def new_async(registry: Registry | str, auth: Authenticator, inner: RoundTripper,
                    scopes: Sequence[str] = (), *, password_grant: bool = False) -> RoundTripper:
    """``new`` on the running event loop."""
    if isinstance(inner, Wrapper):
        return inner
    reg = as_registry(registry)
    return await drive_async(
        _stack_steps(reg, auth, inner, scopes, password_grant), inner)


def _bearer_for(registry: Registry | str, auth: Authenticator, inner: RoundTripper,
                challenge: Challenge) -> BearerAuth:
    if challenge.scheme.lower() != "bearer":
        raise TokenError(f'challenge scheme "{challenge.scheme}" is not bearer')
    return BearerAuth(inner, registry=as_registry(registry).name, auth=auth, challenge=challenge)


def exchange(registry: Registry | str, auth: Authenticator, inner: RoundTripper, scopes: Sequence[str],
             challenge: Challenge) -> Token:
    """Exchange credentials for a token at the challenge's realm (always a network exchange, as upstream's
    ``Exchange`` in go-containerregistry pkg/v1/remote/transport/bearer.go: a registry token is sent to
    the realm, not returned as it is)."""
    bearer = _bearer_for(registry, auth, inner, challenge)
    return drive_sync(bearer.exchange(list(scopes)), inner)


async def exchange_async(registry: Registry | str, auth: Authenticator, inner: RoundTripper,
                         scopes: Sequence[str], challenge: Challenge) -> Token:
    """``exchange`` on the running event loop."""
    bearer = _bearer_for(registry, auth, inner, challenge)
    return await drive_async(bearer.exchange(list(scopes)), inner)


def from_token(registry: Registry | str, auth: Authenticator, inner: RoundTripper, challenge: Challenge,
               token: Token) -> RoundTripper:
    """A transport seeded with a token obtained earlier (``exchange``). Non-bearer challenges give a Basic
    layer. Unlike upstream, ``access_token`` is honoured, and the token's ``expires_in`` too."""
    reg = as_registry(registry)
    if challenge.scheme.lower() != "bearer":
        return Wrapper(BasicAuth(inner, auth, reg.name, "http" if challenge.insecure else "https"))
    bearer = BearerAuth(inner, registry=reg.name, auth=auth, challenge=challenge)
    bearer.seed(token)
    return Wrapper(bearer)
