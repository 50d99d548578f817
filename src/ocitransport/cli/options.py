"""Command-line options shared by every command that talks to a registry: credentials (``--creds``,
``--src-creds``, ``--dest-creds``, ``--authfile``), TLS per side (``--src-tls-verify``,
``--dest-tls-verify``, ``--src-cert-dir``, ``--dest-cert-dir``) and ``--retry-unreachable``, and what
turns them into a keychain and a round-tripper."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from ..authn import DefaultKeychain, Keychain

__all__ = ["add_credential_options", "add_tls_options", "check", "keychain", "routed", "BOOL_HELP"]

BOOL_HELP = "true or false (alone: true)"


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")


def add_credential_options(parser: argparse.ArgumentParser, *, sides: bool) -> None:
    """``--creds`` and ``--authfile``; with ``sides`` also ``--src-creds`` / ``--dest-creds``."""
    parser.add_argument("--creds", metavar="USER[:PASS]", default=None,
                        help="credentials for every registry of this command (without :PASS the password "
                             "is prompted for, without echo, or read from standard input)")
    if sides:
        parser.add_argument("--src-creds", metavar="USER[:PASS]", default=None,
                            help="credentials for the source registry (as --creds)")
        parser.add_argument("--dest-creds", metavar="USER[:PASS]", default=None,
                            help="credentials for the destination registry (as --creds)")
    parser.add_argument("--authfile", metavar="FILE", default=None,
                        help="read credentials from this docker-style config file only (default: "
                             "$DOCKER_CONFIG/config.json or ~/.docker/config.json, $REGISTRY_AUTH_FILE, "
                             "$XDG_RUNTIME_DIR/containers/auth.json, and the credential helpers they name)")


def add_tls_options(parser: argparse.ArgumentParser, *, sides: bool) -> None:
    """``--tls-verify`` / ``--cert-dir``, or per side ``--src-*`` / ``--dest-*``."""
    for side in (("src", "source"), ("dest", "destination")) if sides else (("", "registry"),):
        prefix = f"{side[0]}-" if side[0] else ""
        parser.add_argument(f"--{prefix}tls-verify", type=_bool, nargs="?", const=True, default=None,
                            metavar="BOOL",
                            help=f"verify the {side[1]}'s TLS certificate and require HTTPS ({BOOL_HELP}; "
                                 "false also allows plain HTTP)")
        parser.add_argument(f"--{prefix}cert-dir", metavar="DIR", default=None,
                            help=f"the {side[1]}'s certificates: *.crt CAs, a *.cert + *.key client pair "
                                 "(default: /etc/containers/certs.d/HOST or /etc/docker/certs.d/HOST when "
                                 "present)")
    parser.add_argument("--retry-unreachable", action="store_true",
                        help="keep retrying a registry that never answered (DNS failure, connection refused); "
                             "by default such a registry fails at once - use this for nightly runs")


def check(args: argparse.Namespace) -> str | None:
    """A usage problem with these options, or ``None``."""
    for option in ("cert_dir", "src_cert_dir", "dest_cert_dir"):
        path = getattr(args, option, None)
        if path and not os.path.isdir(path):
            return f"--{option.replace('_', '-')} {path}: no such directory"
    if getattr(args, "authfile", None) and not os.path.isfile(args.authfile):
        return f"--authfile {args.authfile}: no such file"
    return None


def keychain(args: argparse.Namespace, src: str | None = None, dest: str | None = None) -> Keychain | None:
    """The keychain of a run: ``--src-creds`` for ``src``'s registry, ``--dest-creds`` for ``dest``'s,
    ``--creds`` for every other, then ``--authfile`` or the default files. ``None`` when no option
    changes the default. Raises :class:`~ocitransport.credentials.CredentialsError`."""
    from ..credentials import AuthFileKeychain, CommandLineKeychain, CredentialsError, parse_creds
    from ..name import Registry

    fallback: Keychain = AuthFileKeychain(args.authfile) if getattr(args, "authfile", None) else DefaultKeychain()
    given: dict[str, Any] = {}
    not_for_all: list[str] = []
    if getattr(args, "creds", None):
        given["*"] = (parse_creds(args.creds, "--creds"), "--creds")
    for option, name in (("src_creds", src), ("dest_creds", dest)):
        value = getattr(args, option, None)
        if not value:
            continue
        flag = f"--{option.replace('_', '-')}"
        # No registry named (sync's sources): every registry but the other side's.
        key = "*" if name is None else Registry(name).name
        if name is None and dest is not None:
            not_for_all.append(dest)  # sync: the sources' credentials never go to the destination
        if key in given:
            what = "every registry" if key == "*" else f"registry {key}"
            raise CredentialsError(f"{flag} and {given[key][1]} both apply to {what}: give one of them")
        given[key] = (parse_creds(value, flag), flag)
    if not given and not getattr(args, "authfile", None):
        return None
    return CommandLineKeychain(given, fallback, not_for_all=not_for_all)


def routed(stack: contextlib.ExitStack, client: Any, args: argparse.Namespace,
           sides: Sequence[tuple[str, str]], jobs: int) -> Any:
    """``client``, or a router sending each side's registry through a Client with its own TLS settings
    (the path of the sync file's per-registry ``tls-verify`` / ``cert-dir``: ``mirror.options.tls_transport``).
    ``sides`` are ``(registry, option prefix)`` pairs, prefix ``"src"``, ``"dest"`` or ``""``."""
    from ..credentials import side_tls
    from ..mirror.options import RegistryTLS, tls_transport
    from ..name import Registry

    seen: dict[str, Any] = {}
    for registry, prefix in sides:
        dash = f"{prefix}_" if prefix else ""
        found = side_tls(registry, getattr(args, f"{dash}tls_verify", None), getattr(args, f"{dash}cert_dir", None))
        if found is not None:
            seen.setdefault(Registry(found.registry).name, found)
    if not seen:
        return client
    tls = tuple(RegistryTLS.from_cert_dir(side.registry, side.cert_dir, verify=side.tls_verify)
                for side in seen.values())
    return stack.enter_context(tls_transport(client, tls, jobs))


def plain_http(args: argparse.Namespace) -> bool:
    """Whether any ``--*tls-verify=false`` was given (plain HTTP allowed, as ``--insecure``)."""
    return any(getattr(args, o, None) is False for o in ("tls_verify", "src_tls_verify", "dest_tls_verify"))


class RetryLines(logging.Handler):
    """Prints each retry as it happens, one line (``ocitransport: GET ...: retrying in 1.0s (1/3) after:
    ...``), and counts them all for the summary. ``quiet``: count only."""

    def __init__(self, quiet: bool = False) -> None:
        super().__init__(logging.INFO)
        self.quiet = quiet
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if self.quiet:
            return
        try:
            print(f"ocitransport: {' '.join(self.format(record).split())}", file=sys.stderr, flush=True)
        except (OSError, ValueError):  # stderr closed: the count still goes on
            pass


def watch_retries(quiet: bool) -> RetryLines:
    """Install a :class:`RetryLines` on the ``ocitransport.retry`` logger (only it prints retries)."""
    logger = logging.getLogger("ocitransport.retry")
    for old in [h for h in logger.handlers if isinstance(h, RetryLines)]:
        logger.removeHandler(old)
    handler = RetryLines(quiet)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return handler


def fail_fast(client: Any, args: argparse.Namespace) -> Any:
    """``client`` wrapped in a :class:`~ocitransport.reachability.Reachability` (kept on ``args``) unless
    ``--retry-unreachable``."""
    if getattr(args, "retry_unreachable", False):
        return client
    from ..reachability import Reachability

    reach = Reachability(client)
    args.reachability = reach
    return reach


def unreachable_hint(args: argparse.Namespace) -> str | None:
    """The line explaining a fail-fast failure, or ``None``."""
    reach = getattr(args, "reachability", None)
    if reach is None or not reach.unreachable:
        return None
    hosts = ", ".join(sorted(reach.unreachable))
    return (f"{hosts}: never answered (name not resolved or connection refused), so not retried; check the "
            "name and port, or pass --retry-unreachable to keep trying (nightly runs)")


#: Digest algorithms a reference may name (the OCI image-spec's registered ones); others are refused
#: before any request.
DIGEST_ALGORITHMS = ("sha256", "sha512")


def check_reference(text: str, what: str = "reference") -> str | None:
    """A reference the command line refuses before any request, with why; else ``None``.

    - ``HOST:PORT`` (or ``HOST:PORT`` with nothing after): the grammar reads it as a Docker Hub image
      ``docker.io/library/HOST:PORT``; a name with a dot (or ``localhost``) and an all-digit tag is
      plainly a registry address.
    - ``@ALGO:...`` with an algorithm other than :data:`DIGEST_ALGORITHMS`.
    """
    if "@" in text:
        algorithm = text.rsplit("@", 1)[1].split(":", 1)[0]
        if algorithm not in DIGEST_ALGORITHMS:
            return (f"{what} {text!r}: digest algorithm {algorithm!r} is not supported (only "
                    f"{' and '.join(DIGEST_ALGORITHMS)})")
        return None
    head = text.rstrip("/")
    if "/" in head:
        return None
    name, sep, port = head.rpartition(":")
    if sep and port.isdigit() and ("." in name or name == "localhost" or name.startswith("[")):
        return (f"{what} {text!r} is a registry address, not an image (it would be read as "
                f"docker.io/library/{text}): name a repository, e.g. {head}/REPOSITORY:TAG")
    return None


#: Options whose value may start with ``-`` (``--exclude -rc``, the README's own example); argparse
#: takes such a value for an option otherwise.
DASH_VALUE_OPTIONS = frozenset({"--include", "--exclude", "--tag", "--creds", "--src-creds", "--dest-creds",
                                "--password", "-p"})


def join_dash_values(argv: Sequence[str]) -> list[str]:
    """``["--exclude", "-rc"]`` -> ``["--exclude=-rc"]`` for :data:`DASH_VALUE_OPTIONS` (after ``--``
    nothing is touched)."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            out += argv[i:]
            break
        if arg in DASH_VALUE_OPTIONS and i + 1 < len(argv) and argv[i + 1].startswith("-") and argv[i + 1] != "-":
            out.append(f"{arg}={argv[i + 1]}" if arg.startswith("--") else f"{arg}{argv[i + 1]}")
            i += 2
            continue
        out.append(arg)
        i += 1
    return out


_AUTH_WORDS = ("UNAUTHORIZED", "DENIED", "status 401", "status 403", "401 Unauthorized", "403 Forbidden")


def auth_hints(errors: Sequence[tuple[str, str]], chain: Keychain | None,
               file_credentials: Sequence[str] = ()) -> list[str]:
    """One line per registry that refused authentication in ``errors``: whether credentials were sent,
    where they came from (option, file or helper; never the secret) and what to do."""
    import re

    from ..authn import Anonymous, AuthError
    from ..credentials import describe_source
    from ..name import Registry

    chain = chain if chain is not None else DefaultKeychain()
    hosts: list[str] = []
    for ref, message in errors:
        if not any(word in message for word in _AUTH_WORDS):
            continue
        found = re.search(r"https?://([^/\s]+)/v2/", message)
        host = found.group(1) if found else ref.split("/", 1)[0]
        if host not in hosts:
            hosts.append(host)
    lines = []
    for host in hosts:
        try:
            registry = Registry(host)
            if registry.name in file_credentials:
                source, sent = "the sync file's credentials", True
            else:
                sent = chain.resolve(registry) is not Anonymous
                source = describe_source(chain, registry)
        except (AuthError, ValueError) as exc:
            lines.append(f"{host}: authentication failed; reading the credentials failed too: {exc}")
            continue
        if sent:
            lines.append(f"{host}: credentials were sent (from {source}) and refused: check the user name, the "
                         f"password or token, and the account's access to the repository; "
                         f"'ocitransport login {host}' checks and stores new ones")
        else:
            lines.append(f"{host}: no credentials were sent (none found: --creds, --src-creds / --dest-creds, "
                         f"--authfile, the docker config files or a credential helper): run "
                         f"'ocitransport login {host}' or pass --creds USER")
    return lines


def storage_hints(errors: Sequence[tuple[str, str]]) -> list[str]:
    """One line per registry whose storage failed in ``errors`` (full, quota, read-only): not retried."""
    import re

    from .._storage_errors import storage_cause

    lines: list[str] = []
    for _, message in errors:
        cause = storage_cause(message)
        if cause is None:
            continue
        found = re.search(r"\b(PUT|PATCH|POST|GET|HEAD|DELETE) https?://([^/\s]+)/", message)
        who = "the registry"
        if found:
            side = "destination registry" if found.group(1) in ("PUT", "PATCH", "POST") else "registry"
            who = f"the {side} {found.group(2)}"
        line = (f"{cause.replace('the registry', who, 1)}: not retried; free space there (or raise its quota), "
                "then run the same command again")
        if line not in lines:
            lines.append(line)
    return lines


def implicit_hub_hints(references: Sequence[str], errors: Sequence[tuple[str, str]]) -> list[str]:
    """For a failed reference the command line named without a registry: how it was read
    (``myhost:5000/app`` is a registry and a repository; ``myhost:5000`` alone is Docker Hub's
    ``library/myhost`` with tag ``5000``)."""
    from ..name import Repository

    if not errors:
        return []
    lines = []
    for text in references:
        first = text.split("/", 1)[0]
        if "/" in text and ("." in first or ":" in first or first == "localhost"):
            continue  # a registry was named
        repo = text.split("@", 1)[0]
        tag = ""
        if ":" in repo.rsplit("/", 1)[-1]:
            repo, tag = repo.rsplit(":", 1)
        try:
            full = Repository(repo).name
        except ValueError:
            continue
        lines.append(f"note: {text!r} names no registry and was read as {full}{':' + tag if tag else ''} "
                     "(Docker Hub); name the registry first, e.g. registry.example:5000/REPOSITORY:TAG")
    return lines
