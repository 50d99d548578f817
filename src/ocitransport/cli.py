"""The ``ocitransport`` command line: ``copy``, ``mirror`` and ``demo`` (also ``python -m ocitransport``).

Exit status: 0 when every image was copied or skipped, 1 when something failed (each failure named on
stderr), 2 for bad usage. Errors are one line each (``ocitransport: error: ...``), never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from collections.abc import Sequence
from typing import Any

PROG = "ocitransport"


def _error(message: str) -> None:
    print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)


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


class RichProgress(LineProgress):
    """Images and bytes as two progress bars (only on a TTY, only when ``rich`` is importable)."""

    def __init__(self) -> None:
        super().__init__()
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  transient=False)
        self._bytes = Progress(TextColumn("{task.description}"), DownloadColumn(), TransferSpeedColumn(),
                               transient=False, console=self._progress.console)
        from rich.console import Group
        from rich.live import Live

        self._live = Live(Group(self._progress, self._bytes), console=self._progress.console,
                          refresh_per_second=8, transient=False)
        self._images = self._progress.add_task("images", total=None)
        self._sent = self._bytes.add_task("bytes", total=None)
        self._pending, self._last = 0, time.monotonic()
        self._live.start()

    def planned(self, units: list[Any]) -> None:
        super().planned(units)
        self._progress.update(self._images, total=len(units))

    def image_done(self, result: Any) -> None:
        self.done += 1
        self._progress.advance(self._images)
        if result.status == "failed":
            self._progress.console.print(f"[red]FAILED[/] {result.source}: {result.error}", markup=True,
                                         highlight=False)

    def bytes_done(self, n: int) -> None:
        # Called per received chunk: batch the updates (rich's bookkeeping is not free).
        self._pending += n
        now = time.monotonic()
        if now - self._last >= 0.1:
            self._bytes.advance(self._sent, self._pending)
            self._pending, self._last = 0, now

    def close(self) -> None:
        self._bytes.advance(self._sent, self._pending)
        self._pending = 0
        self._live.stop()


def _make_progress(args: argparse.Namespace) -> LineProgress:
    if args.json or args.quiet:
        return LineProgress(quiet=True)
    if sys.stderr.isatty():
        try:
            return RichProgress()
        except ImportError:
            pass
    return LineProgress()


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Copy and mirror container images between registries.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv for HTTP requests)")
    sub = parser.add_subparsers(dest="command", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--jobs", "-j", type=int, default=8, help="images and blob streams in parallel (default 8)")
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
    common.add_argument("--retries", type=int, default=3, help="retries per request and per blob (default 3)")
    common.add_argument("--include-nondistributable", action="store_true",
                        help="also copy foreign / non-distributable layers")

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
    mi.add_argument("--include", action="append", default=[], metavar="REGEX", help="only tags matching (repeatable)")
    mi.add_argument("--exclude", action="append", default=[], metavar="REGEX", help="skip tags matching (repeatable)")

    demo = sub.add_parser("demo", help="start two local registries, mirror sample images, verify")
    demo.add_argument("--images", type=int, default=4, help="sample tags to generate (default 4)")
    demo.add_argument("--jobs", "-j", type=int, default=8)
    return parser


def _client(args: argparse.Namespace) -> Any:
    from .client import Client

    verify: bool | str = True
    if args.insecure:
        verify = False
    elif args.ca_file:
        verify = args.ca_file
    cert: Any = None
    if args.cert:
        cert = (args.cert, args.key) if args.key else args.cert
    return Client(verify=verify, cert=cert, max_connections_per_host=max(16, args.jobs * 2))


def _check_args(args: argparse.Namespace) -> str | None:
    from .mirror.manifests import parse_platform
    from .name import Repository, parse_reference

    if args.jobs < 1:
        return "--jobs must be greater than zero"
    if args.key and not args.cert:
        return "--key needs --cert"
    for p in args.platform:
        try:
            parse_platform(p)
        except ValueError as exc:
            return str(exc)
    try:
        if args.command == "copy":
            parse_reference(args.src, insecure=args.insecure)
            from .mirror.plan import has_identifier

            if has_identifier(args.dst):
                parse_reference(args.dst, insecure=args.insecure)
            else:
                Repository(args.dst, insecure=args.insecure)
        else:
            Repository(args.src_repo, insecure=args.insecure)
            Repository(args.dst_repo, insecure=args.insecure)
            for rx in [*args.include, *args.exclude]:
                try:
                    re.compile(rx)
                except re.error as exc:
                    return f"bad regular expression {rx!r}: {exc}"
    except ValueError as exc:
        return str(exc)
    return None


def _print_plan(report: Any) -> None:
    for item in report.images:
        what = "up to date" if item.status == "skipped" else "copy"
        print(f"{what:10} {item.source} -> {item.destination} {item.digest} "
              f"{item.media_type}{' ' + ','.join(item.platforms) if item.platforms else ''}")


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
                "client": client, "platforms": args.platform or None, "jobs": args.jobs, "retries": args.retries,
                "include_nondistributable": args.include_nondistributable, "insecure": args.insecure,
                "keep_going": args.keep_going, "dry_run": args.dry_run, "progress": progress}
            if args.command == "copy":
                report = mirror.copy(args.src, args.dst, **common)
            else:
                report = mirror.mirror_repository(args.src_repo, args.dst_repo, tags=args.tags,
                                                  include=args.include or None, exclude=args.exclude or None,
                                                  **common)
    finally:
        progress.close()
    if args.json:
        print(report.to_json(indent=2))
    elif args.dry_run:
        _print_plan(report)
    for ref, message in report.errors:
        _error(message if ref in message else f"{ref}: {message}")
    if not args.json:
        print(report.summary(), file=sys.stderr)
    return 0 if report.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ocitransport`` command; returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING if args.verbose == 0 else logging.INFO if args.verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format=f"{PROG}: %(levelname)s: %(message)s", stream=sys.stderr)
    if args.verbose == 0:
        logging.getLogger("ocitransport").setLevel(logging.ERROR)
    try:
        if args.command == "demo":
            from .mirror._demo import run_demo

            return run_demo(images=args.images, jobs=args.jobs)
        return _run_copy(args)
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except Exception as exc:
        if args.verbose >= 2:
            raise
        from .exceptions import OCITransportError

        _error(str(exc) if isinstance(exc, OCITransportError) else f"{type(exc).__name__}: {exc}")
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
