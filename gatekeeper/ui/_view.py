"""What the web view shows, read from the log without the power to change it.

    >>> from gatekeeper.config import load_settings
    >>> from gatekeeper.ui import LogView, Search
    >>> view = LogView.open(load_settings(data_dir=".gatekeeper"))     # doctest: +SKIP
    >>> view.verify().summary                                          # doctest: +SKIP
    '32/32 entries valid'
    >>> view.search(Search(decision="deny")).total                     # doctest: +SKIP
    14
    >>> view.entry(7).proof_verified                                   # doctest: +SKIP
    True

:class:`LogView` holds a store opened read-only
(:func:`gatekeeper.audit.readonly.open_readonly`, SQLite ``mode=ro``) behind
:class:`ReadOnlyStore`, whose ``append_batch`` refuses, and the verifier keys
of the keyring (read, never written) or pinned ones. It never opens an
:class:`~gatekeeper.audit.log.AuditLog`, never creates a file or a key.

- :meth:`LogView.verify` runs :func:`gatekeeper.audit.verify.verify_log`
  (signatures sampled by default) with the latest checkpoint as the trusted
  one, then reads entries ``0..size-1`` once to count them and re-hash them
  against that checkpoint's root (as a report does). The result is kept:
  :meth:`LogView.status` returns it, and the reports are made from its
  checkpoint.
- :meth:`LogView.search` filters entries of the latest checkpoint with
  :class:`gatekeeper.audit.show.EntryFilter` (time, student, requester,
  decision) plus index range, requester agency, rule and entry kind.
- :meth:`LogView.entry` returns an entry with its leaf hash, its signature
  checked, and its RFC 9162 inclusion proof in the latest signed checkpoint,
  computed from the stored hashes (:mod:`gatekeeper.audit.merkle`) and checked.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gatekeeper.audit import merkle
from gatekeeper.audit.keys import KeyStore
from gatekeeper.audit.note import Checkpoint, Verifier, open_checkpoint
from gatekeeper.audit.outbox import COLUMNS, ObligationRecord, record_from_row
from gatekeeper.errors import GatekeeperError
from gatekeeper.request import DEFAULT_TIMEZONE
from gatekeeper.ui._auth import UiError
from gatekeeper.ui._model import (
    EntryCounter,
    EntryDetail,
    ReadOnlyStore,
    Status,
    audit_path,
)
from gatekeeper.ui._search import EntryRow, Search, SearchPage

if TYPE_CHECKING:
    from gatekeeper.audit.readonly import LogReader
    from gatekeeper.config import Settings
    from gatekeeper.reports import AgencyCatalog, Report, Snapshot
    from gatekeeper.reports._outstanding import Outstanding

__all__ = ["REPORTS", "LogView"]

#: The reports the view renders (``/reports/<kind>``).
REPORTS = ("activity", "enforcement", "disclosures")
#: Entries read per store query while searching (as ``gatekeeper audit show`` reads them).
CHUNK = 4096
#: Problems kept from one verification (the overview lists them all).
MAX_PROBLEMS = 500


def _origin_of(data_dir: Path) -> str | None:
    """The origin recorded in a data directory, without creating one."""
    try:
        found = (data_dir / "origin").read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return found or None


class LogView:
    """Read-only access to one log for the web view: status, search, entries, reports."""

    def __init__(
        self,
        reader: LogReader,
        keys: KeyStore,
        *,
        vkeys: Sequence[str] | None = None,
        signatures: str = "sample",
        sample_rate: float = 0.01,
        timezone: str = DEFAULT_TIMEZONE,
        policy_dir: Path | None = None,
        sqlite_path: Path | None = None,
    ) -> None:
        if signatures not in ("sample", "all"):
            raise UiError(f"signatures must be 'sample' or 'all', not {signatures!r}")
        self.store = ReadOnlyStore(reader)
        self.keys = keys
        self.vkeys = list(vkeys) if vkeys else None
        self.signatures = signatures
        self.sample_rate = sample_rate
        self.timezone = timezone
        self.policy_dir = policy_dir
        #: The SQLite file, for the outbox counts (read-only); None for PostgreSQL.
        self.sqlite_path = sqlite_path
        self._lock = threading.Lock()
        self._status: Status | None = None
        self._status_started = float("-inf")
        self._catalog: AgencyCatalog | None = None

    @classmethod
    def open(
        cls,
        settings: Settings,
        *,
        vkeys: Sequence[str] | None = None,
        signatures: str = "sample",
    ) -> LogView:
        """The log ``settings`` name, opened read-only (never created)."""
        from gatekeeper.audit.readonly import open_readonly

        reader = open_readonly(settings.data_dir, settings.audit_url)
        try:
            origin = settings.origin or _origin_of(settings.data_dir)
            if origin is None:
                note = reader.latest_checkpoint()
                origin = note.split("\n", 1)[0] if note else ""
            keys = KeyStore(settings.data_dir, origin=origin)
            return cls(
                reader,
                keys,
                vkeys=vkeys,
                signatures=signatures,
                timezone=settings.timezone,
                policy_dir=settings.policy_dir,
                sqlite_path=None if settings.audit_url else settings.data_dir / "audit.sqlite",
            )
        except BaseException:
            reader.close()
            raise

    def close(self) -> None:
        self.store.close()

    def verifiers(self) -> list[Verifier]:
        if self.vkeys:
            return [Verifier(v) for v in self.vkeys]
        return self.keys.verifiers()

    # -- verification --------------------------------------------------------------

    def status(self) -> Status:
        """The latest verification (run now if none ran yet)."""
        status = self._status
        return status if status is not None else self.verify()

    def verify(self) -> Status:
        """Run the verifier now; callers arriving during a run share its result."""
        asked = time.monotonic()
        with self._lock:
            if self._status is not None and self._status_started >= asked:
                return self._status
            started = time.monotonic()
            status = self._verify()
            self._status, self._status_started = status, started
            return status

    def _verify(self) -> Status:
        from gatekeeper.audit.verify import verify_log
        from gatekeeper.reports import Provenance, ReportError, Snapshot
        from gatekeeper.reports._model import Period

        started = time.monotonic()
        problems: list[str] = []
        checkpoint, cp_error = None, None
        try:
            note = self.store.latest_checkpoint()
            verifiers = self.verifiers()
        except GatekeeperError as exc:
            note, verifiers, cp_error = None, [], f"the log cannot be read: {exc}"
        if cp_error is None and not verifiers:
            cp_error = (
                "no verifier key: the data directory has no keyring (keys/keyring.json); "
                "start the view with --vkey"
            )
        elif cp_error is None and note is None:
            cp_error = "the audit log has no checkpoint yet"
        elif note is not None:
            try:
                checkpoint = open_checkpoint(note, verifiers)
            except GatekeeperError as exc:
                cp_error = f"the latest checkpoint does not open with a trusted key: {exc}"
        if cp_error is not None:
            problems.append(cp_error)
        report = verify_log(
            self.store,
            self.keys,
            signatures=self.signatures,
            sample_rate=self.sample_rate,
            trusted=note if checkpoint is not None else None,
            vkeys=self.vkeys,
        )
        problems.extend(str(p) for p in report.problems)
        provenance, verified, counts = None, None, None
        if checkpoint is not None and note is not None:
            verified = provenance = Provenance.of(checkpoint, note, report)
            snapshot = Snapshot(store=self.store, provenance=provenance)
            counter = EntryCounter()
            try:
                result = snapshot.scan([counter], Period(timezone=self.timezone).zone)
            except ReportError as exc:
                problems.append(str(exc))
            else:
                provenance = snapshot.checked(result)
                counts = counter.counts()
                if not provenance.entries_match:
                    problems.append(provenance.problems[-1])
        return Status(
            checked_at=datetime.now(UTC),
            seconds=time.monotonic() - started,
            size=report.size,
            valid_entries=report.valid_entries,
            checkpoints=report.checkpoints,
            signature_mode=report.signature_mode,
            signatures_checked=report.signatures_checked,
            problems=tuple(problems[:MAX_PROBLEMS]),
            provenance=provenance,
            checkpoint_error=cp_error,
            counts=counts,
            verified=verified,
        )

    # -- the latest checkpoint -----------------------------------------------------

    def latest(self) -> tuple[Checkpoint | None, str | None]:
        """The latest checkpoint, its signature checked; or None and why not."""
        try:
            note = self.store.latest_checkpoint()
            if note is None:
                return None, "the audit log has no checkpoint yet"
            return open_checkpoint(note, self.verifiers()), None
        except GatekeeperError as exc:
            return None, f"the latest checkpoint does not open with a trusted key: {exc}"

    def _searchable_size(self) -> int:
        """The size of the latest stored checkpoint (what search and proofs cover)."""
        from gatekeeper.audit.serve import checkpoint_size

        note = self.store.latest_checkpoint()
        return 0 if note is None else checkpoint_size(note)

    # -- search ----------------------------------------------------------------------

    def search(self, search: Search) -> SearchPage:
        """The page of entries ``search`` asks for, among entries of the latest checkpoint."""
        size = self._searchable_size()
        start = search.first or 0
        end = size if search.last is None else min(size, search.last + 1)
        matches = search.matcher()
        # An entry that is not a JSON object (a damaged log) is listed only when
        # nothing but the index range is asked: no criterion can match it.
        unfiltered = not set(search.criteria()) - {"first", "last"}
        skip = (search.page - 1) * search.per_page
        rows: list[EntryRow] = []
        total = 0
        for lo in range(start, end, CHUNK):
            for stored in self.store.read_entries(lo, min(end, lo + CHUNK)):
                try:
                    entry = json.loads(stored.data)
                except ValueError:
                    entry = None
                if isinstance(entry, dict):
                    if not matches(entry):
                        continue
                    row = EntryRow.of(stored.index, entry)
                elif unfiltered:
                    row = EntryRow.of(stored.index, {"kind": "(not a JSON object)"})
                else:
                    continue
                if skip <= total < skip + search.per_page:
                    rows.append(row)
                total += 1
        return SearchPage(search, tuple(rows), total, size)

    # -- one entry -------------------------------------------------------------------

    def entry(self, index: int) -> EntryDetail | None:
        """Entry ``index`` with its proof in the latest checkpoint; None if there is none."""
        if index < 0 or index >= self.store.size():
            return None
        found = self.store.read_entries(index, index + 1)
        if not found or found[0].index != index:
            return None
        stored = found[0]
        try:
            value: Any = json.loads(stored.data)
            pretty = json.dumps(value, indent=2, ensure_ascii=False)
        except ValueError:
            value, pretty = None, stored.data.decode("utf-8", "replace")
        leaf = merkle.leaf_hash(stored.data)
        signed_by = None
        for verifier in self.verifiers():
            if verifier.verify(stored.data, stored.signature):
                signed_by = f"{verifier.name}+{verifier.key_id.hex()}"
                break
        checkpoint, cp_error = self.latest()
        detail = EntryDetail(
            index=index,
            data=stored.data,
            value=value,
            pretty=pretty,
            leaf_hash=leaf,
            signature=stored.signature,
            signed_by=signed_by,
            checkpoint=checkpoint,
            checkpoint_error=cp_error,
        )
        if checkpoint is None:
            return _with_proof(detail, proof_error=cp_error)
        if index >= checkpoint.size:
            return _with_proof(
                detail,
                proof_error=f"entry {index} is not yet covered by the latest checkpoint "
                f"(size {checkpoint.size})",
            )
        try:
            proof = merkle.prove_record(checkpoint.size, index, self.store.read_hashes)
        except GatekeeperError as exc:
            return _with_proof(detail, proof_error=f"no proof could be computed: {exc}")
        steps = tuple(audit_path(index, checkpoint.size, leaf, proof))
        try:
            merkle.check_record(proof, checkpoint.size, checkpoint.root, index, leaf)
        except GatekeeperError as exc:
            return _with_proof(detail, proof=tuple(proof), steps=steps, proof_error=str(exc))
        return _with_proof(detail, proof=tuple(proof), steps=steps, proof_verified=True)

    # -- reports -----------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The last verified checkpoint, for a report (:class:`UiError` if there is none)."""
        from gatekeeper.reports import Snapshot

        status = self.status()
        if status.verified is None:
            raise UiError(
                f"no signed checkpoint to report from: {status.checkpoint_error}",
                reason="ui_no_checkpoint",
            )
        # A report re-hashes what it reads: it starts from the verifier's verdict.
        return Snapshot(store=self.store, provenance=status.verified)

    def report(
        self,
        kind: str,
        *,
        start: str | None = None,
        end: str | None = None,
        student: str | None = None,
    ) -> Report:
        """A report (``activity``, ``enforcement``, ``disclosures``) from the last
        verified checkpoint; ``start``/``end``: ``YYYY-MM-DD`` in the district's zone."""
        from gatekeeper.reports import (
            AgencyCatalog,
            Period,
            disclosure_record,
            enforcement_report,
        )
        from gatekeeper.reports._activity import ActivityAggregator

        if kind not in REPORTS:
            raise UiError(f"no report {kind!r}", reason="ui_not_found")
        period = Period.parse(start, end, timezone=self.timezone)
        snapshot = self.snapshot()
        if kind == "enforcement":
            if self._catalog is None:
                self._catalog = AgencyCatalog.load(self.policy_dir)
            return enforcement_report(snapshot, period=period, catalog=self._catalog)
        if kind == "disclosures":
            return disclosure_record(
                snapshot, student or "", period=period, policy_dir=self.policy_dir
            )
        aggregator = ActivityAggregator(period)
        provenance = snapshot.checked(snapshot.scan([aggregator], period.zone))
        return aggregator.report(provenance, self.outstanding(provenance.size))

    def outstanding(self, size: int) -> Outstanding:
        """Open obligations of entries ``< size``, read from the SQLite outbox (``mode=ro``)."""
        from gatekeeper.reports._outstanding import DETAIL_ROWS, ObligationCount, Outstanding

        if self.sqlite_path is None:
            return Outstanding(
                None,
                source="obligations are not read by the web view on PostgreSQL: "
                "`gatekeeper report activity` lists them",
            )
        open_rows = (
            "(status IN ('pending', 'failed') OR (blocking = 1 AND status <> 'acknowledged'))"
        )
        uri = self.sqlite_path.resolve().as_uri() + "?mode=ro"
        try:
            db = sqlite3.connect(uri, uri=True, timeout=5.0)
            try:
                counted = db.execute(
                    "SELECT code, status, blocking, COUNT(*), MIN(created_at) FROM obligations "  # noqa: S608 - constant
                    f"WHERE entry_index < ? AND {open_rows} GROUP BY code, status, blocking "
                    "ORDER BY code, status, blocking",
                    (size,),
                ).fetchall()
                oldest = db.execute(
                    f"SELECT {COLUMNS} FROM obligations WHERE entry_index < ? AND {open_rows} "  # noqa: S608 - constant
                    "ORDER BY id LIMIT ?",
                    (size, DETAIL_ROWS),
                ).fetchall()
            finally:
                db.close()
            counts = tuple(
                ObligationCount(
                    str(code), str(status), bool(blocking), int(count), _outbox_time(first)
                )
                for code, status, blocking, count, first in counted
            )
            rows: list[ObligationRecord] = [record_from_row(r, _outbox_time) for r in oldest]
        except (sqlite3.Error, ValueError) as exc:
            return Outstanding(None, source=f"obligations not read: {exc}")
        return Outstanding(
            counts,
            tuple(rows),
            "read by the web view from the SQLite outbox table, opened read-only",
        )


def _outbox_time(value: object) -> datetime:
    return datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _with_proof(detail: EntryDetail, **changes: Any) -> EntryDetail:
    return replace(detail, **changes)
