"""Credentials: what to authenticate with (authenticators) and where to find it (keychains).

- :class:`AuthConfig` holds credentials as the docker config does (``username``, ``password``,
  ``auth``, ``identitytoken``, ``registrytoken``); its ``repr()`` and ``str()`` never show a secret.
- Authenticators (:data:`Anonymous`, :class:`Basic`, :class:`Bearer`, :class:`IdentityToken`,
  :class:`FromConfig`) answer :meth:`Authenticator.authorization` with an ``AuthConfig``.
- Keychains map a registry to an authenticator: :class:`DefaultKeychain` reads the docker and podman
  config files and runs ``docker-credential-*`` helpers; :class:`CredentialHelper` runs one helper;
  :class:`MultiKeychain` tries several in order.

Errors derive from :class:`AuthError`; no message ever contains a secret.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import selectors
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .exceptions import OCITransportError
from .name import DEFAULT_REGISTRY, Digest, Registry, Repository, Tag

__all__ = [
    "DEFAULT_AUTH_KEY",
    "DEFAULT_HELPER_TIMEOUT",
    "MAX_HELPER_OUTPUT",
    "Anonymous",
    "AuthConfig",
    "AuthError",
    "Authenticator",
    "BadAuthConfig",
    "Basic",
    "Bearer",
    "ConfigFileError",
    "CredentialHelper",
    "CredentialHelperError",
    "DefaultKeychain",
    "FromConfig",
    "IdentityToken",
    "Keychain",
    "MultiKeychain",
    "Target",
]

logger = logging.getLogger("ocitransport.authn")

#: The key Docker Hub credentials are stored under in a docker config, for historical reasons.
DEFAULT_AUTH_KEY = f"https://{DEFAULT_REGISTRY}/v1/"
#: Seconds a credential helper may run before it is killed.
DEFAULT_HELPER_TIMEOUT = 30.0

# Host names that mean Docker Hub when they appear as a config key or helper key.
_DOCKER_HUB_HOSTS = frozenset({"index.docker.io", "docker.io", "registry-1.docker.io"})
# A credential helper's answer when it has nothing for the server (docker-credential-helpers).
_NOT_FOUND_MARKER = "credentials not found"
# The username a credential helper answers to say the secret is an identity (refresh) token.
_IDENTITY_TOKEN_USERNAME = "<token>"
_BAD_AUTH_MESSAGE = "unable to decode auth field: must be formatted as base64(username:password)"
_MAX_HELPER_MESSAGE = 1000  # characters of helper stderr quoted in an error
#: The most a credential helper may write on stdout (an answer is a few hundred bytes); more is an error.
#: Stderr beyond it is dropped. Either way memory stays bounded, whatever the helper does.
MAX_HELPER_OUTPUT = 1 << 20


class AuthError(OCITransportError):
    """Credentials could not be obtained or are malformed."""


class BadAuthConfig(AuthError, ValueError):
    """An ``AuthConfig`` (or a config file entry) is malformed, such as an undecodable ``auth`` field."""


class ConfigFileError(AuthError):
    """A docker / podman credentials file could not be read or parsed; the message names the file."""

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class CredentialHelperError(AuthError):
    """A ``docker-credential-*`` helper is missing, failed, timed out, or answered nonsense.

    The message names the helper and the registry, and quotes the helper's (trimmed) stderr; never what
    was sent to it, nor any secret.
    """

    def __init__(self, message: str, *, helper: str, server_url: str) -> None:
        super().__init__(message)
        self.helper = helper
        self.server_url = server_url


def _decode_auth(auth: str) -> tuple[str, str]:
    """``base64(user:pass)`` -> (user, pass); padded or unpadded, as go-containerregistry accepts."""
    text = auth.strip()
    body = text.rstrip("=")
    padding = len(text) - len(body)
    # Checked here rather than left to binascii: before Python 3.11 it ignored data after padding
    # ("YWxpY2U6cHc==" decoded), which Go's decoder refuses.
    if "=" in body or padding > 2 or (len(text) % 4 if padding else len(body) % 4 == 1):
        raise BadAuthConfig(_BAD_AUTH_MESSAGE)  # padded: whole quanta; unpadded: 1 mod 4 is never valid
    try:
        raw = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
        decoded = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        # Never chain the original error: its message may quote part of the value.
        raise BadAuthConfig(_BAD_AUTH_MESSAGE) from None
    username, sep, password = decoded.partition(":")
    if not sep:
        raise BadAuthConfig(_BAD_AUTH_MESSAGE)
    return username, password


_FIELDS = ("username", "password", "auth", "identity_token", "registry_token")
_SECRET_FIELDS = frozenset({"password", "auth", "identity_token", "registry_token"})
# docker config / helper JSON key -> field; Go's JSON decoding matches keys case-insensitively.
_JSON_KEYS = {
    "username": "username",
    "password": "password",
    "auth": "auth",
    "identitytoken": "identity_token",
    "registrytoken": "registry_token",
}


class AuthConfig:
    """Credentials for one registry, immutable; ``repr()``/``str()`` show which secrets are set, never them.

    A non-empty ``auth`` (``base64(username:password)``, padded or not) is decoded into ``username``
    and ``password``, overriding them; text without ``:`` raises :class:`BadAuthConfig`. When ``auth``
    is empty but both ``username`` and ``password`` are set, ``auth`` is computed from them.
    ``identity_token`` is an OAuth2 refresh token; ``registry_token`` a bearer token sent as it is.
    """

    __slots__ = _FIELDS

    username: str
    password: str
    auth: str
    identity_token: str
    registry_token: str

    def __init__(
        self,
        username: str = "",
        password: str = "",
        auth: str = "",
        identity_token: str = "",
        registry_token: str = "",
    ) -> None:
        values = {
            "username": username,
            "password": password,
            "auth": auth,
            "identity_token": identity_token,
            "registry_token": registry_token,
        }
        for field, value in values.items():
            if not isinstance(value, str):
                raise TypeError(f"AuthConfig.{field} must be a str, not {type(value).__name__}")
        if auth:
            values["username"], values["password"] = _decode_auth(auth)
        elif username and password:
            values["auth"] = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        for field, value in values.items():
            object.__setattr__(self, field, value)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuthConfig:
        """Build from a docker config ``auths`` entry (``username``, ``password``, ``auth``,
        ``identitytoken``, ``registrytoken``; keys matched case-insensitively, others ignored)."""
        values: dict[str, str] = {}
        for key, value in data.items():
            field = _JSON_KEYS.get(key.lower()) if isinstance(key, str) else None
            if field is None or value is None:
                continue
            if not isinstance(value, str):
                raise BadAuthConfig(f"the {key!r} field must be a string")
            values[field] = value
        return cls(**values)

    def to_dict(self) -> dict[str, str]:
        """The docker config JSON form (non-empty fields only; ``auth`` recomputed as docker writes it)."""
        out: dict[str, str] = {}
        for key, field in _JSON_KEYS.items():
            value = getattr(self, field)
            if value:
                out[key] = value
        if self.username and self.password:
            out["auth"] = base64.b64encode(f"{self.username}:{self.password}".encode()).decode("ascii")
        return out

    @property
    def is_empty(self) -> bool:
        """True when no field is set (anonymous)."""
        return not any(getattr(self, f) for f in _FIELDS)

    def authorization_header(self) -> str | None:
        """The ``Authorization`` value the basic transport sends for these credentials, or ``None``.

        First that applies (as go-containerregistry pkg/authn/authn.go orders them): ``registry_token``
        -> ``Bearer``; username and password -> ``Basic base64(user:pass)``; ``auth`` -> ``Basic <auth>``
        verbatim. ``identity_token`` is not used here (it is exchanged for a bearer token).
        """
        if self.registry_token:
            return f"Bearer {self.registry_token}"
        if self.username and self.password:
            return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode("ascii")
        if self.auth:
            return f"Basic {self.auth}"
        return None

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("AuthConfig is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("AuthConfig is immutable")

    def _values(self) -> tuple[str, ...]:
        return tuple(getattr(self, f) for f in _FIELDS)

    def __eq__(self, other: object) -> bool:
        if type(other) is not AuthConfig:
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash((AuthConfig, self._values()))

    def __reduce__(self) -> tuple[Any, ...]:
        return (AuthConfig, self._values())

    def __repr__(self) -> str:
        parts = []
        for field in _FIELDS:
            value = getattr(self, field)
            if not value:
                continue
            parts.append(f"{field}=<set>" if field in _SECRET_FIELDS else f"{field}={value!r}")
        return f"AuthConfig({', '.join(parts)})"

    __str__ = __repr__


_EMPTY = AuthConfig()


@runtime_checkable
class Authenticator(Protocol):
    """Anything that can produce credentials for a request."""

    def authorization(self) -> AuthConfig:
        """The credentials to use."""
        ...


class _Authenticator:
    """Immutability, equality and pickling for the authenticators below (by their ``AuthConfig``)."""

    __slots__ = ("_config",)

    _config: AuthConfig

    def __init__(self, config: AuthConfig) -> None:
        object.__setattr__(self, "_config", config)

    def authorization(self) -> AuthConfig:
        """The credentials to use."""
        return self._config

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._config == other._config

    def __hash__(self) -> int:
        return hash((type(self), self._config))


class _AnonymousAuthenticator(_Authenticator):
    """No credentials. Use the singleton :data:`Anonymous`; transports test ``auth is Anonymous``."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(_EMPTY)

    def __repr__(self) -> str:
        return "Anonymous"

    def __reduce__(self) -> str:
        return "Anonymous"  # pickles as a reference to the module global: stays the singleton


