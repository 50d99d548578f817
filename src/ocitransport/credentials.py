"""Credentials and TLS from the command line: ``--creds USER[:PASS]``, ``--authfile``, ``login`` /
``logout``, and the per-registry certificate directories (``certs.d``) podman and docker read.

Secrets never reach a repr, a log line or an error message; :class:`Origin` says where credentials
came from (for error messages) without them.
"""

from __future__ import annotations

import base64
import getpass
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ._files import atomic_file
from .authn import (
    DEFAULT_HELPER_TIMEOUT,
    Authenticator,
    AuthError,
    Basic,
    CredentialHelper,
    DefaultKeychain,
    Keychain,
    Target,
    _ConfigFile,
    _registry_of,
    _server_url,
)
from .name import Registry

__all__ = [
    "CERTS_D_ENV",
    "DEFAULT_CERTS_D",
    "AuthFileKeychain",
    "CommandLineKeychain",
    "CredentialsError",
    "cert_dir_for",
    "config_path",
    "describe_source",
    "login",
    "logout",
    "parse_creds",
]

#: Roots searched for ``HOST[:PORT]/`` certificate directories, in order (podman's, then docker's).
DEFAULT_CERTS_D = ("/etc/containers/certs.d", "/etc/docker/certs.d")
#: Environment variable replacing :data:`DEFAULT_CERTS_D` (``os.pathsep``-separated roots; empty: none).
CERTS_D_ENV = "OCITRANSPORT_CERTS_D"


class CredentialsError(AuthError):
    """Bad ``--creds`` / ``--authfile`` input, or a failed ``login`` / ``logout``."""


def parse_creds(text: str, option: str = "--creds", *, stdin: IO[str] | None = None) -> Basic:
    """``USER[:PASS]`` as a :class:`~ocitransport.authn.Basic`. Without ``:PASS`` the password is read:
    prompted without echo on a terminal, else the first line of ``stdin`` (as ``docker login
    --password-stdin``). Raises :class:`CredentialsError` (never quoting the password)."""
    user, sep, password = text.partition(":")
    if not user:
        raise CredentialsError(f"{option}: the user name is empty (expected USER[:PASSWORD])")
    if not sep:
        password = read_password(f"Password for {user}: ", option, stdin=stdin)
    if not password:
        raise CredentialsError(f"{option}: the password for {user} is empty")
    return Basic(user, password)


def read_password(prompt: str, option: str, *, stdin: IO[str] | None = None) -> str:
    """A password: ``getpass`` (no echo) on a terminal, else one line of ``stdin``."""
    source = stdin if stdin is not None else sys.stdin
    if source is not None and source.isatty():
        try:
            return getpass.getpass(prompt, stream=sys.stderr)
        except EOFError:
            return ""
    if source is None:
        raise CredentialsError(f"{option}: no password given and no standard input to read it from")
    return source.readline().rstrip("\r\n")


# ------------------------------------------------------------------------------------------- keychains

class AuthFileKeychain(DefaultKeychain):
    """:class:`~ocitransport.authn.DefaultKeychain` on one file only (``--authfile``; its
    ``credHelpers`` / ``credsStore`` are honoured)."""

    def __init__(self, path: str | os.PathLike[str], *, helper_timeout: float = DEFAULT_HELPER_TIMEOUT) -> None:
        super().__init__(helper_timeout=helper_timeout)
        self.path = Path(path)

    def config_paths(self) -> list[Path]:  # type: ignore[override]
        """Only the ``--authfile``."""
        return [self.path]

    def __repr__(self) -> str:
        return f"AuthFileKeychain({str(self.path)!r})"


