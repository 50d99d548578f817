"""Every parser of ocitransport that reads what a registry, a config file or a user sends, as fuzz targets.

A target is one input strategy (hypothesis) and one check: feed the input to the parser, accept only
the error the parser documents, and, where a compiled twin exists, require the compiled and pure twins
to give the same result or the same exception with the same message. ``tests/hostile/test_parsers.py``
runs each target a few hundred times in the normal suite; ``fuzz/run.py`` runs them for millions.

Inputs start from realistic seeds (what registries really send) mutated byte by byte, mixed with plain
random bytes and text, so the checks reach deep into each grammar instead of failing at the first byte.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from ocitransport._compat import NO_EXTENSIONS
from ocitransport._links import next_link, parse_links
from ocitransport.authn import AuthError, DefaultKeychain
from ocitransport.exceptions import ProtocolError
from ocitransport.mirror.manifests import ManifestError, parse_manifest
from ocitransport.mirror.session import parse_pull_quota
from ocitransport.mirror.tags import TagListError, parse_tag_list
from ocitransport.name import BadName, Repository, parse_reference
from ocitransport.transport.bearer import TokenError, parse_token, validate_realm

__all__ = ["TARGETS", "Target", "TwinMismatch", "UnexpectedError", "compiled_twins_loaded"]


class UnexpectedError(AssertionError):
    """A parser raised something other than its documented error."""


class TwinMismatch(AssertionError):
    """The compiled and the pure twin disagreed on one input."""


# ------------------------------------------------------------------------------------------ twins

def _twin(name: str, kind: str) -> Any:
    return importlib.import_module(f"ocitransport.{name}_{kind}")


PY = {name: _twin(name, "py") for name in ("_challenges", "_scopes", "_diagnostics", "_heads", "_redaction")}
C: dict[str, Any] = {}
if not NO_EXTENSIONS:
    for _name in PY:
        try:
            C[_name] = _twin(_name, "c")
        except ImportError:  # a pure install: the twin checks compare pure against pure
            pass


def compiled_twins_loaded() -> bool:
    """Whether the twin checks really compare against compiled code."""
    return len(C) == len(PY)


def _outcome(function: Callable[..., Any], *args: Any) -> tuple[str, str]:
    try:
        return "ok", repr(function(*args))
    except Exception as exc:  # noqa: BLE001 - compared between twins, judged by the caller
        return type(exc).__name__, str(exc)


def _twins(module: str, function: str, *args: Any, allowed: tuple[type[BaseException], ...] = ()) -> None:
    """Run ``module.function(*args)`` on both twins: same outcome, and an error only of ``allowed``."""
    pure = getattr(PY[module], function)
    try:
        pure(*args)
    except allowed:
        pass
    except Exception as exc:
        raise UnexpectedError(f"{module}_py.{function} raised {type(exc).__name__}: {exc}") from exc
    if module in C:
        a, b = _outcome(pure, *args), _outcome(getattr(C[module], function), *args)
        if a != b:
            raise TwinMismatch(f"{module}.{function}{args!r:.300}: pure {a!r:.300} != compiled {b!r:.300}")


def _only(allowed: tuple[type[BaseException], ...], function: Callable[..., Any], *args: Any) -> Any:
    try:
        return function(*args)
    except allowed:
        return None
    except Exception as exc:
        raise UnexpectedError(f"{getattr(function, '__qualname__', function)} raised "
                              f"{type(exc).__name__}: {exc}") from exc


# ------------------------------------------------------------------------------------------ inputs

#: Fragments that break grammars: quotes, escapes, separators, line breaks, NUL, invalid UTF-8, deep nesting.
_TOKENS = [b'"', b"\\", b",", b";", b"=", b"<", b">", b"{", b"}", b"[", b"]", b":", b"/", b"@", b"\x00",
           b"\r\n", b"\n", b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xe2\x80\xa8", b" ", b"\t", b"null", b"true",
           b"-0", b"1e999", b"9" * 40, b"[" * 200, b"{\"a\":" * 50, b"\\u0000", b"\\ud800", b"%00", b"%",
           b"..", b"sha256:", b"rel=next", b'"next"', b"http://", b"https://[::1", b":99999"]

_HEX = "a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"
_MANIFEST = (b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":'
             b'{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:' + _HEX.encode()
             + b'","size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip",'
             b'"digest":"sha256:' + _HEX.encode() + b'","size":32}]}')
_INDEX = (b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":'
          b'"application/vnd.oci.image.manifest.v1+json","digest":"sha256:' + _HEX.encode() + b'","size":7,'
          b'"platform":{"os":"linux","architecture":"arm64","variant":"v8"}}]}')

SEEDS: dict[str, list[bytes]] = {
    "challenges": [(b'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                   b'scope="repository:library/ubuntu:pull"'), b'Basic realm="Registry Realm"',
                   b'Bearer realm="https://r/token",error="insufficient_scope", Basic realm=x, Negotiate abc==',
                   b"Bearer realm=https://r/t,service=r"],
    "scopes": [b"repository:library/ubuntu:pull", b"registry:catalog:*", b"repository:a/b:push,pull",
               b"repository:r.example:5000/a/b:pull,push,delete", b"repository(plugin):x:pull"],
    "error_body": [b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}',
                   (b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":'
                   b'[{"Type":"repository","Name":"a","Action":"pull"}]},{"code":"DENIED"}]}'),
                   b'{"errors":[]}', b'{"details":"oops"}', b"<html>502 Bad Gateway</html>"],
    "head": [b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDocker-Content-Digest: sha256:x\r\n\r\n",
             (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=x\r\n"
             b"Content-Length: 0\r\n\r\n"), b"HTTP/2 307\r\nlocation: https://s3/x?X-Amz-Signature=abc\r\n\r\n"],
    "url": [b"https://user:pass@r.example/v2/a/blobs/sha256:x?X-Amz-Signature=abc&n=1#frag",
            b"http://[::1]:5000/token?access_token=secret&scope=repository:a:pull", b"/v2/_catalog?n=10"],
    "token_body": [(b'{"token":"abc.def.ghi","access_token":"abc.def.ghi","expires_in":300,"issued_at":'
                   b'"2024-01-01T00:00:00Z","refresh_token":"r3fr3sh"}'), b'{"token":"t"}',
                   b'{"access_token":"a","expires_in":"300"}'],
    "manifest": [_MANIFEST, _INDEX, _MANIFEST.replace(b"application/vnd.oci.image.manifest.v1+json",
                                                      b"application/vnd.docker.distribution.manifest.v2+json"),
                 b'{"schemaVersion":1,"name":"a","tag":"b","fsLayers":[]}'],
    "tag_list": [b'{"name":"library/ubuntu","tags":["20.04","22.04","latest"]}', b'{"name":"a","tags":null}',
                 b'{"tags":["v1"],"manifest":{"sha256:x":{"imageSizeBytes":"1"}}}'],
    "link": [b'</v2/a/tags/list?n=2&last=b>; rel="next"', b'<https://r.example/v2/a/tags/list?last=x>;rel=next',
             b'</x>; rel="prev", </y>; title="a,b"; rel="next last"', b"<>; rel=next"],
    "docker_config": [(b'{"auths":{"r.example":{"auth":"YWxpY2U6cHc="},"https://index.docker.io/v1/":'
                      b'{"username":"u","password":"p"}},"credHelpers":{"gcr.io":"gcloud"},"credsStore":""}'),
                      (b'{"auths":{"r.example/ns/repo":{"identitytoken":"t"},"http://r.example/v2/":'
                      b'{"registrytoken":"x"}}}'), b"{}"],
    "rate_limit": [b"76;w=21600", b"100;w=21600", b"0", b"12;w=60;comment=x", b" 7 ; w = 30 "],
    "reference": [b"ubuntu", b"r.example:5000/a/b:v1.2", b"a/b@sha256:" + _HEX.encode(), b"[::1]:5000/a:t",
                  b"docker.io/library/ubuntu:latest", b"localhost/x"],
}


def _mutate(seed: bytes, edits: list[tuple[int, int, int, bytes]]) -> bytes:
    data = bytearray(seed)
    for op, position, count, blob in edits:
        at = position % (len(data) + 1)
        if op == 0:  # insert random bytes
            data[at:at] = blob
        elif op == 1:  # delete a range
            del data[at:at + count]
        elif op == 2:  # overwrite
            data[at:at + len(blob)] = blob
        elif op == 3:  # insert a grammar-breaking token
            data[at:at] = _TOKENS[count % len(_TOKENS)]
        elif op == 4:  # duplicate a slice (repeated parameters, repeated entries)
            data[at:at] = data[at:at + count * 4]
        else:  # truncate
            del data[at:]
    return bytes(data)


def _bytes_of(name: str, max_size: int = 300) -> st.SearchStrategy[bytes]:
    edits = st.lists(st.tuples(st.integers(0, 5), st.integers(0, 1 << 16), st.integers(0, 64),
                               st.binary(max_size=8)), max_size=8)
    mutated = st.builds(_mutate, st.sampled_from(SEEDS[name]), edits)
    return st.one_of(mutated, mutated, mutated, st.binary(max_size=max_size),
                     st.lists(st.sampled_from(_TOKENS), max_size=12).map(b"".join))


def _text_of(name: str) -> st.SearchStrategy[str]:
    raw = _bytes_of(name)
    decoded = raw.flatmap(lambda b: st.sampled_from([b.decode("utf-8", "replace"), b.decode("latin-1"),
                                                     b.decode("utf-8", "surrogateescape")]))
    return st.one_of(decoded, decoded, st.text(max_size=120))


# ------------------------------------------------------------------------------------------ checks

def check_challenges(text: str) -> None:
    _twins("_challenges", "parse_challenges", text)
    _twins("_challenges", "parse_challenges", [text, text[::-1]])


def check_scopes(text: str) -> None:
    _twins("_scopes", "parse_scope", text, allowed=(ValueError,))
    _twins("_scopes", "merge_scopes", [text, "repository:a:pull"], [text])
    _twins("_scopes", "token_query", text, [text], text)
    _twins("_scopes", "repository_scope", text, text)


def check_error_body(body: bytes) -> None:
    _twins("_diagnostics", "decode_error_body", body)
    for diagnostics in (PY["_diagnostics"].decode_error_body(body), []):
        _twins("_diagnostics", "format_error", "GET", "https://r.example/v2/", 500, diagnostics, body)
    _twins("_diagnostics", "is_temporary", 503, PY["_diagnostics"].decode_error_body(body))


def check_head(raw: bytes) -> None:
    lines = raw.splitlines(keepends=True)
    _twins("_heads", "parse_head", lines, allowed=(ProtocolError,))


def check_url(text: str) -> None:
    _twins("_redaction", "redact_url", text)
    _twins("_redaction", "redact_headers", [("Authorization", text), ("Location", text), ("X", text)])


def check_token_body(body: bytes) -> None:
    _twins("_redaction", "redact_token_body", body)
    token = _only((TokenError,), parse_token, body, "r.example")
    if token is not None and body and (token.token or token.access_token):
        for secret in (token.token, token.access_token, token.refresh_token):
            if len(secret) >= 4 and secret in repr(token):
                raise UnexpectedError("repr(Token) shows a token")


def check_realm(text: str) -> None:
    _only((TokenError,), validate_realm, text, "r.example:5000", False)
    _only((TokenError,), validate_realm, text, "127.0.0.1:5000", True)


def check_manifest(raw: bytes) -> None:
    for content_type in (None, "application/vnd.oci.image.index.v1+json", "text/plain"):
        manifest = _only((ManifestError,), parse_manifest, raw, content_type)
        if manifest is None:
            continue
        _only((ManifestError,), manifest.children)
        _only((ManifestError,), manifest.blobs)


def check_tag_list(body: bytes) -> None:
    tags = _only((TagListError,), parse_tag_list, body)
    if tags is not None and not all(isinstance(t, str) for t in tags):
        raise UnexpectedError("parse_tag_list returned a non-str tag")


def check_link(text: str) -> None:
    _only((), parse_links, [text, text])
    url = _only((), next_link, text, "https://r.example/v2/a/tags/list?n=2")
    if url is not None and not url.lower().startswith(("http://", "https://")):
        raise UnexpectedError(f"next_link returned a non-http URL {url!r}")


def check_rate_limit(text: str) -> None:
    quota = _only((), parse_pull_quota, {"RateLimit-Remaining": text, "RateLimit-Limit": text})
    if quota is not None and not (quota.remaining >= 0 and quota.limit >= 0 and quota.window_seconds >= 0):
        raise UnexpectedError(f"negative pull quota from {text!r}: {quota}")


class _ConfigDir:
    """A private DOCKER_CONFIG for the docker-config target (and an empty PATH, so no helper can run)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="ocitransport-fuzz-"))
        self.path = self.dir / "config.json"
        self.keychain = DefaultKeychain(helper_timeout=5.0)

    def check(self, raw: bytes) -> None:
        self.path.write_bytes(raw)
        saved = {k: os.environ.get(k) for k in ("DOCKER_CONFIG", "PATH", "REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR")}
        os.environ.update(DOCKER_CONFIG=str(self.dir), PATH=str(self.dir))
        os.environ.pop("REGISTRY_AUTH_FILE", None)
        os.environ.pop("XDG_RUNTIME_DIR", None)
        try:
            for target in _KEYCHAIN_TARGETS:
                auth = _only((AuthError,), self.keychain.resolve, target)
                if auth is not None:
                    config = _only((AuthError,), auth.authorization)
                    if config is not None:
                        _only((AuthError,), config.authorization_header)
                        _no_secret_in(repr(auth) + repr(config), config)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


