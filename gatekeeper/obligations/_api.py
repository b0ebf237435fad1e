"""The Python API over the outbox: list, acknowledge, and check a held release."""

from __future__ import annotations

import builtins
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from gatekeeper.audit.entry import AuditError
from gatekeeper.audit.log import AuditLog
from gatekeeper.audit.merkle import leaf_hash
from gatekeeper.audit.outbox import ACKNOWLEDGED, ObligationAck, ObligationRecord
from gatekeeper.decision import Decision, Effect
from gatekeeper.errors import GatekeeperError
from gatekeeper.obligations._payload import ACK_KIND, MET_BY_REDACTION, ack_entry

__all__ = ["ObligationError", "Obligations", "ReleaseCheck"]


class ObligationError(GatekeeperError):
    """An obligation cannot be found, acknowledged, or its decision released."""

    reason = "obligation_error"


@dataclass(frozen=True, slots=True)
class ReleaseCheck:
    """Whether a decision's data may leave now (the non-raising result).

    ``decision`` is rebuilt from the decision's signed audit entry, never from
    what a caller says. ``releasable`` only for a permit whose every blocking
    obligation is acknowledged by a signed ``obligation_ack`` entry.
    """

    decision: Decision
    open: tuple[str, ...]
    expired: bool = False

    @property
    def releasable(self) -> bool:
        return self.decision.permitted and not self.open and not self.expired