#: The authenticator that sends no credentials (a singleton: compare with ``is``).
Anonymous = _AnonymousAuthenticator()


def _secret_marker(value: str) -> str:
    return "<set>" if value else "''"


class Basic(_Authenticator):
    """Username and password, sent as HTTP Basic (or exchanged for a bearer token)."""

    __slots__ = ()

    def __init__(self, username: str, password: str) -> None:
        super().__init__(AuthConfig(username=username, password=password))

    @property
    def username(self) -> str:
        return self._config.username

    def __repr__(self) -> str:
        return f"Basic(username={self._config.username!r}, password={_secret_marker(self._config.password)})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Basic, (self._config.username, self._config.password))


class Bearer(_Authenticator):
    """A registry token, sent as ``Authorization: Bearer <token>`` (``AuthConfig.registry_token``)."""

    __slots__ = ()

    def __init__(self, token: str) -> None:
        super().__init__(AuthConfig(registry_token=token))

    def __repr__(self) -> str:
        return f"Bearer(token={_secret_marker(self._config.registry_token)})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Bearer, (self._config.registry_token,))


class IdentityToken(_Authenticator):
    """An OAuth2 refresh token (``AuthConfig.identity_token``), exchanged at the token endpoint.

    Credential helpers produce it by answering the username ``<token>``; that username is kept.
    """

    __slots__ = ()

    def __init__(self, token: str, *, username: str = "") -> None:
        super().__init__(AuthConfig(username=username, identity_token=token))

    def __repr__(self) -> str:
        user = f"username={self._config.username!r}, " if self._config.username else ""
        return f"IdentityToken({user}token={_secret_marker(self._config.identity_token)})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_identity_token, (self._config.identity_token, self._config.username))


