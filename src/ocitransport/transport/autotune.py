"""Latency-aware concurrency (sans-I/O): how many images a mirror run keeps in flight under ``--jobs auto``.

The controller is fed one sample per answered request (its time to the response head, and whether it
was a throttle) and decides at the end of each *round*: at least ``max(limit, min_samples)`` answers
and ``min_round`` seconds. A round's throughput is its answers per second and its latency their median.

* **Grow** while throughput grows (by at least ``gain``) and latency stays flat (its median at most
  ``tolerance`` times the lowest round median seen): doubling while no round has disappointed yet,
  like TCP slow start, then a quarter more per round; never above ``ceiling``.
* **Settle** when a round brought no more throughput and latency rose: go back to the limit of the best
  round and stop growing (the registries, not the link, are now the bottleneck; more requests in
  flight only queue). A round that brought neither stays where it is.
* **Judge only rounds the limit held back**: a round with an answer that came while the limit held
  nothing back (fewer images in flight than allowed and none waiting: a pipelined run still planning,
  the last images of a run) says nothing about more concurrency; it neither grows nor settles the limit,
  nor sets the latency baseline (a throttle still cuts it).
* **Back off** on a throttle (``429`` / ``503``): the limit is multiplied by ``decrease`` (once per
  round) and does not grow again for ``hold_rounds`` rounds, as the per-registry AIMD limit of
  :mod:`ocitransport.transport.limit` does for its requests.

The limit starts at ``initial`` (16: in the README's distance sweep, 16 or 32 images in flight were within
noise of the best fixed value at every RTT from 0 to 100 ms, and 8 never was), so a short run does not spend
its first rounds ramping up; 50-150 ms away, where each image is a chain of round trips, it grows until
the registries or the link stop giving more.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

#: ``--jobs auto``'s ceiling: images in flight never exceed it (each holds a few connections per side,
#: and registries such as Docker Hub throttle clients that open hundreds).
AUTO_CEILING = 64
#: Where ``--jobs auto``'s controller starts.
AUTO_START = 16
#: What ``--jobs auto`` means where no controller runs (each dask worker pins a number): the fixed default
#: ``auto`` replaced.
AUTO_INITIAL = 8


@dataclass
class AutoPolicy:
    """The controller's knobs (see the module docstring)."""

    initial: int = AUTO_START
    floor: int = 1
    ceiling: int = AUTO_CEILING
    min_samples: int = 8
    min_round: float = 0.05
    gain: float = 0.10
    tolerance: float = 1.5
    decrease: float = 0.5
    hold_rounds: int = 2

    def __post_init__(self) -> None:
        if not 1 <= self.floor <= self.initial <= self.ceiling:
            raise ValueError("auto concurrency needs 1 <= floor <= initial <= ceiling")


@dataclass
class Round:
    """One decided round, for reports and tests: its limit, throughput (answers/s), median latency (s),
    whether it was throttled, and the limit decided after it."""

    limit: int
    throughput: float
    latency: float
    throttled: bool
    next_limit: int


@dataclass
class ConcurrencyController:
    """The controller's state; ``limit`` is the concurrency to use now (see the module docstring)."""

    policy: AutoPolicy = field(default_factory=AutoPolicy)
    limit: int = 0
    peak: int = 0
    rounds: list[Round] = field(default_factory=list)
    _started: float | None = None
    _latencies: list[float] = field(default_factory=list)
    _throttled: bool = False
    _base_latency: float = 0.0
    _best: tuple[float, int] = (0.0, 0)
    _last_throughput: float = 0.0
    _slow_start: bool = True
    _settled: bool = False
    _hold: int = 0
    _unheld: bool = False

    def __post_init__(self) -> None:
        if not self.limit:
            self.limit = self.policy.initial
        self.peak = self.limit

    def sample(self, now: float, latency: float, *, throttled: bool = False, limited: bool = True) -> bool:
        """One answered request (``latency``: seconds to its head); ``True`` when the limit changed.
        ``limited``: the limit held work back when it was answered (as many images in flight as allowed,
        or more waiting); a round with a sample that was not is not judged."""
        if self._started is None:
            self._started = now - max(latency, 0.0)
        if not limited:
            self._unheld = True
        if throttled:
            self._throttled = True
        else:
            self._latencies.append(max(latency, 0.0))
        elapsed = now - self._started
        enough = len(self._latencies) >= max(self.limit, self.policy.min_samples) or self._throttled
        if not enough or elapsed < self.policy.min_round:
            return False
        return self._decide(now, elapsed)

    def _decide(self, now: float, elapsed: float) -> bool:
        p = self.policy
        before = self.limit
        throughput = len(self._latencies) / elapsed if elapsed > 0 else 0.0
        latency = statistics.median(self._latencies) if self._latencies else 0.0
        if self._throttled:
            self.limit = max(p.floor, int(self.limit * p.decrease))
            self._hold = p.hold_rounds
            self._slow_start = False
            self._best = (0.0, self.limit)  # what was best before the registry pushed back is not now
        else:
            if self._unheld:  # the limit did not hold back: no evidence for or against more (nor a baseline)
                return self._close_round(now, before, throughput, latency)
            if latency and (not self._base_latency or latency < self._base_latency):
                self._base_latency = latency
            flat = latency <= self._base_latency * p.tolerance
            grew = throughput >= self._last_throughput * (1.0 + p.gain)
            if throughput > self._best[0] * (1.0 + p.gain):  # the least concurrency that gives it
                self._best = (throughput, self.limit)
            if self._hold:
                self._hold -= 1
            elif grew and flat and not self._settled:
                step = self.limit if self._slow_start else max(1, self.limit // 4)
                self.limit = min(p.ceiling, self.limit + step)
            elif not grew and not flat:
                self.limit = max(p.floor, min(self.limit, self._best[1]))
                self._settled = True
                self._slow_start = False
            elif not grew:
                self._slow_start = False
            self._last_throughput = throughput
        return self._close_round(now, before, throughput, latency)

    def _close_round(self, now: float, before: int, throughput: float, latency: float) -> bool:
        self.rounds.append(Round(before, throughput, latency, self._throttled, self.limit))
        self.peak = max(self.peak, self.limit)
        self._started = now
        self._latencies = []
        self._throttled = False
        self._unheld = False
        return self.limit != before

    def describe(self) -> str:
        """What the controller chose, for the report: ``"auto: 16 (peak 32, ceiling 64)"``."""
        return f"auto: {self.limit} (peak {self.peak}, ceiling {self.policy.ceiling})"


__all__ = ["AUTO_CEILING", "AUTO_INITIAL", "AUTO_START", "AutoPolicy", "ConcurrencyController", "Round"]
