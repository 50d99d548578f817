"""Progress displays of the command line: one line per image, or rich bars and a summary table."""

from __future__ import annotations

import sys
import time
from typing import Any


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
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = console if console is not None else Console(stderr=True)
        self._overall = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("images"), TimeElapsedColumn(), TextColumn("ETA"),
                                 TimeRemainingColumn(), console=self.console)
        from .columns import ByteETAColumn, MiBColumn, MiBRateColumn

        self._transfers = Progress(SpinnerColumn(), TextColumn("{task.description}"), MiBColumn(),
                                   MiBRateColumn(), ByteETAColumn(), console=self.console)
        self._live = Live(Group(self._overall, self._transfers), console=self.console, refresh_per_second=8,
                          transient=False)
        self._images = self._overall.add_task("total", total=None)
        self._bytes = self._transfers.add_task("[bold]all images", total=None)
        self._rows: dict[Any, Any] = {}  # unit -> task id of the image's row
        self._pending: dict[Any, int] = {}
        self._pending_total = 0
        self._sized = 0  # bytes of the blobs known to be copied (blob_sized)
        self._row_sizes: dict[Any, int] = {}
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

    def blob_sized(self, unit: Any, size: int) -> None:
        """A blob of ``unit`` of ``size`` bytes is about to be copied (negative: it moved no bytes after all):
        the byte totals the ETA is computed from."""
        self._sized += size
        self._transfers.update(self._bytes, total=max(self._sized, 1))
        task = self._rows.get(unit)
        if task is not None:
            row = self._row_sizes[unit] = self._row_sizes.get(unit, 0) + size
            self._transfers.update(task, total=max(row, 1))

    def image_done(self, result: Any) -> None:
        self.done += 1
        self._overall.advance(self._images)
        for unit in [u for u in self._rows if u.source == result.source and u.destination == result.destination]:
            self._pending.pop(unit, None)
            self._row_sizes.pop(unit, None)
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


