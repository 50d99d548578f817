"""The progress bars: byte totals once blob sizes are known (an ETA by bytes), MiB only, never ``?``."""

from __future__ import annotations

import io
import os
import re

import pytest

from tests.servers import raw

rich = pytest.importorskip("rich")


def test_bars_have_byte_totals_in_mib_and_no_question_marks(registry, registry_factory, make_repo_name):
    from rich.console import Console

    from ocitransport import mirror
    from ocitransport.cli import RichProgress

    dst = registry_factory()
    repo = make_repo_name()
    for tag in ("a", "b"):
        raw.push_image(registry, repo, tag, layers=[os.urandom(3 << 20)])
    out = io.StringIO()
    progress = RichProgress(console=Console(file=out, force_terminal=True, width=160, color_system=None))
    try:
        report = mirror.mirror_repository(f"{registry.host}/{repo}", f"{dst.host}/{repo}", progress=progress)
    finally:
        progress.close()
    assert report.ok
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())  # terminal control sequences
    assert "?" not in text and "MB" not in text.replace("MiB", "")
    totals = [float(t) for t in re.findall(r"\d+\.\d/(\d+\.\d) MiB", text)]
    assert totals and max(totals) == pytest.approx(6.0, abs=0.1)  # both images' layers (configs are tiny)