def _identity_token(token: str, username: str) -> IdentityToken:
    return IdentityToken(token, username=username)


class FromConfig(_Authenticator):
    """Whatever an :class:`AuthConfig` holds."""

    __slots__ = ()

    def __init__(self, config: AuthConfig) -> None:
        if not isinstance(config, AuthConfig):
            raise TypeError(f"FromConfig needs an AuthConfig, not {type(config).__name__}")
        super().__init__(config)

    def __repr__(self) -> str:
        return f"FromConfig({self._config!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (FromConfig, (self._config,))


#: What a keychain can resolve: a registry (or its name), or anything in a repository.
Target = Registry | Repository | Tag | Digest | str


@runtime_checkable
class Keychain(Protocol):
    """Finds the credentials for a registry."""

    def resolve(self, target: Target) -> Authenticator:
        """The authenticator for ``target``; :data:`Anonymous` when there are no credentials."""
        ...


def _registry_of(target: Target) -> tuple[Registry, str | None]:
    """(registry, repository path or None) of a keychain target."""
    if isinstance(target, Registry):
        return target, None
    if isinstance(target, Repository):
        return target.registry, target.repository_str()
    if isinstance(target, (Tag, Digest)):
        return target.registry, target.repository_str()
    if isinstance(target, str):
        return Registry(target), None
    raise TypeError(f"cannot resolve credentials for a {type(target).__name__}")


