"""Delivering the outbox, at least once: claim, send, settle.

A :class:`DispatchRunner` claims due ``pending`` rows of the codes it has a
route for (leased to it for ``lease`` seconds, ``attempts`` + 1), hands each
to its :class:`Dispatcher`, and marks it ``delivered`` only after the
receiver accepted it. A failed attempt goes back to ``pending`` with an
exponential backoff (with jitter) until ``max_attempts``, then ``failed``.
A dispatcher killed mid-delivery settles nothing: its rows stay ``pending``
and are claimed again when the lease runs out, so a receiver may see one
obligation twice (the ``obligation_id`` tells them apart).
"""

from __future__ import annotations

import random
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from gatekeeper._logging import get_logger
from gatekeeper.audit.entry import canonical, timestamp
from gatekeeper.audit.outbox import ObligationRecord
from gatekeeper.audit.store import OutboxStore
from gatekeeper.errors import GatekeeperError

__all__ = [
    "DeliveryError",
    "DispatchReport",
    "DispatchRunner",
    "Dispatcher",
    "ObligationMessage",
    "RetryPolicy",
]

MESSAGE_SCHEMA = "gatekeeper.obligation/v1"

_log = get_logger("gatekeeper.obligations")


class DeliveryError(GatekeeperError):
    """The receiver did not accept a delivery (it will be retried)."""

    reason = "delivery_failed"


@dataclass(frozen=True, slots=True)
class ObligationMessage:
    """What a dispatcher sends for one outbox row (no record values)."""

    obligation_id: int
    code: str
    blocking: bool
    attempt: int
    content: Mapping[str, Any]

    @classmethod
    def of(cls, row: ObligationRecord, *, origin: str) -> ObligationMessage:
        content = {
            **row.payload,
            "schema": MESSAGE_SCHEMA,
            "obligation_id": row.id,
            "obligation": row.code,
            "blocking": row.blocking,
            "decision_id": row.decision_id,
            "created_at": timestamp(row.created_at),
            "audit": {"origin": origin, "index": row.entry_index},
        }
        return cls(row.id, row.code, row.blocking, row.attempts, content)

    def body(self) -> bytes:
        """The content as RFC 8785 canonical JSON (what a webhook posts and signs)."""
        return canonical(self.content)


class Dispatcher(Protocol):
    """Delivers one obligation; returns only when the receiver accepted it."""

    def send(self, message: ObligationMessage) -> None:
        """Deliver, or raise :class:`DeliveryError`."""
        ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter: attempt n waits between half and all of
    ``min(max_delay, base * 2**(n-1))`` seconds; after ``max_attempts``, failed."""

    max_attempts: int = 8
    base: float = 30.0
    max_delay: float = 3600.0

    def delay(self, attempts: int, rng: random.Random) -> float:
        ceiling = min(self.max_delay, self.base * 2.0 ** max(0, attempts - 1))
        return float(ceiling / 2 + rng.uniform(0, ceiling / 2))


@dataclass(slots=True)
class DispatchReport:
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    lost_claims: int = 0

    def summary(self) -> str:
        return f"delivered {self.delivered}, retrying {self.retrying}, failed {self.failed}" + (
            f", lost claims {self.lost_claims}" if self.lost_claims else ""
        )


def _now() -> datetime:
    return datetime.now(UTC)


class DispatchRunner:
    """Runs dispatchers over an outbox: ``run_once()`` or ``run(stop)``.

    Any number of runners (threads, processes, machines) may share one outbox:
    a claim is exclusive while its lease runs.
    """

    def __init__(
        self,
        outbox: OutboxStore,
        routes: Mapping[str, Dispatcher],
        *,
        origin: str,
        policy: RetryPolicy | None = None,
        lease: float = 120.0,
        batch_size: int = 20,
        clock: Callable[[], datetime] = _now,
        rng: random.Random | None = None,
    ) -> None:
        self.outbox = outbox
        self.routes = dict(routes)
        self.origin = origin
        self.policy = policy or RetryPolicy()
        self.lease = lease
        self.batch_size = batch_size
        self.clock = clock
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not security

    def _settle(self, row: ObligationRecord, token: str, report: DispatchReport) -> None:
        dispatcher = self.routes[row.code]
        message = ObligationMessage.of(row, origin=self.origin)
        try:
            dispatcher.send(message)
        except Exception as exc:  # every failure of a receiver is a failed attempt
            error = str(exc) if isinstance(exc, DeliveryError) else f"{type(exc).__name__}: {exc}"
            give_up = row.attempts >= self.policy.max_attempts
            retry_at = (
                None
                if give_up
                else self.clock() + timedelta(seconds=self.policy.delay(row.attempts, self.rng))
            )
            settled = self.outbox.mark_attempt_failed(row.id, token, error=error, retry_at=retry_at)
            _log.warning(
                "obligation_delivery_failed",
                obligation_id=row.id,
                code=row.code,
                attempt=row.attempts,
                error=error,
                final=give_up,
            )
            if not settled:
                report.lost_claims += 1
            elif give_up:
                report.failed += 1
            else:
                report.retrying += 1
            return
        if self.outbox.mark_delivered(row.id, token, at=self.clock()):
            report.delivered += 1
            _log.info("obligation_delivered", obligation_id=row.id, code=row.code)
        else:  # the lease ran out and another runner took the row: it delivers again
            report.lost_claims += 1

    def run_once(self) -> DispatchReport:
        """Deliver every row due now (retries scheduled later are left for later)."""
        report = DispatchReport()
        seen: set[int] = set()
        codes = sorted(self.routes)
        while True:
            now = self.clock()
            token = secrets.token_hex(16)
            rows = self.outbox.claim_obligations(
                codes,
                now=now,
                lease_until=now + timedelta(seconds=self.lease),
                max_attempts=self.policy.max_attempts,
                limit=self.batch_size,
                token=token,
            )
            if not rows:
                return report
            again = all(r.id in seen for r in rows)  # a clock that stands still
            for row in rows:
                seen.add(row.id)
                self._settle(row, token, report)
            if again:
                return report

    def run(self, stop: threading.Event, *, poll_interval: float = 5.0) -> None:
        """Deliver until ``stop`` is set, polling every ``poll_interval`` seconds.

        An outbox that cannot be read is logged and retried at the next poll.
        """
        while not stop.is_set():
            try:
                self.run_once()
            except GatekeeperError as exc:
                _log.error("obligation_dispatch_failed", reason=exc.reason, error=str(exc))
            stop.wait(poll_interval)