class CommandLineKeychain:
    """``--creds`` / ``--src-creds`` / ``--dest-creds``: given credentials for given registries (or for
    every registry, key ``"*"``), every other registry asks ``fallback``."""

    def __init__(self, given: Mapping[str, tuple[Basic, str]], fallback: Keychain, *,
                 not_for_all: Sequence[str] = ()) -> None:
        self._given = {("*" if k == "*" else Registry(k).name): v for k, v in given.items()}
        self.fallback = fallback
        #: Registries the ``"*"`` entry is never sent to (sync's destination for ``--src-creds``).
        self.not_for_all = frozenset(Registry(r).name for r in not_for_all)

    def _find(self, target: Target) -> tuple[Basic, str] | None:
        registry, _ = _registry_of(target)
        found = self._given.get(registry.name)
        if found is None and registry.name not in self.not_for_all:
            found = self._given.get("*")
        return found

    def resolve(self, target: Target) -> Authenticator:
        """The given credentials for ``target``'s registry, else the fallback's answer."""
        found = self._find(target)
        return found[0] if found is not None else self.fallback.resolve(target)

    def origin(self, target: Target) -> str:
        """Where :meth:`resolve` takes ``target``'s credentials from (no secret)."""
        found = self._find(target)
        if found is not None:
            return found[1]
        return describe_source(self.fallback, target)

    def __repr__(self) -> str:
        return f"CommandLineKeychain(registries={sorted(self._given)!r}, fallback={self.fallback!r})"


def describe_source(keychain: Keychain, target: Target) -> str:
    """Where ``keychain`` finds credentials for ``target``: a file, a helper, or ``"none"``."""
    if isinstance(keychain, CommandLineKeychain):
        return keychain.origin(target)
    if not isinstance(keychain, DefaultKeychain):
        return repr(keychain)
    registry, repository = _registry_of(target)
    for path in keychain.config_paths():
        try:
            config_file = _ConfigFile.load(path)
        except AuthError:
            return f"{path} (unreadable)"
        if config_file is None:
            continue
        helper = config_file.helper_for(registry)
        if helper:
            return f"credential helper docker-credential-{helper} (configured in {path})"
        if config_file.entry_for(registry, repository) is not None:
            return str(path)
    return "none"


# ------------------------------------------------------------------------------------------- login

def config_path(authfile: str | None = None) -> Path:
    """The file ``login`` writes: ``authfile``, else ``$DOCKER_CONFIG/config.json``, else
    ``~/.docker/config.json`` (docker's choice)."""
    if authfile:
        return Path(authfile)
    docker_config = os.environ.get("DOCKER_CONFIG")
    if docker_config:
        return Path(docker_config) / "config.json"
    return Path.home() / ".docker" / "config.json"


def _read_json(path: Path) -> dict[str, Any]:
    if _ConfigFile.load(path) is None:  # validates, with secret-free errors
        return {}
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8-sig"))
    return data


def _write_json(path: Path, data: dict[str, Any]) -> None:
    # Atomic and private: a temporary file (mode 0600) in the same directory, then rename.
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with atomic_file(path, binary=False, prefix=".config-", suffix=".json") as out:
        json.dump(data, out, indent="\t")
        out.write("\n")


def _helper_command(helper: str, action: str, stdin: bytes, server: str) -> None:
    program = CredentialHelper(helper).program
    path = shutil.which(program)
    if path is None:
        raise CredentialsError(f"credential helper {program} was not found on PATH (registry {server})")
    try:
        proc = subprocess.run([path, action], input=stdin, capture_output=True, timeout=DEFAULT_HELPER_TIMEOUT,
                              check=False)
    except subprocess.TimeoutExpired:
        raise CredentialsError(f"credential helper {program} {action} timed out (registry {server})") from None
    if proc.returncode != 0:
        # stdout/stderr may echo what we sent: only the exit status is named.
        raise CredentialsError(f"credential helper {program} {action} failed with exit status "
                               f"{proc.returncode} (registry {server})")


def verify_login(registry: Registry, auth: Basic, client: Any) -> None:
    """Ping ``registry`` and authenticate with ``auth`` (a token for Bearer registries, ``GET /v2/``
    with Basic otherwise). Raises ``transport.Error`` / :class:`~ocitransport.authn.AuthError`."""
    from . import transport
    from .messages import Request
    from .transport.errors import check_error

    rt = transport.new(registry, auth, client, scopes=[])
    # The transport's scheme layer rewrites the URL to plain HTTP when the ping found that.
    response = rt.round_trip(Request("GET", f"https://{registry.name}/v2/", None, None))
    check_error(response, 200)