def _server_url(registry: Registry) -> str:
    # Docker stores Docker Hub credentials under its legacy v1 URL; every other registry by host[:port].
    return DEFAULT_AUTH_KEY if registry.is_docker_hub else registry.name


def _key_host(key: str) -> str:
    """A config key's ``host[:port]``, lower-cased: strip a scheme and any path (docker's
    ``ConvertToHostname``)."""
    lowered = key.strip().lower()
    for scheme in ("https://", "http://"):
        if lowered.startswith(scheme):
            lowered = lowered[len(scheme) :]
            break
    return lowered.split("/", 1)[0]


def _host_matches(key: str, registry: Registry) -> bool:
    host = _key_host(key)
    if registry.is_docker_hub:
        return host in _DOCKER_HUB_HOSTS
    return host == registry.name.lower()


def _check_helper_name(name: str) -> None:
    # The name comes from a config file; refuse anything that would escape "docker-credential-*" on PATH.
    if not name or "/" in name or "\\" in name or os.sep in name or name in (".", ".."):
        raise AuthError(f"invalid credential helper name {name!r}")


def _trimmed(text: bytes) -> str:
    message = text.decode("utf-8", errors="replace").strip()
    if len(message) > _MAX_HELPER_MESSAGE:
        message = message[:_MAX_HELPER_MESSAGE] + "..."
    return message


class _OutputTooLarge(Exception):
    pass


def _communicate(proc: subprocess.Popen[bytes], stdin: bytes, timeout: float) -> tuple[bytes, bytes]:
    """``proc.communicate(stdin, timeout)`` keeping at most :data:`MAX_HELPER_OUTPUT` bytes of each
    stream: more on stdout raises ``_OutputTooLarge`` (no answer is that long), more on stderr is
    dropped. A helper that writes without end therefore costs bounded memory, not all of it."""
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    deadline = time.monotonic() + timeout
    try:
        proc.stdin.write(stdin)  # a server URL: far below the pipe's buffer, so this never blocks
        proc.stdin.close()
    except BrokenPipeError:
        pass  # the helper exited without reading; its exit status tells why
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    kept = {out_fd: bytearray(), err_fd: bytearray()}
    with selectors.DefaultSelector() as selector:
        for stream in (proc.stdout, proc.stderr):
            selector.register(stream, selectors.EVENT_READ)
        while selector.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(proc.args, timeout)
            for key, _ in selector.select(left):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                buffer = kept[key.fd]
                if len(buffer) + len(chunk) > MAX_HELPER_OUTPUT and key.fileobj is proc.stdout:
                    raise _OutputTooLarge
                buffer += chunk[:MAX_HELPER_OUTPUT - len(buffer)]
    proc.stdout.close()
    proc.stderr.close()
    proc.wait(timeout=max(deadline - time.monotonic(), 0.001))
    return bytes(kept[out_fd]), bytes(kept[err_fd])


