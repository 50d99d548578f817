"""Compare a peer suite's stock and ours runs (pytest junit XML): ``python3 compare.py NAME STOCK OURS``.

A test that passed stock and failed (or errored) with our adapters is a regression unless ``excused.py``
lists it with its reason. Prints the counts, every excused regression and every unexcused one; exits 1
when there is any unexcused regression, or when either run collected nothing."""

from __future__ import annotations

import fnmatch
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from excused import EXCUSED


def outcomes(path: str) -> dict[str, str]:
    """``{test id: passed|failed|skipped}`` from a junit XML file (``classname::name``)."""
    out: dict[str, str] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        key = f"{case.get('classname')}::{case.get('name')}"
        kinds = {child.tag for child in case}
        if kinds & {"failure", "error"}:
            out[key] = "failed"
        elif "skipped" in kinds:
            out[key] = "skipped"
        else:
            out[key] = "passed"
    return out


def excuse(suite: str, test: str) -> str | None:
    """The reason ``test`` is excused in ``suite`` (``oras-open`` looks in ``oras``), or None."""
    for pattern, reason in EXCUSED.get(suite.split("-")[0], {}).items():
        if fnmatch.fnmatchcase(test, pattern):
            return reason
    return None


def main(argv: list[str]) -> int:
    suite, stock_xml, ours_xml = argv
    missing = [p for p in (stock_xml, ours_xml) if not Path(p).is_file()]
    if missing:
        print(f"{suite}: no results in {', '.join(missing)} (see the .log next to it)")
        return 1
    stock, ours = outcomes(stock_xml), outcomes(ours_xml)
    if not stock or not ours:
        print(f"{suite}: a run collected no tests (stock {len(stock)}, ours {len(ours)})")
        return 1
    regressions = sorted(t for t, o in stock.items() if o == "passed" and ours.get(t) == "failed")
    excused = [(t, excuse(suite, t)) for t in regressions]
    unexcused = [t for t, why in excused if why is None]
    fixed = sorted(t for t, o in stock.items() if o == "failed" and ours.get(t) == "passed")
    count = {k: sum(1 for o in ours.values() if o == k) for k in ("passed", "failed", "skipped")}
    stock_count = {k: sum(1 for o in stock.values() if o == k) for k in ("passed", "failed", "skipped")}
    print(f"{suite}: stock {stock_count}, ours {count}; {len(regressions)} pass stock and fail ours "
          f"({len(regressions) - len(unexcused)} excused), {len(fixed)} fail stock and pass ours")
    reasons: dict[str, list[str]] = {}
    for test, why in excused:
        if why is not None:
            reasons.setdefault(why, []).append(test)
    for why, tests in reasons.items():
        shown = tests[0] if len(tests) == 1 else f"{tests[0]} and {len(tests) - 1} more like it"
        print(f"  excused  {shown}: {why}")
    for test in unexcused:
        print(f"  REGRESSION  {test}")
    return 1 if unexcused else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
