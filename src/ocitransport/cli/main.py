"""The ``ocitransport`` command line: ``copy``, ``mirror``, ``sync``, ``demo``, ``login`` / ``logout`` and the
inspection commands of :mod:`ocitransport.commands` (also ``python -m ocitransport``).

Exit status: 0 when every image was copied or skipped, 1 when something failed (each failure named on
stderr), 2 for bad usage (bad options, references, regular expressions or sync files), 130 after Ctrl-C,
141 when stdout was closed early. Errors are one line each (``ocitransport: error: ...``), never a
traceback. On a terminal (with ``rich`` installed) progress is drawn as bars and the run ends with a
summary table; otherwise one line per image. Each retry is one line as it happens.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from .progress import LineProgress, RichProgress

PROG = "ocitransport"
log = logging.getLogger("ocitransport.cli")


def _error(message: str) -> None:
    print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)


def _make_progress(args: argparse.Namespace) -> LineProgress:
    progress = _new_progress(args)
    args.progress_used = progress  # what Ctrl-C reports as finished
    return progress


def _new_progress(args: argparse.Namespace) -> LineProgress:
    if args.json or args.quiet:
        return LineProgress(quiet=True)
    if sys.stderr.isatty():
        try:
            return RichProgress()
        except ImportError:
            pass
    return LineProgress()


class _Redact(logging.Filter):
    """Masks given secrets (passwords from a sync file) in every record, defence in depth: the library
    never logs them, and this keeps it so whatever a third-party logger prints."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            text = record.getMessage()
            for secret in self.secrets:
                text = text.replace(secret, "***")
            record.msg, record.args = text, None
        return True


# ------------------------------------------------------------------------------------------- options

def _jobs(text: str) -> int | str:
    """``--jobs``: a whole number, or ``auto``."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number or auto, not {text!r}") from None


def _options(*, sync: bool) -> argparse.ArgumentParser:
    """The options every copying subcommand has. For ``sync`` the defaults are ``None`` so that only
    options given on the command line override the file's."""
    unset = None if sync else "auto"
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help="debug logs, HTTP requests included (secrets redacted)")
    common.add_argument("--jobs", "-j", type=_jobs, default=unset, metavar="N|auto",
                        help="images in parallel: a number pins it; auto (default" + (", or the file's" if sync else "")
                        + ") grows it while throughput grows and latency stays flat, up to 64")
    common.add_argument("--platform", action="append", default=[], metavar="OS/ARCH[/VARIANT]",
                        help="copy only these platforms of an index (repeatable; default: all)")
    common.add_argument("--dry-run", action="store_true", help="print the plan; write nothing")
    common.add_argument("--keep-going", action="store_true",
                        help="go on with the other images after a failure (default: stop starting new ones)")
    common.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    common.add_argument("--quiet", "-q", action="store_true", help="print only failures and the summary")
    common.add_argument("--insecure", action="store_true",
                        help="allow plain HTTP and skip TLS certificate verification")
    common.add_argument("--ca-file", help="trust this CA bundle (PEM) for TLS registries")
    common.add_argument("--cert", help="client certificate (PEM) for mutual TLS")
    common.add_argument("--key", help="client key (PEM) for --cert")
    common.add_argument("--retries", type=int, default=None if sync else 3,
                        help="retries per request and per blob (default 3" + (", or the file's)" if sync else ")"))
    common.add_argument("--include-nondistributable", action="store_true",
                        help="also copy foreign / non-distributable layers")
    common.add_argument("--no-referrers", dest="referrers", action="store_false", default=None if sync else True,
                        help="do not look for referrers (signatures, SBOMs, attestations) to copy along"
                             + (" (overrides the file's)" if sync else "")
                             + "; tags that are selected are copied whatever their names")
    common.add_argument("--allow-private-storage", action="append", default=[], metavar="REGISTRY",
                        help="this registry's blob storage may be on a private address (on-prem MinIO on "
                             "10.x); repeatable; link-local and loopback addresses stay refused")
    from . import options as cliopts

    cliopts.add_credential_options(common, sides=True)
    cliopts.add_tls_options(common, sides=True)
    return common


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--include", action="append", default=[], metavar="REGEX",
                        help="only tags matching (repeatable)")
    parser.add_argument("--exclude", action="append", default=[], metavar="REGEX",
                        help="skip tags matching (repeatable)")


