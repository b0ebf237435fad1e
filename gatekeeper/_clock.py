"""Clock sanity: decisions are denied while the wall clock cannot be trusted.

    >>> from gatekeeper._clock import ClockGuard
    >>> guard = ClockGuard(tolerance=60.0, settle=600.0)
    >>> guard.check() is None            # the wall clock agrees with its anchor
    True

Every decision depends on "now": consents and warrants expire, ``as_of`` is
compared with the current time, entries are timestamped. A wall clock that
jumps (a bad NTP step, an operator's ``date -s``, a VM restored from a
snapshot) would make those comparisons wrong, so the guard anchors the wall
clock to the monotonic clock when it starts (``offset = wall - monotonic``,
constant while nobody steps the clock: NTP slewing moves both alike) and
checks every decision:

- ``clock_jump``: the wall clock is more than ``tolerance`` seconds from
  where the anchor says it should be. Decisions resume by themselves when it
  comes back within tolerance; a new offset that stays stable (within
  tolerance of itself) for ``settle`` seconds is taken as a legitimate
  correction: the guard re-anchors and logs a ``clock_reanchored`` warning.
- ``clock_behind_log``: the wall clock is more than ``tolerance`` seconds
  earlier than the latest trustworthy entry of the audit log (a floor the
  caller passes in; it comes from the log, so it holds across restarts and
  across processes sharing a log). Re-anchoring does not lift it: only time
  passing the floor does.

The check is two clock reads and a few comparisons (well under a
microsecond on the good path); the state it keeps is a few floats, updated
without a lock on the good path (races only ever make it stricter for one
decision, never looser).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from gatekeeper._logging import get_logger
from gatekeeper.audit.entry import entry_moment

__all__ = ["CLOCK_REASONS", "ClockGuard", "entry_time", "latest_entry_time"]

#: The deny reasons of a clock fault (entries denied for them carry untrusted times).
CLOCK_REASONS = frozenset({"clock_jump", "clock_behind_log"})

#: The entry kinds whose time the clock check trusts: those written by checked decisions.
_DECISION_KINDS = frozenset({"decision", "invalid_request"})

_log = get_logger("gatekeeper.clock")


class ClockGuard:
    """Anchors the wall clock to the monotonic clock; ``check`` names a fault or None."""

    __slots__ = (
        "_candidate",
        "_candidate_since",
        "_floor",
        "_lock",
        "_mono",
        "_offset",
        "_wall",
        "settle",
        "tolerance",
    )

    def __init__(
        self,
        *,
        tolerance: float = 60.0,
        settle: float = 600.0,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not tolerance > 0:
            raise ValueError("the clock tolerance must be positive")
        if not settle >= 0:
            raise ValueError("the clock settle time must not be negative")
        self.tolerance = float(tolerance)
        self.settle = float(settle)
        self._wall = wall
        self._mono = monotonic
        self._offset = wall() - monotonic()
        #: The latest trustworthy time (epoch seconds) this guard has seen written.
        self._floor = 0.0
        self._candidate: float | None = None
        self._candidate_since = 0.0
        self._lock = threading.Lock()

    @property
    def floor(self) -> float:
        return self._floor

    def observe(self, moment: float) -> None:
        """A trustworthy time (epoch seconds) was written to the log: raise the floor."""
        if moment > self._floor:
            self._floor = moment

    def now(self) -> float:
        """The wall clock (epoch seconds), as the checks read it."""
        return self._wall()

    def check(self, floor: float = 0.0) -> str | None:
        """None when the wall clock can be trusted; else the deny reason.

        ``floor``: the latest trustworthy entry time of the audit log (epoch
        seconds), besides the one this guard observed itself.
        """
        return self.read(floor)[0]

    def read(self, floor: float = 0.0) -> tuple[str | None, float]:
        """(``check``'s answer, the wall clock it read)."""
        mono = self._mono()
        wall = self._wall()
        offset = wall - mono
        if abs(offset - self._offset) > self.tolerance:
            if not self._settled(offset, mono):
                return "clock_jump", wall
        elif self._candidate is not None:
            self._candidate = None  # back within tolerance: forget the new offset
        limit = (floor if floor > self._floor else self._floor) - self.tolerance
        if wall < limit:
            return "clock_behind_log", wall
        return None, wall

    def _settled(self, offset: float, mono: float) -> bool:
        """Track a new offset; True once it has held for ``settle`` seconds (re-anchored)."""
        with self._lock:
            candidate = self._candidate
            if candidate is None or abs(offset - candidate) > self.tolerance:
                self._candidate, self._candidate_since = offset, mono
                return self.settle == 0 and self._reanchor(offset)
            if mono - self._candidate_since < self.settle:
                return False
            return self._reanchor(offset)

    def _reanchor(self, offset: float) -> bool:
        old, self._offset, self._candidate = self._offset, offset, None
        _log.warning(
            "clock_reanchored",
            shift_seconds=round(offset - old, 3),
            settle_seconds=self.settle,
            tolerance_seconds=self.tolerance,
        )
        return True


def entry_time(data: bytes) -> float | None:
    """A decision entry's ``timestamp`` (epoch seconds); None for other kinds (not
    written under the clock check), entries without one, and denies for a
    clock fault (their time is the untrusted wall clock's)."""
    try:
        value = json.loads(data)
    except ValueError:
        return None
    if not isinstance(value, dict) or value.get("kind") not in _DECISION_KINDS:
        return None
    if value.get("reason") in CLOCK_REASONS:
        return None
    moment = entry_moment(value.get("timestamp"))
    return None if moment is None else moment.timestamp()


def latest_entry_time(
    read_entries: Callable[[int, int], Sequence[Any]], start: int, end: int, *, limit: int = 4096
) -> float:
    """The latest trustworthy entry time among entries ``start``..``end - 1``, scanning
    back from the end over at most ``limit`` entries (0.0 when there is none)."""
    stop = max(start, end - limit)
    high, step = end, 4  # usually the last entry is a decision: read few first
    while high > stop:
        low, step = max(stop, high - step), 64
        found = [entry_time(e.data) for e in read_entries(low, high)]
        times = [t for t in found if t is not None]
        if times:
            return max(times)
        high = low
    return 0.0