class CredentialHelper:
    """A ``docker-credential-NAME`` program, run as ``docker-credential-NAME get`` (no shell).

    :meth:`get` returns the credentials for a server URL, or ``None`` when the helper has none.
    Also a :class:`Keychain` for the registry given to :meth:`resolve`.
    """

    def __init__(self, name: str, *, timeout: float = DEFAULT_HELPER_TIMEOUT) -> None:
        _check_helper_name(name)
        self.name = name
        self.timeout = timeout

    @property
    def program(self) -> str:
        """The program name, ``docker-credential-NAME``."""
        return f"docker-credential-{self.name}"

    def get(self, server_url: str) -> AuthConfig | None:
        """Ask the helper for ``server_url``'s credentials; ``None`` when it says it has none.

        A ``<token>`` username means the secret is an identity token. Raises
        :class:`CredentialHelperError` when the helper is missing, fails, times out or answers nonsense.
        """
        program = self.program

        def error(reason: str) -> CredentialHelperError:
            return CredentialHelperError(
                f"credential helper {program} {reason} (registry {server_url})",
                helper=program,
                server_url=server_url,
            )

        path = shutil.which(program)
        if path is None:
            raise error("was not found on PATH")
        stdout, stderr, returncode = self._run(path, server_url.encode("utf-8"), error)
        if returncode != 0:
            if (
                _NOT_FOUND_MARKER in stdout.decode("utf-8", "replace").lower()
                or _NOT_FOUND_MARKER in stderr.decode("utf-8", "replace").lower()
            ):
                return None
            # Helpers built on docker-credential-helpers print their error on stdout; fall back to it
            # when stderr is empty, unless it looks like JSON (which could carry a secret).
            message = _trimmed(stderr)
            if not message and not stdout.lstrip().startswith(b"{"):
                message = _trimmed(stdout)
            detail = f": {message}" if message else ""
            raise error(f"failed with exit status {returncode}{detail}")
        try:
            answer = json.loads(stdout)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
            raise error("returned output that is not JSON") from None
        if not isinstance(answer, dict):
            raise error("returned JSON that is not an object")
        username = answer.get("Username", "")
        secret = answer.get("Secret", "")
        if not isinstance(username, str) or not isinstance(secret, str):
            raise error("returned a non-string Username or Secret")
        if not username and not secret:
            return None
        if username == _IDENTITY_TOKEN_USERNAME:
            return AuthConfig(username=username, identity_token=secret)
        return AuthConfig(username=username, password=secret)

    def _run(self, path: str, stdin: bytes, error: Any) -> tuple[bytes, bytes, int]:
        # Own process group, so a timeout kills whatever the helper started too (and nothing keeps
        # our pipes open after the kill).
        posix = os.name == "posix"
        try:
            proc = subprocess.Popen(
                [path, "get"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=posix,
            )
        except OSError as exc:
            raise error(f"could not be run: {exc.strerror or type(exc).__name__}") from None
        try:
            if posix:
                stdout, stderr = _communicate(proc, stdin, self.timeout)
            else:  # pragma: no cover - not POSIX: pipes cannot be selected on
                stdout, stderr = proc.communicate(stdin, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self._kill(proc, posix)
            raise error(f"timed out after {self.timeout:g} s") from None
        except _OutputTooLarge:
            self._kill(proc, posix)
            raise error(f"wrote more than {MAX_HELPER_OUTPUT} bytes on stdout") from None
        except BaseException:
            self._kill(proc, posix)
            raise
        return stdout, stderr, proc.returncode

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes], posix: bool) -> None:
        try:
            if posix:
                os.killpg(proc.pid, signal.SIGKILL)
            else:  # pragma: no cover - not POSIX
                proc.kill()
        except (ProcessLookupError, PermissionError):
            pass
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        try:
            proc.wait(timeout=10)  # reaped: killed with its whole group, so this returns at once
        except subprocess.TimeoutExpired:  # pragma: no cover - a helper we may not signal
            pass

    def resolve(self, target: Target) -> Authenticator:
        """The helper's credentials for ``target``'s registry, or :data:`Anonymous`."""
        registry, _ = _registry_of(target)
        config = self.get(_server_url(registry))
        return Anonymous if config is None else FromConfig(config)

    def __repr__(self) -> str:
        return f"CredentialHelper({self.name!r}, timeout={self.timeout!r})"


