"""A long fuzz run of every ocitransport parser (``fuzz/targets.py``), not part of CI.

    nice python -m fuzz.run --inputs 1000000 [--minutes 120] [--targets manifest,link] [--seed N]

Round-robin over the targets, ``--batch`` hypothesis examples each turn, until ``--inputs`` inputs in
total (or ``--minutes``). Each input runs under a watchdog: more than ``--per-input`` seconds is a hang
(SIGALRM interrupts it and it is reported as a failure); the process's resident memory is checked after
every batch and the address space is capped (``--max-rss-mib``; beyond it an allocation fails with
MemoryError, reported as a failure), so a parser that loops or balloons cannot take the machine down.
Failures are shrunk by hypothesis and written, with the counts, to ``--report`` (JSON).
One process, one core: run it under ``nice`` on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import signal
import sys
import time
import traceback
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings

from fuzz.targets import TARGETS, Target, compiled_twins_loaded


class Hang(Exception):
    """One input ran longer than the per-input bound."""


def _rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Run:
    def __init__(self, per_input: float, seed: int) -> None:
        self.per_input = per_input
        self.seed = seed
        self.counts: dict[str, int] = dict.fromkeys(TARGETS, 0)
        self.slowest: dict[str, float] = dict.fromkeys(TARGETS, 0.0)
        self.failures: list[dict[str, Any]] = []

    def batch(self, target: Target, examples: int, turn: int) -> None:
        counts, slowest, per_input = self.counts, self.slowest, self.per_input

        @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
                  phases=(Phase.generate, Phase.shrink), report_multiple_bugs=False,
                  suppress_health_check=list(HealthCheck))
        @given(target.strategy)
        def one(value: Any) -> None:
            signal.setitimer(signal.ITIMER_REAL, per_input)
            start = time.perf_counter()
            try:
                target.check(value)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                elapsed = time.perf_counter() - start
                counts[target.name] += 1
                slowest[target.name] = max(slowest[target.name], elapsed)

        # Hypothesis draws from its own random source; seed it per turn so a run can be repeated.
        one._hypothesis_internal_use_seed = self.seed * 1_000_003 + turn  # type: ignore[attr-defined]
        try:
            one()
        except Exception as exc:  # noqa: BLE001 - every failure is recorded, the run goes on
            record = {"target": target.name, "error": f"{type(exc).__name__}: {exc}"[:2000],
                      "traceback": traceback.format_exc()[-4000:], "turn": turn}
            self.failures.append(record)
            print(f"FAILURE in {target.name}: {record['error'][:500]}", flush=True)


def _on_alarm(signum: int, frame: Any) -> None:
    raise Hang("input exceeded the per-input time bound")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=1_000_000, help="total inputs (all targets)")
    parser.add_argument("--minutes", type=float, default=0.0, help="stop after this long (0: no limit)")
    parser.add_argument("--batch", type=int, default=2000, help="examples per target per turn")
    parser.add_argument("--per-input", type=float, default=2.0, help="seconds one input may take")
    parser.add_argument("--max-rss-mib", type=int, default=1024, help="memory bound of the process")
    parser.add_argument("--targets", default="", help="comma-separated subset of: " + ", ".join(TARGETS))
    parser.add_argument("--seed", type=int, default=int(time.time()) & 0xFFFF)
    parser.add_argument("--report", default="fuzz-report.json")
    args = parser.parse_args(argv)

    names = [n for n in args.targets.split(",") if n] or list(TARGETS)
    unknown = set(names) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    signal.signal(signal.SIGALRM, _on_alarm)
    limit = args.max_rss_mib << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit * 4, limit * 4))  # virtual: allocator headroom

    run = Run(args.per_input, args.seed)
    started = time.monotonic()
    deadline = started + args.minutes * 60 if args.minutes else float("inf")
    print(f"fuzzing {len(names)} targets, {args.inputs} inputs, seed {args.seed}, "
          f"compiled twins: {compiled_twins_loaded()}", flush=True)
    turn = 0
    last_print = 0.0
    peak_rss = 0.0
    memory_exceeded = False
    while sum(run.counts.values()) < args.inputs and time.monotonic() < deadline:
        target = TARGETS[names[turn % len(names)]]
        remaining = args.inputs - sum(run.counts.values())
        run.batch(target, min(args.batch, max(remaining, 1)), turn)
        turn += 1
        rss = _rss_mib()
        peak_rss = max(peak_rss, rss)
        if rss > args.max_rss_mib:
            run.failures.append({"target": target.name, "error": f"RSS {rss:.0f} MiB over the bound"})
            memory_exceeded = True
            break
        now = time.monotonic()
        if now - last_print > 60:
            last_print = now
            print(f"[{now - started:7.0f}s] {sum(run.counts.values()):>9} inputs, rss {rss:.0f} MiB, "
                  f"failures {len(run.failures)}", flush=True)

    elapsed = time.monotonic() - started
    report = {
        "inputs": sum(run.counts.values()), "seconds": round(elapsed, 1), "seed": args.seed,
        "compiled_twins": compiled_twins_loaded(), "peak_rss_mib": round(max(peak_rss, _max_rss_mib()), 1),
        "memory_exceeded": memory_exceeded, "per_target": run.counts,
        "slowest_input_seconds": {k: round(v, 4) for k, v in run.slowest.items()},
        "failures": run.failures,
    }
    with open(args.report, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    print(json.dumps({k: v for k, v in report.items() if k != "failures"}, indent=2))
    print(f"{len(run.failures)} failures; report in {args.report}")
    return 1 if run.failures else 0


if __name__ == "__main__":
    sys.exit(main())
