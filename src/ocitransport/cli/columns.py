"""Progress columns for the command line's bars, in one unit system (MiB, MiB/s) and without ``?``: a
total shows once it is known (blob sizes arrive as manifests are read), the ETA is by bytes then."""

from __future__ import annotations

from typing import Any

from rich.progress import ProgressColumn, Task
from rich.text import Text

__all__ = ["MiBColumn", "MiBRateColumn", "ByteETAColumn"]

_MIB = float(1 << 20)


class MiBColumn(ProgressColumn):
    """``12.3 MiB`` or, once a total is known, ``12.3/40.0 MiB``."""

    def render(self, task: Task) -> Text:
        done = task.completed / _MIB
        if task.total:
            return Text(f"{done:.1f}/{task.total / _MIB:.1f} MiB", style="progress.download")
        return Text(f"{done:.1f} MiB", style="progress.download")


class MiBRateColumn(ProgressColumn):
    """``8.4 MiB/s`` (blank until there is a rate)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed / _MIB:.1f} MiB/s", style="progress.data.speed")


class ByteETAColumn(ProgressColumn):
    """``ETA 0:01:05`` by bytes, once a total is known and a rate measured (blank before)."""

    max_refresh = 0.5

    def render(self, task: Task) -> Text:
        remaining: Any = task.time_remaining
        if not task.total or remaining is None:
            return Text("")
        minutes, seconds = divmod(int(remaining), 60)
        hours, minutes = divmod(minutes, 60)
        return Text(f"ETA {hours}:{minutes:02d}:{seconds:02d}", style="progress.remaining")