class Obligations:
    """The obligations of one audit log: ``gk.obligations``.

    for row in gk.obligations.list(pending=True):
        print(row.id, row.code, row.status)
    gk.obligations.ack(row.id, by="records office (J. Doe)", note="parent called")
    """

    def __init__(self, log: AuditLog, *, blocking: Collection[str] = ()) -> None:
        self.log = log
        self.blocking = frozenset(blocking)

    def list(
        self,
        *,
        pending: bool = False,
        decision_id: str | None = None,
        limit: int | None = None,
    ) -> list[ObligationRecord]:
        """Outbox rows, oldest first. ``pending``: only those still owed (a blocking
        one until acknowledged, any other until delivered)."""
        return self.log.outbox.list_obligations(
            decision_id=decision_id, open_only=pending, limit=limit
        )

    def get(self, obligation_id: int) -> ObligationRecord:
        row = self.log.outbox.get_obligation(obligation_id)
        if row is None:
            raise ObligationError(f"no obligation {obligation_id}", reason="obligation_unknown")
        return row

    def ack(self, obligation_id: int, *, by: str, note: str | None = None) -> ObligationRecord:
        """Record that an obligation is met: an ``obligation_ack`` entry in the log
        and, in the same transaction, the row ``acknowledged`` with that entry's index.

        ``note`` is kept in the signed log: never put record values in it.
        """
        row = self.get(obligation_id)
        if row.status == ACKNOWLEDGED:
            where = (
                f"at entry {row.ack_entry_index}"
                if row.ack_entry_index is not None
                else f"by {row.acked_by}"
            )
            raise ObligationError(
                f"obligation {obligation_id} ({row.code}) is already acknowledged {where}",
                reason="obligation_already_acknowledged",
            )
        when = datetime.now(UTC)
        try:
            data = ack_entry(row, by=by, note=note, when=when)
        except ValueError as exc:
            raise ObligationError(str(exc), reason="obligation_ack_invalid") from exc
        ack = ObligationAck(row.id, row.decision_id, row.code, by.strip(), when)
        try:
            self.log.append_ack(data, ack)
        except AuditError as exc:
            if exc.reason == "obligation_conflict":
                raise ObligationError(
                    f"obligation {obligation_id} was acknowledged meanwhile",
                    reason="obligation_already_acknowledged",
                ) from exc
            raise
        return self.get(obligation_id)

    # -- releasing a held decision ---------------------------------------------------

    def _signed_entry(self, index: int) -> tuple[dict[str, Any], bytes]:
        stored = self.log.store.read_entries(index, index + 1)
        if len(stored) != 1:
            raise ObligationError(f"audit entry {index} is missing", reason="release_unverifiable")
        entry = stored[0]
        if not any(v.verify(entry.data, entry.signature) for v in self.log.keys.verifiers()):
            raise ObligationError(
                f"audit entry {index}: signature does not verify", reason="release_unverifiable"
            )
        try:
            value = json.loads(entry.data)
        except ValueError as exc:
            raise ObligationError(
                f"audit entry {index} is not JSON", reason="release_unverifiable"
            ) from exc
        if not isinstance(value, dict):
            raise ObligationError(
                f"audit entry {index} is not an object", reason="release_unverifiable"
            )
        return value, entry.data

    def _decision_of(
        self, index: int, decision_id: str, rows: builtins.list[ObligationRecord]
    ) -> tuple[Decision, dict[str, Any]]:
        value, data = self._signed_entry(index)
        if value.get("kind") != "decision" or value.get("decision_id") != decision_id:
            raise ObligationError(
                f"audit entry {index} is not the entry of decision {decision_id}",
                reason="release_unverifiable",
            )

        def names(key: str) -> tuple[str, ...]:
            items = value.get(key)
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise ObligationError(
                    f"decision {decision_id}: its entry keeps no list of {key} "
                    "(a summarized entry cannot be released from)",
                    reason="release_unverifiable",
                )
            return tuple(items)

        try:
            effect = Effect(str(value.get("decision")))
        except ValueError as exc:
            raise ObligationError(
                f"audit entry {index}: no decision", reason="release_unverifiable"
            ) from exc
        guidance = next((str(r.payload.get("guidance", "")) for r in rows), "")
        decision = Decision(
            decision=effect,
            rules=names("rules"),
            obligations=names("obligations"),
            allowed_fields=names("allowed_fields") if effect is Effect.PERMIT else (),
            denied_fields=names("denied_fields"),
            guidance=guidance,
            policy_revision=str(value.get("policy_revision", "")),
            engine=str(value.get("engine", "")),
            request_id=request_id
            if isinstance(request_id := value.get("request_id"), str)
            else None,
            decision_id=decision_id,
            audit={"origin": self.log.origin, "index": index, "leaf_hash": leaf_hash(data).hex()},
            reason=value.get("reason") if isinstance(value.get("reason"), str) else None,
            immigration_context=bool(value.get("immigration_context")),
        )
        return decision, value

    def _acknowledged(self, row: ObligationRecord) -> bool:
        """The row is acknowledged AND its signed ack entry says so."""
        if row.status != ACKNOWLEDGED or row.ack_entry_index is None:
            return False
        try:
            value, _ = self._signed_entry(row.ack_entry_index)
        except ObligationError:
            return False
        named = value.get("obligation")
        return (
            value.get("kind") == ACK_KIND
            and isinstance(named, Mapping)
            and named.get("id") == row.id
            and named.get("decision_id") == row.decision_id
            and named.get("code") == row.code
            and row.ack_entry_index > row.entry_index
        )

    def release_check(self, decision_id: str, *, max_age: timedelta | None = None) -> ReleaseCheck:
        """Re-read the decision's signed entry and its outbox rows: what still holds it."""
        rows = self.log.outbox.list_obligations(decision_id=decision_id)
        if not rows:
            raise ObligationError(
                f"no obligations are recorded for decision {decision_id}: only a decision "
                "held for its obligations can be released",
                reason="release_unknown_decision",
            )
        indexes = {r.entry_index for r in rows}
        if len(indexes) != 1:
            raise ObligationError(
                f"decision {decision_id}: outbox rows name several entries {sorted(indexes)}",
                reason="release_unverifiable",
            )
        decision, entry = self._decision_of(indexes.pop(), decision_id, rows)
        blocking = self.blocking | {r.code for r in rows if r.blocking}
        required = [c for c in decision.obligations if c in blocking]
        if entry.get("bulk") is None:
            # One named student: the guard's redaction releases only the allowed fields.
            required = [c for c in required if c not in MET_BY_REDACTION]
        else:
            # A bulk permit: field redaction cannot scope the students, so its
            # REDACT_OUT_OF_SCOPE holds the release (as in ``access``) even when
            # the pack does not list it as blocking.
            required += [
                c for c in decision.obligations if c in MET_BY_REDACTION and c not in required
            ]
        by_code = {r.code: r for r in rows}
        still_open = tuple(
            c for c in required if c not in by_code or not self._acknowledged(by_code[c])
        )
        expired = False
        if max_age is not None:
            try:
                made = datetime.strptime(str(entry.get("timestamp")), "%Y-%m-%dT%H:%M:%S.%fZ")
            except ValueError:
                expired = True
            else:
                expired = datetime.now(UTC) - made.replace(tzinfo=UTC) > max_age
        return ReleaseCheck(decision, still_open, expired)
