"""The command line's registry commands beside copy / mirror / sync: ``login``, ``logout`` and the
inspection commands (``ls``, ``catalog``, ``digest``, ``manifest``, ``config``, ``inspect``, ``blob``,
``tag``, ``delete``), on the same transport, credentials and TLS options. The operations themselves
live in :mod:`ocitransport.inspect` (usable from Python)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["COMMANDS", "add_commands", "run"]

_EPILOG = ("Credentials come from --creds, else --authfile, else the docker config files and the credential "
           "helpers they name (see 'ocitransport login'). Exit status: 0 done, 1 failed, 2 bad usage.")


def _common(tls: bool = True) -> argparse.ArgumentParser:
    from . import options as cliopts

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help="debug logs, HTTP requests included (secrets redacted)")
    cliopts.add_credential_options(common, sides=False)
    if tls:
        cliopts.add_tls_options(common, sides=False)
        common.add_argument("--retries", type=int, default=3, help="retries per request (default 3)")
    return common


def add_commands(sub: Any) -> None:
    """Add ``login``, ``logout`` and the inspection commands to the subparsers ``sub``."""
    raw = argparse.RawDescriptionHelpFormatter
    common = _common()
    lo = sub.add_parser("login", parents=[common], help="check and store credentials for a registry",
                        formatter_class=raw, epilog=_EPILOG,
                        description="Verify USER's password against REGISTRY (a ping and a token or Basic "
                                    "check), then store it: with the credential helper the docker config names "
                                    "for the registry (credHelpers, credsStore), else in the config's 'auths' "
                                    "(--authfile, else $DOCKER_CONFIG/config.json or ~/.docker/config.json, "
                                    "mode 0600).\n\nexamples:\n  ocitransport login ghcr.io -u me "
                                    "--password-stdin < token.txt\n  ocitransport login registry.local:5000 "
                                    "-u admin   (prompts, without echo)")
    lo.add_argument("registry", metavar="REGISTRY")
    lo.add_argument("-u", "--username", required=True)
    lo.add_argument("-p", "--password", help="the password (visible to other users in ps: prefer the prompt "
                                             "or --password-stdin)")
    lo.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    out = sub.add_parser("logout", parents=[_common(tls=False)], help="remove stored credentials",
                         description="Remove REGISTRY's credentials from the credential helper or the config "
                                     "file login wrote them to.")
    out.add_argument("registry", metavar="REGISTRY")

    def add(name: str, help: str, description: str, *args: tuple[str, dict[str, Any]]) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, parents=[common], help=help, description=description,
                                                    epilog=_EPILOG, formatter_class=raw)
        for arg, kwargs in args:
            p.add_argument(arg, **kwargs)
        return p

    add("ls", "list a repository's tags", "Print REPO's tags, one a line.\n\nexample:\n  ocitransport ls "
        "ghcr.io/org/app", ("repo", {"metavar": "REPO"}))
    add("catalog", "list a registry's repositories", "Print REGISTRY's repositories (/v2/_catalog), one a "
        "line.\n\nexample:\n  ocitransport catalog registry.local:5000", ("registry", {"metavar": "REGISTRY"}))
    add("digest", "print an image's digest", "Print the digest of REF's manifest (as the registry stores it)."
        "\n\nexample:\n  ocitransport digest ghcr.io/org/app:v1", ("ref", {"metavar": "REF"}))
    mf = add("manifest", "print a manifest (raw bytes)", "Write REF's manifest to stdout, byte for byte. With "
             "--platform, the manifest of that platform of an index.\n\nexample:\n  ocitransport manifest "
             "--platform linux/arm64 docker.io/library/alpine:3.20", ("ref", {"metavar": "REF"}))
    mf.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", help="pick this platform of an index")
    cf = add("config", "print an image's config blob", "Write REF's config blob (JSON) to stdout.\n\nexample:\n"
             "  ocitransport config ghcr.io/org/app:v1", ("ref", {"metavar": "REF"}))
    cf.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", help="pick this platform of an index")
    ins = add("inspect", "summarise an image (as skopeo inspect)", "Print REF's name, digest, tags, created "
              "date, platform, labels and layers (skopeo inspect's fields).\n\nexample:\n  ocitransport "
              "inspect --json ghcr.io/org/app:v1", ("ref", {"metavar": "REF"}))
    ins.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", help="pick this platform of an index")
    ins.add_argument("--json", action="store_true", help="JSON on stdout (skopeo inspect's field names)")
    ins.add_argument("--no-tags", action="store_true", help="do not list the repository's tags")
    bl = add("blob", "fetch a blob", "Write the blob REPO@DIGEST to stdout or --output FILE (digest verified; "
             "a file is written atomically).\n\nexample:\n  ocitransport blob ghcr.io/org/app@sha256:... "
             "-o layer.tar.gz", ("ref", {"metavar": "REPO@DIGEST"}))
    bl.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")
    add("tag", "tag an image in its repository", "Give REF's manifest the tag NEWTAG in the same repository "
        "(the manifest is put again; no blob is read or written).\n\nexample:\n  ocitransport tag "
        "registry.local:5000/app:v1.2.3 v1.2", ("ref", {"metavar": "REF"}), ("new_tag", {"metavar": "NEWTAG"}))
    add("delete", "delete an image from a registry", "Delete REF's manifest (a tag is resolved to its digest "
        "first, so every tag of that manifest goes with it, as skopeo delete).\n\nexample:\n  ocitransport "
        "delete registry.local:5000/app:old", ("ref", {"metavar": "REF"}))


COMMANDS = frozenset({"login", "logout", "ls", "catalog", "digest", "manifest", "config", "inspect", "blob",
                      "tag", "delete"})


def _error(message: str) -> None:
    print(f"ocitransport: error: {' '.join(str(message).split())}", file=sys.stderr)


def _client(args: argparse.Namespace) -> Any:
    from ..client import Client

    return Client()


def run(args: argparse.Namespace) -> int:
    """Run one of :data:`COMMANDS`; returns the exit status (errors printed as one line)."""
    from ..credentials import CredentialsError
    from ..exceptions import OCITransportError
    from . import options as cliopts

    problem = cliopts.check(args)
    if args.command == "blob" and "@" not in args.ref:
        problem = f"{args.ref}: a blob is named by REPO@DIGEST"
    if getattr(args, "retries", 0) < 0:
        problem = "--retries must not be negative"
    for name in ("ref", "repo"):
        if not problem and getattr(args, name, None):
            problem = cliopts.check_reference(getattr(args, name))
    if problem:
        _error(problem)
        return 2
    try:
        if args.command == "logout":
            from ..credentials import logout

            where = logout(args.registry, authfile=args.authfile)
            print(f"removed the credentials for {args.registry} from {where}", file=sys.stderr)
            return 0
        if args.command == "login":
            return _login(args)
        return _inspect(args)
    except (CredentialsError, ValueError) as exc:
        from ..name import BadName

        _error(str(exc))
        # A bad reference or option value is bad usage (2); a refused logout or credential store is 1.
        return 2 if isinstance(exc, BadName) or not isinstance(exc, OCITransportError) else 1
    except OCITransportError as exc:
        _error(str(exc))
        hint = cliopts.unreachable_hint(args)
        if hint:
            _error(hint)
        if args.command == "login":
            _error(f"login to {args.registry} as {args.username} failed; nothing was stored")
            return 1
        target = getattr(args, "ref", None) or getattr(args, "repo", None) or args.registry
        for line in cliopts.auth_hints([(target, str(exc))], getattr(args, "keychain_used", None)):
            _error(line)
        return 1


def _login(args: argparse.Namespace) -> int:
    from ..authn import Basic
    from ..credentials import login, read_password
    from ..name import Registry
    from . import options as cliopts

    if args.password is not None and args.password_stdin:
        _error("give --password or --password-stdin, not both")
        return 2
    password = args.password
    if password is None:
        password = read_password(f"Password for {args.username}: ", "login")
    if not password:
        _error(f"login: the password for {args.username} is empty")
        return 2
    registry = Registry(args.registry).name
    with _client(args) as client, contextlib.ExitStack() as stack:
        routed = cliopts.routed(stack, client, args, [(registry, "")], 1)
        where = login(registry, Basic(args.username, password), authfile=args.authfile, client=routed)
    print(f"login succeeded: credentials for {registry} stored in {where}", file=sys.stderr)
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from .. import inspect as ops
    from . import options as cliopts

    target = getattr(args, "ref", None) or getattr(args, "repo", None) or args.registry
    registry = ops.registry_of(target, catalog=args.command == "catalog")
    keychain = args.keychain_used = cliopts.keychain(args, None, None)
    with _client(args) as client, contextlib.ExitStack() as stack:
        routed = cliopts.routed(stack, client, args, [(registry, "")], 1)
        from .. import transport

        # As the mirror's Session: retries with backoff (each one shown), and fail fast on a registry
        # that never answered unless --retry-unreachable.
        cliopts.watch_retries(quiet=False)
        routed = transport.new_retry(cliopts.fail_fast(routed, args), backoff=transport.Backoff(
            duration=0.5, factor=2.0, jitter=0.1, steps=args.retries + 1))
        if getattr(args, "verbose", 0):
            routed = transport.new_logger(routed)
        reg = ops.Registry(routed, keychain, insecure=cliopts.plain_http(args), retries=args.retries)
        handler: Callable[[Any, argparse.Namespace], int] = _HANDLERS[args.command]
        return handler(reg, args)


def _out(data: bytes) -> int:
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    return 0


def _lines(lines: list[str]) -> int:
    _out("".join(f"{line}\n" for line in lines).encode())
    return 0


def _blob(reg: Any, args: argparse.Namespace) -> int:
    if args.output:
        reg.blob_to_file(args.ref, args.output)
    else:
        reg.blob_to(args.ref, sys.stdout.buffer)
    return 0


def _inspect_one(reg: Any, args: argparse.Namespace) -> int:
    summary = reg.inspect(args.ref, platform=args.platform, tags=not args.no_tags)
    if args.json:
        _out((json.dumps(summary, indent=4) + "\n").encode())
        return 0
    width = max(len(k) for k in summary)
    lines = []
    for key, value in summary.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
        elif isinstance(value, list):
            value = "\n".join([""] + [f"    {v}" for v in value]) if value else "-"
        lines.append(f"{key + ':':{width + 1}} {value}")
    return _lines(lines)


def _tag(reg: Any, args: argparse.Namespace) -> int:
    digest = reg.tag(args.ref, args.new_tag)
    print(f"tagged {digest} as {args.new_tag}", file=sys.stderr)
    return 0


def _delete(reg: Any, args: argparse.Namespace) -> int:
    digest = reg.delete(args.ref)
    print(f"deleted {digest}", file=sys.stderr)
    return 0


_HANDLERS: dict[str, Callable[[Any, argparse.Namespace], int]] = {
    "ls": lambda reg, a: _lines(reg.list_tags(a.repo)),
    "catalog": lambda reg, a: _lines(reg.catalog(a.registry)),
    "digest": lambda reg, a: _lines([reg.digest(a.ref)]),
    "manifest": lambda reg, a: _out(reg.manifest(a.ref, platform=a.platform)[0]),
    "config": lambda reg, a: _out(reg.config(a.ref, platform=a.platform)),
    "inspect": _inspect_one,
    "blob": _blob,
    "tag": _tag,
    "delete": _delete,
}