class _ConfigFile:
    """One parsed docker-style credentials file (``auths``, ``credHelpers``, ``credsStore``)."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.auths: dict[str, Any] = self._mapping(data, "auths")
        self.cred_helpers: dict[str, Any] = self._mapping(data, "credHelpers")
        store = data.get("credsStore", "")
        if store is not None and not isinstance(store, str):
            raise ConfigFileError(f'{path}: "credsStore" must be a string', path=str(path))
        self.creds_store: str = store or ""

    def _mapping(self, data: dict[str, Any], key: str) -> dict[str, Any]:
        value = data.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigFileError(f"{self.path}: {key!r} must be a JSON object", path=str(self.path))
        return value

    @classmethod
    def load(cls, path: Path) -> _ConfigFile | None:
        """Parse ``path``; ``None`` when it does not exist."""
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise ConfigFileError(f"cannot read credentials file {path}: {reason}", path=str(path)) from None
        if not text.strip():
            return None  # docker treats an empty config file as no config
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            # exc.msg and the position only: the text itself holds secrets.
            raise ConfigFileError(
                f"malformed JSON in credentials file {path}: {exc.msg} at line {exc.lineno} column {exc.colno}",
                path=str(path),
            ) from None
        except (ValueError, RecursionError) as exc:
            # An integer over Python's digit limit (ValueError) or nesting deeper than the recursion
            # limit: the message would quote the number, so only the kind of problem is named.
            reason = "nested too deeply" if isinstance(exc, RecursionError) else "a number is too long"
            raise ConfigFileError(f"malformed JSON in credentials file {path}: {reason}", path=str(path)) from None
        if not isinstance(data, dict):
            raise ConfigFileError(f"credentials file {path} must hold a JSON object", path=str(path))
        return cls(path, data)

    def helper_for(self, registry: Registry) -> str:
        """The helper configured for ``registry``: ``credHelpers`` first, then ``credsStore``, else ``""``."""
        exact = self.cred_helpers.get(registry.name)
        if exact is None:
            for key, value in self.cred_helpers.items():
                if isinstance(key, str) and _host_matches(key, registry):
                    exact = value
                    break
        if exact is not None:
            if not isinstance(exact, str):
                raise ConfigFileError(
                    f"{self.path}: credHelpers entry for {registry.name!r} must be a string",
                    path=str(self.path),
                )
            if exact:
                return exact
        return self.creds_store

    def entry_for(self, registry: Registry, repository: str | None) -> tuple[str, AuthConfig] | None:
        """The ``auths`` entry for the target, most specific key first, as (key, credentials)."""
        for key in self._candidate_keys(registry, repository):
            entry = self.auths[key]
            if not isinstance(entry, dict):
                raise ConfigFileError(
                    f"{self.path}: auths entry {key!r} must be a JSON object", path=str(self.path)
                )
            try:
                config = AuthConfig.from_dict(entry)
            except BadAuthConfig as exc:
                raise BadAuthConfig(f"{self.path}: auths entry {key!r}: {exc}") from None
            if not config.is_empty:
                return key, config
        return None

    def _candidate_keys(self, registry: Registry, repository: str | None) -> list[str]:
        keys = [k for k in self.auths if isinstance(k, str)]
        ordered: list[str] = []
        if repository is not None:
            # podman's per-repository keys (host/namespace/repo), longest prefix first.
            parts = repository.split("/")
            for n in range(len(parts), 0, -1):
                scoped = f"{registry.name}/{'/'.join(parts[:n])}".lower()
                ordered += [k for k in keys if k.strip().lower() == scoped and k not in ordered]
        # Then host keys: the exact name, the legacy Docker Hub key, then any key naming the same host
        # once scheme and path are dropped (docker's fallback scan).
        preferred = [registry.name, DEFAULT_AUTH_KEY] if registry.is_docker_hub else [registry.name]
        ordered += [k for k in preferred if k in self.auths and k not in ordered]
        ordered += [k for k in keys if k not in ordered and _is_host_key(k) and _host_matches(k, registry)]
        return ordered


def _is_host_key(key: str) -> bool:
    """A key that names a whole registry: ``host``, ``scheme://host[/anything]``, ``host/v1/``, ``host/v2/``."""
    stripped = key.strip()
    if "://" in stripped:
        return True
    _, _, path = stripped.partition("/")
    return path.strip("/") in ("", "v1", "v2")


