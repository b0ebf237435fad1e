"""Shared by the load benchmarks: a constant-memory latency histogram, load averages."""

from __future__ import annotations

import math
from pathlib import Path

_GROWTH = 1.02  # histogram bucket width: 2%
_BUCKETS = int(math.log(1e8) / math.log(_GROWTH)) + 2  # 1 us .. 100 s


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages (``/proc/loadavg``)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def say(text: str) -> None:
    print(text, flush=True)


class Histogram:
    """Latencies in log-scale buckets (2% wide): constant memory, quantiles within 2%.

    Bucket ``i >= 1`` holds [1.02**(i-1), 1.02**i) microseconds; a quantile is
    its bucket's upper bound (never above the exact maximum).
    """

    def __init__(self, counts: list[int] | None = None, n: int = 0, top: float = 0.0) -> None:
        self.counts = list(counts) if counts is not None else [0] * _BUCKETS
        self.n = n
        self.max = top

    def add(self, seconds: float) -> None:
        us = seconds * 1e6
        index = 0 if us < 1 else min(_BUCKETS - 1, int(math.log(us) / math.log(_GROWTH)) + 1)
        self.counts[index] += 1
        self.n += 1
        if seconds > self.max:
            self.max = seconds

    def merge(self, other: Histogram) -> None:
        for i, c in enumerate(other.counts):
            self.counts[i] += c
        self.n += other.n
        self.max = max(self.max, other.max)

    def state(self) -> tuple[list[int], int, float]:
        """Picklable: ``Histogram(*h.state())`` is a copy."""
        return self.counts, self.n, self.max

    def quantile_ms(self, q: float) -> float:
        if not self.n:
            return float("nan")
        rank = max(1, math.ceil(q * self.n))
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= rank:
                return min(self.max, _GROWTH**i / 1e6) * 1000
        return self.max * 1000
