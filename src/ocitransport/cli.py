"""The ``ocitransport`` command line: ``copy``, ``mirror``, ``sync`` and ``demo`` (also ``python -m ocitransport``).

Exit status: 0 when every image was copied or skipped, 1 when something failed (each failure named on
stderr), 2 for bad usage (bad options, references, regular expressions or sync files). Errors are one
line each (``ocitransport: error: ...``), never a traceback. On a terminal (with ``rich`` installed)
progress is drawn as bars and the run ends with a summary table; otherwise one line per image.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

PROG = "ocitransport"
log = logging.getLogger("ocitransport.cli")


def _error(message: str) -> None:
    print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)


def _short(reference: str, width: int = 48) -> str:
    return reference if len(reference) <= width else "…" + reference[-(width - 1):]


class LineProgress:
    """Plain log lines, one per image (what runs without a TTY print)."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.total = 0
        self.done = 0

    def planned(self, units: list[Any]) -> None:
        self.total = len(units)

    def image_done(self, result: Any) -> None:
        self.done += 1
        if self.quiet and result.status != "failed":
            return
        if result.status == "failed":
            line = f"FAILED  {result.source} -> {result.destination}: {result.error}"
        elif result.status == "skipped":
            line = f"skipped {result.source} -> {result.destination} (up to date)"
        else:
            mib = result.bytes_transferred / (1 << 20)
            line = (f"copied  {result.source} -> {result.destination} {result.digest} "
                    f"({result.blobs_transferred} blobs, {mib:.1f} MiB, {result.blobs_mounted} mounted, "
                    f"{result.blobs_skipped} present)")
        print(f"[{self.done}/{self.total}] {line}", file=sys.stderr, flush=True)

    def bytes_done(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass

    def finish(self, report: Any) -> None:
        """The end of the run: the one-line summary."""
        print(report.summary(), file=sys.stderr)


class RichProgress(LineProgress):
    """Progress bars (only on a TTY, only when ``rich`` is importable): images done of planned with
    ETA, bytes with their rate, and one row per image in flight with its own bytes and rate; a summary
    table at the end. ``console`` defaults to stderr."""

    def __init__(self, console: Any = None, quiet: bool = False) -> None:
        super().__init__(quiet=quiet)
        from rich.console import Console, Group
        from rich.live import Live
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.console = console if console is not None else Console(stderr=True)
        self._overall = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("images"), TimeElapsedColumn(), TextColumn("ETA"),
                                 TimeRemainingColumn(), console=self.console)
        self._transfers = Progress(SpinnerColumn(), TextColumn("{task.description}"), DownloadColumn(),
                                   TransferSpeedColumn(), console=self.console)
        self._live = Live(Group(self._overall, self._transfers), console=self.console, refresh_per_second=8,
                          transient=False)
        self._images = self._overall.add_task("total", total=None)
        self._bytes = self._transfers.add_task("[bold]all images", total=None)
        self._rows: dict[Any, Any] = {}  # unit -> task id of the image's row
        self._pending: dict[Any, int] = {}
        self._pending_total = 0
        self._last = time.monotonic()
        self._live.start()

    def planned(self, units: list[Any]) -> None:
        super().planned(units)
        self._overall.update(self._images, total=len(units))

    def image_started(self, unit: Any) -> None:
        """An image began copying: give it a row."""
        self._rows[unit] = self._transfers.add_task(_short(unit.source), total=None)

    def image_bytes(self, unit: Any, n: int) -> None:
        """``n`` more bytes of ``unit`` arrived (batched with :meth:`bytes_done`)."""
        if unit in self._rows:
            self._pending[unit] = self._pending.get(unit, 0) + n

    def image_done(self, result: Any) -> None:
        self.done += 1
        self._overall.advance(self._images)
        for unit in [u for u in self._rows if u.source == result.source and u.destination == result.destination]:
            self._pending.pop(unit, None)
            self._transfers.remove_task(self._rows.pop(unit))
        if result.status == "failed":
            self.console.print(f"[red]FAILED[/] {result.source}: {result.error}", markup=True, highlight=False)
        elif not self.quiet and result.status == "copied":
            self.console.print(f"copied {result.source} -> {result.destination}", markup=False, highlight=False)

    def bytes_done(self, n: int) -> None:
        # Called per received chunk: batch the updates (rich's bookkeeping is not free).
        self._pending_total += n
        now = time.monotonic()
        if now - self._last >= 0.1:
            self._flush()
            self._last = now

    def _flush(self) -> None:
        self._transfers.advance(self._bytes, self._pending_total)
        self._pending_total = 0
        for unit, n in self._pending.items():
            task = self._rows.get(unit)
            if task is not None:
                self._transfers.advance(task, n)
        self._pending.clear()

    def close(self) -> None:
        self._flush()
        for task in self._rows.values():
            self._transfers.remove_task(task)
        self._rows.clear()
        self._live.stop()

    def finish(self, report: Any) -> None:
        """The summary table (and one row per failure)."""
        from rich.table import Table

        mib = report.bytes_transferred / (1 << 20)
        rate = mib / report.duration if report.duration > 0 else 0.0
        table = Table(title="dry run (nothing written)" if report.dry_run else "summary", show_header=True)
        table.add_column("images", justify="left")
        table.add_column("count", justify="right")
        table.add_column("blobs", justify="left")
        table.add_column("count", justify="right")
        planned = len(report.images) - report.images_skipped if report.dry_run else report.images_copied
        rows = [("would copy" if report.dry_run else "copied", planned, "transferred", report.blobs_transferred),
                ("skipped (up to date)", report.images_skipped, "mounted", report.blobs_mounted),
                ("failed", len(report.errors), "already present", report.blobs_skipped),
                ("not attempted", report.images_not_attempted, "retries", report.retries)]
        for a, b, c, d in rows:
            table.add_row(a, str(b), c, str(d))
        table.caption = f"{mib:.1f} MiB in {report.duration:.2f} s ({rate:.1f} MiB/s)"
        if report.pull_quota:
            table.caption += f"\npull quota: {report.quota_text()}"
        self.console.print(table)