def _version() -> str:
    """What a bug report needs: our version and build, Python's, pycurl's and libcurl's."""
    import platform

    import pycurl

    from .. import COMPILED, __version__

    build = "compiled twins" if COMPILED else "pure-Python twins"
    return f"{PROG} {__version__} ({build}); Python {platform.python_version()}; {pycurl.version}"


class _Version(argparse.Action):
    """``--version``: one line, unwrapped (argparse's own version action wraps it), built only when asked."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(_version())
        parser.exit()


_CREDENTIALS = ("credentials: --creds / --src-creds / --dest-creds USER[:PASS] (without :PASS prompted, or read\n"
                "  from standard input), else --authfile FILE, else $DOCKER_CONFIG/config.json or\n"
                "  ~/.docker/config.json, $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json and the\n"
                "  credential helpers they name ('ocitransport login' writes there).\n"
                "TLS: /etc/containers/certs.d/HOST[:PORT] or /etc/docker/certs.d/HOST[:PORT] (*.crt CAs, *.cert +\n"
                "  *.key client pair) are read by default; --src-/--dest-cert-dir and --src-/--dest-tls-verify\n"
                "  per side.")
_EXITS = ("exit status: 0 done (everything copied or up to date), 1 something failed (each failure named on\n"
          "  stderr), 2 bad usage, 130 interrupted (rerun to complete), 141 stdout closed early (| head).")
_EPILOG = (f"examples:\n  {PROG} copy docker.io/library/alpine:3.20 registry.local:5000/alpine:3.20\n"
           f"  {PROG} mirror --exclude -rc ghcr.io/org/app registry.local:5000/app\n"
           f"  {PROG} sync images.yaml --dest registry.local:5000/mirror --keep-going\n"
           f"  {PROG} login registry.local:5000 -u admin\n  {PROG} inspect registry.local:5000/app:v1\n\n"
           f"{_CREDENTIALS}\n{_EXITS}")


def _epilog(*examples: str) -> str:
    lines = "\n".join(f"  {PROG} {e}" for e in examples)
    return f"examples:\n{lines}\n\n{_CREDENTIALS}\n{_EXITS}"


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Copy and mirror container images between registries.",
                                     epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="debug logs, HTTP requests included (secrets redacted)")
    parser.add_argument("--version", action=_Version, nargs=0,
                        help="print the version, the build (compiled or pure twins) and libcurl's, and exit")
    sub = parser.add_subparsers(dest="command", required=True)
    common = _options(sync=False)

    raw = argparse.RawDescriptionHelpFormatter
    cp = sub.add_parser("copy", parents=[common], help="copy one image or index", formatter_class=raw,
                        epilog=_epilog("copy docker.io/library/alpine:3.20 registry.local:5000/alpine",
                                       "copy --src-creds me --platform linux/arm64 ghcr.io/org/app:v1 "
                                       "registry.local:5000/app:v1",
                                       "copy --dest-cert-dir ./certs app@sha256:... registry.local:5000/app"),
                        description="Copy SRC (host/repo:tag or host/repo@digest) to DST (a reference, "
                                    "or a repository to keep the tag).")
    cp.add_argument("src")
    cp.add_argument("dst")

    mi = sub.add_parser("mirror", parents=[common], help="mirror the tags of a repository", formatter_class=raw,
                        epilog=_epilog("mirror ghcr.io/org/app registry.local:5000/app",
                                       "mirror --include '^v1\\.' --exclude -rc ghcr.io/org/app "
                                       "registry.local:5000/app",
                                       "mirror --json --quiet quay.io/org/tool registry.local:5000/tool > report.json"),
                        description="Copy every tag of SRC_REPO (or those selected) to DST_REPO.")
    mi.add_argument("src_repo")
    mi.add_argument("dst_repo")
    mi.add_argument("--all-tags", action="store_true", default=True, help="every tag (the default)")
    mi.add_argument("--tag", action="append", dest="tags", metavar="TAG", help="only this tag (repeatable)")
    _filters(mi)

    sy = sub.add_parser("sync", parents=[_options(sync=True)], help="mirror what a YAML file lists",
                        formatter_class=raw,
                        epilog=_epilog("sync images.yaml --dest registry.local:5000/mirror",
                                       "sync images.yaml --dest oci:/media/usb/mirror",
                                       "sync images.yaml --source oci:/media/usb/mirror "
                                       "--dest registry.internal/mirror",
                                       "sync images.yaml --keep-going --retry-unreachable --json > report.json"),
                        description="Mirror the images FILE lists (skopeo sync's YAML, plus 'destination:' "
                                    "and options) into one destination registry.")
    sy.add_argument("file", metavar="FILE")
    sy.add_argument("--dest", metavar="REGISTRY[/PREFIX]",
                    help="the destination (overrides the file's): a registry, or an OCI layout oci:DIR or archive "
                         "oci-archive:FILE.tar holding every repository under its full name")
    sy.add_argument("--source", metavar="oci:DIR",
                    help="read every repository the file lists from this OCI layout (or oci-archive:FILE.tar), "
                         "where a sync with --dest oci:DIR wrote it, instead of from its registry")
    sy.add_argument("--dask", metavar="ADDRESS",
                    help="run the copies on a dask cluster: a scheduler address, or local:N for N local workers")
    _filters(sy)

    from . import commands

    commands.add_commands(sub)
    demo = sub.add_parser("demo", help="start two local registries, mirror sample images, verify")
    demo.add_argument("--images", type=int, default=4, help="sample tags to generate (default 4)")
    demo.add_argument("--jobs", "-j", type=int, default=8)
    return parser


def _client(args: argparse.Namespace) -> Any:
    from ..client import Client
    from ..mirror import _pool_limits

    verify: bool | str = True
    if args.insecure:
        verify = False
    elif args.ca_file:
        verify = args.ca_file
    cert: Any = None
    if args.cert:
        cert = (args.cert, args.key) if args.key else args.cert
    from ..mirror.concurrency import most_jobs

    return Client(verify=verify, cert=cert, **_pool_limits(most_jobs(args.jobs or "auto")))


def _check_common(args: argparse.Namespace) -> str | None:
    import os

    from ..mirror.manifests import parse_platform
    from . import options as cliopts

    problem = cliopts.check(args)
    if problem:
        return problem

    if isinstance(args.jobs, int) and args.jobs < 1:
        return "--jobs must be greater than zero"
    if args.retries is not None and args.retries < 0:
        return "--retries must not be negative"
    if args.key and not args.cert:
        return "--key needs --cert"
    for option in ("ca_file", "cert", "key"):
        path = getattr(args, option)
        if path and not os.path.exists(path):
            return f"--{option.replace('_', '-')} {path}: no such file"
    for name in args.allow_private_storage:
        from ..name import Registry

        try:
            Registry(name)
        except ValueError as exc:
            return f"--allow-private-storage {name}: {exc}"
    for p in args.platform:
        try:
            parse_platform(p)
        except ValueError as exc:
            return str(exc)
    for rx in [*getattr(args, "include", []), *getattr(args, "exclude", [])]:
        try:
            re.compile(rx)
        except re.error as exc:
            return f"bad regular expression {rx!r}: {exc}"
    return None


def _check_args(args: argparse.Namespace) -> str | None:
    from ..mirror.targets import parse_reference
    from ..mirror.targets import parse_repository as Repository

    problem = _check_common(args)
    if problem:
        return problem
    from . import options as cliopts

    refs = [args.src, args.dst] if args.command == "copy" else [args.src_repo, args.dst_repo]
    for ref in refs:
        problem = cliopts.check_reference(ref)
        if problem:
            return problem
    try:
        if args.command == "copy":
            parse_reference(args.src, insecure=args.insecure)
            from ..mirror.targets import has_identifier

            if has_identifier(args.dst):
                parse_reference(args.dst, insecure=args.insecure)
            else:
                Repository(args.dst, insecure=args.insecure)
        elif args.command == "mirror":
            Repository(args.src_repo, insecure=args.insecure)
            Repository(args.dst_repo, insecure=args.insecure)
    except ValueError as exc:
        return str(exc)
    return None


def _print_plan(report: Any) -> None:
    for item in report.images:
        what = "up to date" if item.status == "skipped" else "copy"
        print(f"{what:10} {item.source} -> {item.destination} {item.digest} "
              f"{item.media_type}{' ' + ','.join(item.platforms) if item.platforms else ''}")


def _finish(args: argparse.Namespace, report: Any, progress: LineProgress) -> int:
    from . import options as cliopts

    counted = getattr(args, "retry_lines", None)
    if counted is not None:
        report.retries = max(report.retries, counted.count)  # the retries that ended in a failure too
    if args.json:
        import json

        from .jsonreport import report_dict

        print(json.dumps(report_dict(report), indent=2), flush=True)
    elif args.dry_run:
        _print_plan(report)
    for ref, message in report.errors:
        _error(message if ref in message else f"{ref}: {message}")
    hint = cliopts.unreachable_hint(args)
    if hint and report.errors:
        _error(hint)
    for line in cliopts.storage_hints(report.errors):
        _error(line)
    named = [args.src, args.dst] if args.command == "copy" else (
        [args.src_repo, args.dst_repo] if args.command == "mirror" else [])
    for line in cliopts.implicit_hub_hints(named, report.errors):
        print(f"{PROG}: {line}", file=sys.stderr)
    for line in cliopts.auth_hints(report.errors, getattr(args, "keychain_used", None),
                                   getattr(args, "file_credentials", ())):
        _error(line)
    if not args.json:
        progress.finish(report)
    return 0 if report.ok else 1


def _wire(client: Any, args: argparse.Namespace) -> Any:
    """The round-tripper the mirror runs on: the Client, with the logging layer under ``-v``, marking
    registries that never answered (fail fast) unless ``--retry-unreachable``."""
    from . import options as cliopts

    client = cliopts.fail_fast(client, args)
    if getattr(args, "verbose", 0):
        from .. import transport

        return transport.new_logger(client)
    return client


def _registry_name(reference: str) -> str | None:
    """The registry host of a reference or repository (checked by ``_check_args`` before); ``None`` for a
    local layout or archive (no credentials, no TLS)."""
    from ..mirror.targets import is_local
    from ..name import Repository

    if is_local(reference):
        return None
    repo = reference.split("@", 1)[0]
    if ":" in repo.rsplit("/", 1)[-1]:
        repo = repo.rsplit(":", 1)[0]
    return Repository(repo).registry.name


def _run_copy(args: argparse.Namespace) -> int:
    from .. import mirror

    problem = _check_args(args)
    if problem:
        _error(problem)
        return 2
    from . import options as cliopts

    src, dst = (args.src, args.dst) if args.command == "copy" else (args.src_repo, args.dst_repo)
    src_registry, dst_registry = _registry_name(src), _registry_name(dst)
    keychain = args.keychain_used = cliopts.keychain(args, src_registry, dst_registry)
    progress = _make_progress(args)
    try:
        with _client(args) as client, contextlib.ExitStack() as stack:
            sides = [(name, side) for name, side in ((src_registry, "src"), (dst_registry, "dest")) if name]
            routed = cliopts.routed(stack, client, args, sides, args.jobs or 8)
            common: dict[str, Any] = {
                "client": _wire(routed, args), "platforms": args.platform or None, "jobs": args.jobs,
                "retries": args.retries, "include_nondistributable": args.include_nondistributable,
                "insecure": args.insecure or cliopts.plain_http(args), "keep_going": args.keep_going,
                "dry_run": args.dry_run, "keychain": keychain,
                "referrers": args.referrers, "progress": progress,
                "allow_private_storage": args.allow_private_storage}
            if args.command == "copy":
                report = mirror.copy(args.src, args.dst, **common)
            else:
                report = mirror.mirror_repository(args.src_repo, args.dst_repo, tags=args.tags,
                                                  include=args.include or None, exclude=args.exclude or None,
                                                  **common)
    finally:
        progress.close()
    return _finish(args, report, progress)


def _dask_executor(stack: contextlib.ExitStack, address: str, keychain: Any,
                   allow_private_storage: Sequence[str] = ()) -> Any:
    """Enter ``DaskExecutor.from_address(address)``; ``None`` (after one error line) when dask is missing.
    ``keychain`` (the sync file's credentials) serves the manifest reads it does on this side."""
    try:
        from ..mirror.distributed import DaskExecutor

        if not logging.getLogger("ocitransport").isEnabledFor(logging.DEBUG):
            # dask logs every scheduler and worker event at INFO; failures still come through.
            logging.getLogger("distributed").setLevel(logging.ERROR)
        options: dict[str, Any] = {"keychain": keychain} if keychain is not None else {}
        if allow_private_storage:
            options["allow_private_storage"] = allow_private_storage
        return stack.enter_context(DaskExecutor.from_address(address, **options))
    except ImportError as exc:
        if (getattr(exc, "name", "") or "").startswith("ocitransport"):
            _error("--dask: this ocitransport has no distributed executor")
        else:
            _error("--dask needs dask.distributed: pip install 'ocitransport[dask]'")
        return None
    except ValueError as exc:  # a malformed address ("local:x")
        _error(f"--dask {address}: {exc}")
        return None


def _run_sync(args: argparse.Namespace) -> int:
    from ..mirror.sync import SyncConfigError, load_config, sync

    problem = _check_common(args)
    if problem:
        _error(problem)
        return 2
    try:
        config = load_config(args.file)
        if args.dest:
            config = config.with_destination(args.dest)
        if not config.destination:
            raise SyncConfigError(f"{args.file}: no destination: add 'destination:' to the file or pass --dest")
        from ..mirror.sync import check_source
        from ..mirror.targets import is_local, local_refused

        check_source(args.source)
        local = next((t for t in (args.source, config.destination) if t and is_local(t)), None)
        if local is not None and args.dask and not args.dry_run:
            raise SyncConfigError(f"--dask: {local_refused(local)}")
    except SyncConfigError as exc:
        _error(str(exc))
        return 2
    secrets: list[str] = []
    for source in config.registries:
        if source.credentials is not None:
            found = source.credentials.authorization()
            secrets += [found.password, found.auth]
    redact = _Redact(secrets)
    handlers = [*logging.getLogger().handlers, *logging.getLogger("ocitransport.retry").handlers]
    for handler in handlers:
        handler.addFilter(redact)
    if args.jobs is None:
        args.jobs = config.jobs
    try:
        return _sync_with(args, config, sync)
    finally:
        for handler in handlers:
            handler.removeFilter(redact)


def _sync_with(args: argparse.Namespace, config: Any, sync: Any) -> int:
    from ..mirror.sync import SyncConfigError

    progress = _make_progress(args)
    try:
        with contextlib.ExitStack() as stack:
            executor = None
            if args.dask and not args.dry_run:
                executor = _dask_executor(stack, args.dask, config.keychain(), args.allow_private_storage)
                if executor is None:
                    return 2
            from ..mirror.targets import is_local
            from ..name import Registry
            from . import options as cliopts

            client = stack.enter_context(_client(args))
            dest_registry = None if is_local(config.destination) else Registry(config.destination.split("/", 1)[0]).name
            keychain = args.keychain_used = cliopts.keychain(args, None, dest_registry)
            args.file_credentials = [Registry(s.registry).name for s in config.registries if s.credentials]
            sources = [] if args.source else [(s.registry, "src") for s in config.registries]
            sides = [*([(dest_registry, "dest")] if dest_registry else []), *sources]
            client = cliopts.routed(stack, client, args, sides, args.jobs or 8)
            report = sync(config, client=_wire(client, args), executor=executor, dry_run=args.dry_run,
                          keychain=keychain,
                          progress=progress, jobs=args.jobs, retries=args.retries,
                          keep_going=True if args.keep_going else None, platforms=args.platform or None,
                          include=args.include, exclude=args.exclude,
                          include_nondistributable=args.include_nondistributable,
                          insecure=args.insecure or cliopts.plain_http(args),
                          referrers=args.referrers, allow_private_storage=args.allow_private_storage,
                          source=args.source)
    except SyncConfigError as exc:
        _error(str(exc))
        return 2
    finally:
        progress.close()
    return _finish(args, report, progress)


def _interrupted(args: argparse.Namespace) -> None:
    """Ctrl-C: what was finished, and that running the same command again completes the job."""
    progress = getattr(args, "progress_used", None)
    done = f"{progress.done} of {progress.total} images finished" if progress is not None and progress.total else (
        "no image finished")
    rerun = ("; run the same command again to complete the job (finished images are skipped, blobs already "
             "copied are not sent again)") if args.command in ("copy", "mirror", "sync") else ""
    _error(f"interrupted: {done}{rerun}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ocitransport`` command; returns the exit status."""
    from . import options as cliopts

    parser = _build_parser()
    args = parser.parse_args(cliopts.join_dash_values(sys.argv[1:] if argv is None else argv))
    verbose = getattr(args, "verbose", 0) or 0
    # The logger settings below are this run's: put back afterwards, so that main() called in-process (tests,
    # tools embedding the command) leaves the library's logging as it found it.
    package, retries = logging.getLogger("ocitransport"), logging.getLogger("ocitransport.retry")
    saved = (package.level, retries.level, retries.propagate, list(retries.handlers))
    try:
        return _main(args, verbose)
    finally:
        package.setLevel(saved[0])
        retries.setLevel(saved[1])
        retries.propagate = saved[2]
        retries.handlers[:] = saved[3]


def _main(args: argparse.Namespace, verbose: int) -> int:
    from . import options as cliopts

    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format=f"{PROG}: %(levelname)s: %(name)s: %(message)s", stream=sys.stderr)
    # Errors are printed once by the CLI itself; without -v the library's warnings would repeat them.
    logging.getLogger("ocitransport").setLevel(logging.DEBUG if verbose else logging.ERROR)
    if args.command in ("copy", "mirror", "sync"):
        from . import options as cliopts

        args.retry_lines = cliopts.watch_retries(quiet=bool(args.quiet or args.json))
    try:
        if args.command == "demo":
            from .demo import run_demo

            return run_demo(images=args.images, jobs=args.jobs)
        if args.command == "sync":
            return _run_sync(args)
        from . import commands

        if args.command in commands.COMMANDS:
            return commands.run(args)
        return _run_copy(args)
    except KeyboardInterrupt:
        _interrupted(args)
        return 130
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, as a tool killed by SIGPIPE; stdout points at
        # /dev/null so the interpreter's final flush has nowhere to fail.
        import os

        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:
        from ..exceptions import OCITransportError

        log.debug("unexpected failure", exc_info=verbose > 0)
        _error(str(exc) if isinstance(exc, OCITransportError) else f"{type(exc).__name__}: {exc}")
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
