"""Benchmark fixtures: the twin implementations side by side, and a ratio table at the end of the run.

Every benchmark that takes the ``impl`` fixture runs once per twin; the summary prints, for each such
benchmark, the pure twin's median time divided by the compiled twin's (how many times faster the
compiled twin is), all measured in the same run. Benchmarks may also put ``extra_info["ratio_to"]``
(the fullname of another benchmark) to get "this vs that" rows for peers.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from tests.conftest import Implementation, _compiled_available

_IMPL_ID = re.compile(r"(c-extension|pure-python)")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--no-c-extensions", action="store_false", dest="c_extensions", default=True,
                     help="benchmark the pure-Python twins only")


@pytest.fixture(
    scope="session",
    params=[
        pytest.param(Implementation(is_pure_python=False), id="c-extension"),
        pytest.param(Implementation(is_pure_python=True), id="pure-python"),
    ],
)
def impl(request: pytest.FixtureRequest) -> Implementation:
    implementation: Implementation = request.param
    if not implementation.is_pure_python and (
            not request.config.getoption("c_extensions") or not _compiled_available()):
        pytest.skip("the compiled twins are not built")
    return implementation


def _median(bench: Any) -> float:
    return float(bench.stats.median)


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    session = getattr(config, "_benchmarksession", None)
    if session is None or not session.benchmarks:
        return
    pairs: dict[str, dict[str, Any]] = {}
    for bench in session.benchmarks:
        match = _IMPL_ID.search(bench.name)
        if match:
            key = _IMPL_ID.sub("*", bench.name)
            pairs.setdefault(key, {})[match.group(1)] = bench
    rows = [
        (key, _median(p["pure-python"]), _median(p["c-extension"]))
        for key, p in sorted(pairs.items())
        if "pure-python" in p and "c-extension" in p
    ]
    if not rows:
        return
    tr = terminalreporter
    tr.write_sep("=", "compiled vs pure (median per round, same run)")
    width = max(len(k) for k, _, _ in rows)
    tr.write_line(f"{'benchmark':<{width}}  {'pure':>12}  {'compiled':>12}  {'speed-up':>8}")
    for key, pure, comp in rows:
        tr.write_line(f"{key:<{width}}  {pure * 1e6:>10.2f}us  {comp * 1e6:>10.2f}us  {pure / comp:>7.1f}x")