def _make_progress(args: argparse.Namespace) -> LineProgress:
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

    from . import COMPILED, __version__

    build = "compiled twins" if COMPILED else "pure-Python twins"
    return f"{PROG} {__version__} ({build}); Python {platform.python_version()}; {pycurl.version}"


class _Version(argparse.Action):
    """``--version``: one line, unwrapped (argparse's own version action wraps it), built only when asked."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(_version())
        parser.exit()


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Copy and mirror container images between registries.")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="debug logs, HTTP requests included (secrets redacted)")
    parser.add_argument("--version", action=_Version, nargs=0,
                        help="print the version, the build (compiled or pure twins) and libcurl's, and exit")
    sub = parser.add_subparsers(dest="command", required=True)
    common = _options(sync=False)

    cp = sub.add_parser("copy", parents=[common], help="copy one image or index",
                        description="Copy SRC (host/repo:tag or host/repo@digest) to DST (a reference, "
                                    "or a repository to keep the tag).")
    cp.add_argument("src")
    cp.add_argument("dst")

    mi = sub.add_parser("mirror", parents=[common], help="mirror the tags of a repository",
                        description="Copy every tag of SRC_REPO (or those selected) to DST_REPO.")
    mi.add_argument("src_repo")
    mi.add_argument("dst_repo")
    mi.add_argument("--all-tags", action="store_true", default=True, help="every tag (the default)")
    mi.add_argument("--tag", action="append", dest="tags", metavar="TAG", help="only this tag (repeatable)")
    _filters(mi)

    sy = sub.add_parser("sync", parents=[_options(sync=True)], help="mirror what a YAML file lists",
                        description="Mirror the images FILE lists (skopeo sync's YAML, plus 'destination:' "
                                    "and options) into one destination registry.")
    sy.add_argument("file", metavar="FILE")
    sy.add_argument("--dest", metavar="REGISTRY[/PREFIX]", help="the destination (overrides the file's)")
    sy.add_argument("--dask", metavar="ADDRESS",
                    help="run the copies on a dask cluster: a scheduler address, or local:N for N local workers")
    _filters(sy)

    demo = sub.add_parser("demo", help="start two local registries, mirror sample images, verify")
    demo.add_argument("--images", type=int, default=4, help="sample tags to generate (default 4)")
    demo.add_argument("--jobs", "-j", type=int, default=8)
    return parser


def _client(args: argparse.Namespace) -> Any:
    from .client import Client
    from .mirror import _pool_limits

    verify: bool | str = True
    if args.insecure:
        verify = False
    elif args.ca_file:
        verify = args.ca_file
    cert: Any = None
    if args.cert:
        cert = (args.cert, args.key) if args.key else args.cert
    from .mirror.concurrency import most_jobs

    return Client(verify=verify, cert=cert, **_pool_limits(most_jobs(args.jobs or "auto")))


def _check_common(args: argparse.Namespace) -> str | None:
    import os

    from .mirror.manifests import parse_platform

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
        from .name import Registry

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
    from .name import Repository, parse_reference

    problem = _check_common(args)
    if problem:
        return problem
    try:
        if args.command == "copy":
            parse_reference(args.src, insecure=args.insecure)
            from .mirror.plan import has_identifier

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
    if args.json:
        print(report.to_json(indent=2))
    elif args.dry_run:
        _print_plan(report)
    for ref, message in report.errors:
        _error(message if ref in message else f"{ref}: {message}")
    if not args.json:
        progress.finish(report)
    return 0 if report.ok else 1


def _wire(client: Any, args: argparse.Namespace) -> Any:
    """The round-tripper the mirror runs on: the Client, with the logging layer under ``-v``."""
    if getattr(args, "verbose", 0):
        from . import transport

        return transport.new_logger(client)
    return client


def _run_copy(args: argparse.Namespace) -> int:
    from . import mirror

    problem = _check_args(args)
    if problem:
        _error(problem)
        return 2
    progress = _make_progress(args)
    try:
        with _client(args) as client:
            common: dict[str, Any] = {
                "client": _wire(client, args), "platforms": args.platform or None, "jobs": args.jobs,
                "retries": args.retries, "include_nondistributable": args.include_nondistributable,
                "insecure": args.insecure, "keep_going": args.keep_going, "dry_run": args.dry_run,
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
        from .mirror.distributed import DaskExecutor

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
    from .mirror.sync import SyncConfigError, load_config, sync

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
    except SyncConfigError as exc:
        _error(str(exc))
        return 2
    secrets: list[str] = []
    for source in config.registries:
        if source.credentials is not None:
            found = source.credentials.authorization()
            secrets += [found.password, found.auth]
    redact = _Redact(secrets)
    handlers = list(logging.getLogger().handlers)
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
    from .mirror.sync import SyncConfigError

    progress = _make_progress(args)
    try:
        with contextlib.ExitStack() as stack:
            executor = None
            if args.dask and not args.dry_run:
                executor = _dask_executor(stack, args.dask, config.keychain(), args.allow_private_storage)
                if executor is None:
                    return 2
            client = stack.enter_context(_client(args))
            report = sync(config, client=_wire(client, args), executor=executor, dry_run=args.dry_run,
                          progress=progress, jobs=args.jobs, retries=args.retries,
                          keep_going=True if args.keep_going else None, platforms=args.platform or None,
                          include=args.include, exclude=args.exclude,
                          include_nondistributable=args.include_nondistributable, insecure=args.insecure,
                          referrers=args.referrers, allow_private_storage=args.allow_private_storage)
    except SyncConfigError as exc:
        _error(str(exc))
        return 2
    finally:
        progress.close()
    return _finish(args, report, progress)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ocitransport`` command; returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    verbose = getattr(args, "verbose", 0) or 0
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format=f"{PROG}: %(levelname)s: %(name)s: %(message)s", stream=sys.stderr)
    # Errors are printed once by the CLI itself; without -v the library's warnings would repeat them.
    logging.getLogger("ocitransport").setLevel(logging.DEBUG if verbose else logging.ERROR)
    try:
        if args.command == "demo":
            from .mirror._demo import run_demo

            return run_demo(images=args.images, jobs=args.jobs)
        if args.command == "sync":
            return _run_sync(args)
        return _run_copy(args)
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except Exception as exc:
        from .exceptions import OCITransportError

        log.debug("unexpected failure", exc_info=verbose > 0)
        _error(str(exc) if isinstance(exc, OCITransportError) else f"{type(exc).__name__}: {exc}")
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