def login(registry: str, auth: Basic, *, authfile: str | None = None, client: Any = None,
          verify: bool = True) -> str:
    """Verify ``auth`` against ``registry`` (unless ``verify=False``), then store it: with the credential
    helper the config names for the registry, else in the config's ``auths``. Returns where it went."""
    reg = Registry(registry)
    if verify:
        verify_login(reg, auth, client)
    path = config_path(authfile)
    data = _read_json(path)
    config_file = _ConfigFile(path, data)
    helper = config_file.helper_for(reg)
    server = _server_url(reg)
    if helper:
        secret = auth.authorization()
        payload = json.dumps({"ServerURL": server, "Username": secret.username, "Secret": secret.password})
        _helper_command(helper, "store", payload.encode(), reg.name)
        return f"credential helper docker-credential-{helper}"
    secret = auth.authorization()
    encoded = base64.b64encode(f"{secret.username}:{secret.password}".encode()).decode()
    auths = data.setdefault("auths", {})
    key = server if reg.is_docker_hub else reg.name
    auths[key] = {"auth": encoded}
    _write_json(path, data)
    return str(path)


def logout(registry: str, *, authfile: str | None = None) -> str:
    """Remove ``registry``'s credentials from the helper or the config file; returns where from.
    Raises :class:`CredentialsError` when there were none."""
    reg = Registry(registry)
    path = config_path(authfile)
    data = _read_json(path)
    config_file = _ConfigFile(path, data)
    helper = config_file.helper_for(reg)
    server = _server_url(reg)
    if helper:
        _helper_command(helper, "erase", server.encode(), reg.name)
        return f"credential helper docker-credential-{helper}"
    auths = data.get("auths") or {}
    keys = [k for k in list(auths) if isinstance(k, str) and _same_host(k, reg)]
    if not keys:
        raise CredentialsError(f"not logged in to {reg.name} (no entry in {path})")
    for k in keys:
        del auths[k]
    _write_json(path, data)
    return str(path)


def _same_host(key: str, registry: Registry) -> bool:
    from .authn import _host_matches, _is_host_key

    return key == registry.name or (_is_host_key(key) and _host_matches(key, registry))


# ------------------------------------------------------------------------------------------- TLS

def certs_d_roots() -> list[str]:
    """The ``certs.d`` roots searched now: ``$OCITRANSPORT_CERTS_D`` when set, else
    :data:`DEFAULT_CERTS_D`."""
    value = os.environ.get(CERTS_D_ENV)
    if value is None:
        return list(DEFAULT_CERTS_D)
    return [p for p in value.split(os.pathsep) if p]


def cert_dir_for(registry: str) -> str | None:
    """The first ``ROOT/HOST[:PORT]`` directory for ``registry`` among :func:`certs_d_roots`, as podman
    (containers/image pkg/tlsclientconfig) and docker (daemon/registry) look them up."""
    name = Registry(registry).name
    for root in certs_d_roots():
        candidate = os.path.join(root, name)
        if os.path.isdir(candidate):
            return candidate
    return None


@dataclass(frozen=True)
class SideTLS:
    """One side's TLS settings, shaped as the sync file's per-registry ``tls-verify`` / ``cert-dir``."""

    registry: str
    tls_verify: bool = True
    cert_dir: str | None = None


def side_tls(registry: str, tls_verify: bool | None, cert_dir: str | None) -> SideTLS | None:
    """The settings for ``registry`` from ``--*-tls-verify`` / ``--*-cert-dir``, else its ``certs.d``
    directory; ``None`` when nothing differs from the run's defaults."""
    directory = cert_dir or cert_dir_for(registry)
    if tls_verify is None and directory is None:
        return None
    return SideTLS(registry, True if tls_verify is None else tls_verify, directory)


__all__ += ["SideTLS", "side_tls", "certs_d_roots", "read_password", "verify_login"]
