"""Where a report's entries come from: one signed checkpoint, verified, streamed.

:meth:`Snapshot.take` reads the latest signed checkpoint, opens it with the
log's verifier keys (or pinned ones), and runs the log verifier with that
checkpoint as the trusted one (signatures sampled by default). A report then
reads entries ``0..size-1`` of that checkpoint in chunks, parses each once,
hands it to every aggregator, and re-hashes the entries as it goes: the
report states whether what it counted hashes to exactly the checkpoint's
root. Memory stays O(log n) for the tree, plus what the aggregators keep.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Protocol

from gatekeeper.audit import merkle
from gatekeeper.audit.note import Verifier, open_checkpoint
from gatekeeper.errors import GatekeeperError
from gatekeeper.reports._model import Provenance, ReportError, local_moment

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from gatekeeper.audit.log import AuditLog
    from gatekeeper.audit.store import AuditStore

__all__ = ["CHUNK", "Aggregator", "ScanResult", "Snapshot"]

#: Entries read per store query (as the verifier reads them).
CHUNK = 4096
SIGNATURE_MODES = ("sample", "all")


class Aggregator(Protocol):
    """Receives every parsed entry of the snapshot once, in log order."""

    def add(self, index: int, entry: Mapping[str, Any], moment: datetime | None) -> None:
        """``moment``: the entry's logged time in the district's zone (None if it has none)."""
        ...


@dataclass(frozen=True, slots=True)
class ScanResult:
    entries: int
    unreadable: int
    root: bytes
    first: date | None = None
    last: date | None = None

    def matches(self, provenance: Provenance) -> bool:
        return self.entries == provenance.size and self.root == provenance.root


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A verified checkpoint of one log, and the store to read its entries from."""

    store: AuditStore
    provenance: Provenance
    #: The log's obligations outbox, when its store keeps one (read-only use).
    log: AuditLog | None = None

    @classmethod
    def take(
        cls,
        log: AuditLog,
        *,
        signatures: str = "sample",
        workers: int = 1,
        vkeys: Sequence[str] | None = None,
        sample_rate: float = 0.01,
    ) -> Snapshot:
        """The latest signed checkpoint, verified.

        ``signatures``: ``"sample"`` (default: 1% of entry signatures, and the
        last one) or ``"all"``. ``vkeys``: verifier keys kept outside the data
        directory, trusted instead of its keyring. Raises :class:`ReportError`
        when there is no checkpoint or it does not open with a trusted key; a
        log that opens but fails verification still gives a snapshot, whose
        provenance says so.
        """
        from gatekeeper.audit.verify import verify_log

        if signatures not in SIGNATURE_MODES:
            raise ReportError(f"signatures must be one of {SIGNATURE_MODES}, not {signatures!r}")
        note = log.latest_checkpoint()
        if note is None:
            raise ReportError("the audit log has no checkpoint yet: nothing to report from")
        verifiers = [Verifier(v) for v in vkeys] if vkeys else log.keys.verifiers()
        try:
            checkpoint = open_checkpoint(note, verifiers)
        except GatekeeperError as exc:
            raise ReportError(f"the latest checkpoint does not open: {exc}") from exc
        report = verify_log(
            log.store,
            log.keys,
            signatures=signatures,
            workers=workers,
            trusted=note,
            vkeys=list(vkeys) if vkeys else None,
            sample_rate=sample_rate,
        )
        provenance = Provenance.of(checkpoint, note, report)
        return cls(store=log.store, provenance=provenance, log=log)

    def scan(self, aggregators: Iterable[Aggregator], zone: ZoneInfo) -> ScanResult:
        """Feed entries ``0..size-1`` to each aggregator, in one pass; re-hash them."""
        targets = list(aggregators)
        size = self.provenance.size
        frontier = merkle.Frontier()
        unreadable = 0
        expected = 0
        days: list[date] = []  # the first and the last dated entry's day
        try:
            for start in range(0, size, CHUNK):
                for stored in self.store.read_entries(start, min(size, start + CHUNK)):
                    if stored.index != expected:
                        # A gap or a reordering: the root cannot match; stop counting.
                        first, last = days if days else (None, None)
                        return ScanResult(frontier.count, unreadable, b"", first, last)
                    expected += 1
                    frontier.append(merkle.leaf_hash(stored.data))
                    try:
                        value = json.loads(stored.data)
                    except ValueError:
                        value = None
                    if not isinstance(value, dict):
                        unreadable += 1
                        continue
                    moment = local_moment(value.get("timestamp"), zone)
                    if moment is not None:
                        day = moment.date()
                        if not days:
                            days = [day, day]
                        else:
                            days = [min(days[0], day), max(days[1], day)]
                    for target in targets:
                        target.add(stored.index, value, moment)
        except GatekeeperError as exc:
            raise ReportError(f"cannot read the audit log: {exc}") from exc
        first, last = days if days else (None, None)
        return ScanResult(frontier.count, unreadable, frontier.root(), first, last)

    def checked(self, result: ScanResult) -> Provenance:
        """The provenance, with the outcome of a scan's re-hash."""
        problems = self.provenance.problems
        matches = result.matches(self.provenance)
        if not matches:
            problems = (
                *problems,
                f"the {result.entries} entries read do not hash to the checkpoint's root "
                f"(size {self.provenance.size})",
            )
        if result.unreadable:
            problems = (*problems, f"{result.unreadable} entries are not JSON objects")
        return replace(
            self.provenance,
            entries_match=matches,
            problems=problems,
            first_day=result.first,
            last_day=result.last,
        )