_KEYCHAIN_TARGETS = ("r.example", Repository("r.example/ns/repo"), Repository("ubuntu"), "gcr.io")
_CONFIG = _ConfigDir()


def check_docker_config(raw: bytes) -> None:
    _CONFIG.check(raw)


def check_reference(text: str) -> None:
    ref = _only((BadName,), parse_reference, text)
    if ref is not None:
        str(ref)
        ref.context.scope("pull")
    _only((BadName,), lambda: parse_reference(text, insecure=True))


def _no_secret_in(text: str, config: Any) -> None:
    for secret in (config.password, config.identity_token, config.registry_token):
        if len(secret) >= 6 and secret in text:
            raise UnexpectedError("repr() of credentials shows a secret")


@dataclass(frozen=True)
class Target:
    """One fuzz target: a strategy of inputs and the check run on each."""

    name: str
    strategy: st.SearchStrategy[Any]
    check: Callable[[Any], None]


TARGETS: dict[str, Target] = {t.name: t for t in [
    Target("challenges", _text_of("challenges"), check_challenges),
    Target("scopes", _text_of("scopes"), check_scopes),
    Target("error_body", _bytes_of("error_body"), check_error_body),
    Target("head", _bytes_of("head"), check_head),
    Target("url", _text_of("url"), check_url),
    Target("token_body", _bytes_of("token_body"), check_token_body),
    Target("realm", _text_of("url"), check_realm),
    Target("manifest", _bytes_of("manifest", 600), check_manifest),
    Target("tag_list", _bytes_of("tag_list"), check_tag_list),
    Target("link", _text_of("link"), check_link),
    Target("docker_config", _bytes_of("docker_config"), check_docker_config),
    Target("reference", _text_of("reference"), check_reference),
    Target("rate_limit", _text_of("rate_limit"), check_rate_limit),
]}