class DefaultKeychain:
    """Credentials from the docker and podman config files, read afresh on every :meth:`resolve`.

    Files, in order (missing ones are skipped; the first that has credentials wins):

    1. ``$DOCKER_CONFIG/config.json``, or ``~/.docker/config.json`` when ``DOCKER_CONFIG`` is unset;
    2. ``$REGISTRY_AUTH_FILE``;
    3. ``$XDG_RUNTIME_DIR/containers/auth.json`` (podman).

    In a file, a ``credHelpers`` entry for the registry, else ``credsStore``, names the helper to run
    (``docker-credential-NAME get``, with ``helper_timeout``); the helper's answer is final for that file,
    as with docker. Without a helper, the ``auths`` entry for the registry is used. Nothing is cached.
    """

    def __init__(self, *, helper_timeout: float = DEFAULT_HELPER_TIMEOUT) -> None:
        self.helper_timeout = helper_timeout

    @staticmethod
    def config_paths() -> list[Path]:
        """The files :meth:`resolve` would read now, in order (whether or not they exist)."""
        paths: list[Path] = []
        docker_config = os.environ.get("DOCKER_CONFIG")
        if docker_config:
            paths.append(Path(docker_config) / "config.json")
        else:
            try:
                paths.append(Path.home() / ".docker" / "config.json")
            except RuntimeError:  # no home directory
                pass
        auth_file = os.environ.get("REGISTRY_AUTH_FILE")
        if auth_file:
            paths.append(Path(auth_file))
        runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
        if runtime_dir:
            paths.append(Path(runtime_dir) / "containers" / "auth.json")
        return paths

    def resolve(self, target: Target) -> Authenticator:
        """The authenticator for ``target``'s registry, or :data:`Anonymous`."""
        registry, repository = _registry_of(target)
        seen: set[Path] = set()
        for path in self.config_paths():
            if path in seen:
                continue
            seen.add(path)
            config_file = _ConfigFile.load(path)
            if config_file is None:
                continue
            found = self._resolve_in(config_file, registry, repository)
            if found is not None:
                return found
        return Anonymous

    def _resolve_in(
        self, config_file: _ConfigFile, registry: Registry, repository: str | None
    ) -> Authenticator | None:
        helper_name = config_file.helper_for(registry)
        if helper_name:
            try:
                helper = CredentialHelper(helper_name, timeout=self.helper_timeout)
            except AuthError as exc:
                raise ConfigFileError(f"{config_file.path}: {exc}", path=str(config_file.path)) from None
            config = helper.get(_server_url(registry))
            if config is None:
                return None
            logger.debug("credentials for %s from %s (via %s)", registry, helper.program, config_file.path)
            return FromConfig(config)
        entry = config_file.entry_for(registry, repository)
        if entry is None:
            return None
        logger.debug("credentials for %s from %s (key %r)", registry, config_file.path, entry[0])
        return FromConfig(entry[1])

    def __repr__(self) -> str:
        return f"DefaultKeychain(helper_timeout={self.helper_timeout!r})"


class MultiKeychain:
    """Several keychains in order: the first answer other than :data:`Anonymous` wins; errors abort."""

    def __init__(self, *keychains: Keychain) -> None:
        self.keychains: tuple[Keychain, ...] = tuple(keychains)

    def resolve(self, target: Target) -> Authenticator:
        """The first non-anonymous authenticator for ``target``, else :data:`Anonymous`."""
        for keychain in self.keychains:
            auth = keychain.resolve(target)
            if auth is not Anonymous:
                return auth
        return Anonymous

    def __repr__(self) -> str:
        return f"MultiKeychain({', '.join(repr(k) for k in self.keychains)})"
