"""``gatekeeper policy replay``: what a candidate pack would have decided on the recorded requests.

    gatekeeper policy replay --candidate ./policies-next                 # every decision in the log
    gatekeeper policy replay --candidate ./policies-next --since 2026-01-01 --json

    >>> from gatekeeper.audit.readonly import open_readonly
    >>> from gatekeeper.engines import EmbeddedEngine, load_pack
    >>> from gatekeeper.policy.replay import replay
    >>> report = replay(open_readonly(".gatekeeper"),                     # doctest: +SKIP
    ...                 EmbeddedEngine(load_pack("policies-next")))
    >>> report.totals["changed"]                                          # doctest: +SKIP
    3

Every ``decision`` entry of the audit log keeps the policy input it was
decided from (``policy_input``, :func:`gatekeeper.audit.entry.policy_input_of`).
Replay evaluates that input with the candidate engine (the embedded one:
no server needed) and compares what the entry recorded with what the
candidate returns: ``decision``, ``rules`` (in order: the deciding rule
first), ``obligations`` and ``allowed_fields``. Each difference is a change;
changes are grouped by the deciding rule, old → new. A candidate that fails
on an input is a change to a fail-closed deny.

Counted, not compared: entries of other kinds (key rotations, invalid
requests, obligation acknowledgements), decision entries without a policy
input (``policy_input`` null: the input did not fit the 64 KiB entry), and
decisions that were themselves fail-closed when recorded (no policy decided
them). ``--since`` compares against the entry's ``timestamp`` (UTC).

Replay reads the log read-only and does not verify it: run ``gatekeeper
audit verify`` for that.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from gatekeeper.audit.entry import policy_input_of, timestamp
from gatekeeper.audit.readonly import LogReader
from gatekeeper.engines.base import PolicyEngine
from gatekeeper.errors import GatekeeperError

__all__ = ["COMPARED_KEYS", "Change", "Outcome", "ReplayReport", "parse_since", "replay"]

#: What replay compares between the recorded decision and the candidate's.
COMPARED_KEYS = ("decision", "rules", "obligations", "allowed_fields")
_CHUNK = 1024


@dataclass(frozen=True, slots=True)
class Outcome:
    """The compared part of one decision (``reason`` set on a fail-closed deny)."""

    decision: str
    rules: tuple[str, ...]
    obligations: tuple[str, ...]
    allowed_fields: tuple[str, ...]
    reason: str | None = None

    @property
    def deciding_rule(self) -> str:
        if self.reason is not None:
            return f"fail-closed:{self.reason}"
        return self.rules[0] if self.rules else "(none)"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "decision": self.decision,
            "rules": list(self.rules),
            "obligations": list(self.obligations),
            "allowed_fields": list(self.allowed_fields),
        }
        if self.reason is not None:
            out["reason"] = self.reason
        return out


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


def _recorded(entry: dict[str, Any]) -> Outcome:
    return Outcome(
        decision=str(entry.get("decision")),
        rules=_strings(entry.get("rules")),
        obligations=_strings(entry.get("obligations")),
        allowed_fields=_strings(entry.get("allowed_fields")),
        reason=entry.get("reason") if isinstance(entry.get("reason"), str) else None,
    )


@dataclass(frozen=True, slots=True)
class Change:
    """One recorded decision the candidate would decide differently."""

    index: int
    decision_id: str | None
    request_id: str | None
    timestamp: str
    old: Outcome
    new: Outcome

    @property
    def changed_keys(self) -> list[str]:
        if self.new.reason is not None:
            return ["decision", "rules", "obligations", "allowed_fields"]
        return [k for k in COMPARED_KEYS if getattr(self.old, k) != getattr(self.new, k)]

    def describe(self) -> str:
        """``permit → deny; rules A → B; obligations -X +Y; allowed_fields -grades``."""
        parts = []
        if self.new.reason is not None:
            parts.append(f"candidate failed closed ({self.new.reason})")
        if self.old.decision != self.new.decision:
            parts.append(f"{self.old.decision} → {self.new.decision}")
        if self.old.rules != self.new.rules:
            parts.append(
                f"rules {','.join(self.old.rules) or '-'} → {','.join(self.new.rules) or '-'}"
            )
        for key in ("obligations", "allowed_fields"):
            old, new = getattr(self.old, key), getattr(self.new, key)
            if old == new:
                continue
            delta = [f"-{x}" for x in old if x not in new] + [f"+{x}" for x in new if x not in old]
            parts.append(f"{key} {' '.join(delta) if delta else '(order)'}")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "decision_id": self.decision_id,
            "request_id": self.request_id,
            "timestamp": self.timestamp,
            "changed": self.changed_keys,
            "old": self.old.to_dict(),
            "new": self.new.to_dict(),
        }


@dataclass(slots=True)
class ReplayReport:
    """Every change, grouped by deciding rule (old → new), and the totals."""

    candidate_revision: str
    since: str | None = None
    changes: list[Change] = field(default_factory=list)
    totals: dict[str, int] = field(
        default_factory=lambda: {
            "entries": 0,
            "decisions": 0,
            "replayed": 0,
            "unchanged": 0,
            "changed": 0,
            "not_replayable": 0,
            "recorded_fail_closed": 0,
            "before_since": 0,
            "other_entries": 0,
        }
    )
    other_kinds: dict[str, int] = field(default_factory=dict)
    recorded_revisions: dict[str, int] = field(default_factory=dict)

    @property
    def groups(self) -> dict[tuple[str, str], list[Change]]:
        """Changes by (old deciding rule, new deciding rule), largest group first."""
        grouped: dict[tuple[str, str], list[Change]] = {}
        for change in self.changes:
            key = (change.old.deciding_rule, change.new.deciding_rule)
            grouped.setdefault(key, []).append(change)
        return dict(sorted(grouped.items(), key=lambda kv: (-len(kv[1]), kv[0])))

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate_revision": self.candidate_revision,
            "since": self.since,
            "totals": dict(self.totals),
            "other_kinds": dict(sorted(self.other_kinds.items())),
            "recorded_revisions": dict(sorted(self.recorded_revisions.items())),
            "groups": [
                {
                    "from": old,
                    "to": new,
                    "count": len(changes),
                    "changes": [c.to_dict() for c in changes],
                }
                for (old, new), changes in self.groups.items()
            ],
        }

    def render(self) -> str:
        t = self.totals
        lines = [f"policy replay: candidate {self.candidate_revision}"]
        if self.since:
            lines[0] += f", decisions since {self.since}"
        if not self.changes:
            lines.append("  no recorded decision would change")
        for (old, new), changes in self.groups.items():
            lines.append(f"  {old} → {new}: {len(changes)} decision(s)")
            for change in changes:
                who = f" request {change.request_id}" if change.request_id else ""
                lines.append(
                    f"    entry {change.index} (decision {change.decision_id}{who}): "
                    f"{change.describe()}"
                )
        others = ", ".join(f"{k}: {v}" for k, v in sorted(self.other_kinds.items()))
        lines.append(
            f"totals: {t['entries']} entries; {t['decisions']} decisions; {t['replayed']} "
            f"replayed: {t['unchanged']} unchanged, {t['changed']} changed; "
            f"{t['not_replayable']} not replayable (no policy_input); "
            f"{t['recorded_fail_closed']} fail-closed when recorded (not compared); "
            f"{t['before_since']} before --since; "
            f"{t['other_entries']} other entries" + (f" ({others})" if others else "")
        )
        return "\n".join(lines)


def parse_since(text: str) -> str:
    """``--since``: a date (``2026-01-01``, midnight UTC) or an RFC 3339 date-time,
    as an entry ``timestamp`` string (comparable as text)."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return timestamp(datetime(day.year, day.month, day.day, tzinfo=UTC))
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise GatekeeperError(
            f"--since {text!r}: not a date (YYYY-MM-DD) or an RFC 3339 date-time",
            reason="usage",
        ) from exc
    if moment.tzinfo is None:
        raise GatekeeperError(f"--since {text!r}: give a UTC offset (or Z)", reason="usage")
    return timestamp(moment)


def _entries(store: LogReader) -> Iterator[tuple[int, dict[str, Any] | None]]:
    size = store.size()
    for start in range(0, size, _CHUNK):
        for stored in store.read_entries(start, min(size, start + _CHUNK)):
            try:
                value = json.loads(stored.data)
            except ValueError:
                value = None
            yield stored.index, value if isinstance(value, dict) else None


def replay(
    store: LogReader,
    candidate: PolicyEngine,
    *,
    since: str | None = None,
) -> ReplayReport:
    """Re-decide every recorded decision with ``candidate``; never raises for a bad
    entry or a failing candidate (both are counted/reported)."""
    cutoff = parse_since(since) if since else None
    report = ReplayReport(candidate_revision=candidate.revision, since=cutoff)
    totals = report.totals
    for index, entry in _entries(store):
        totals["entries"] += 1
        kind = entry.get("kind") if entry is not None else "unreadable"
        if entry is None or kind != "decision":
            totals["other_entries"] += 1
            report.other_kinds[str(kind)] = report.other_kinds.get(str(kind), 0) + 1
            continue
        stamp = str(entry.get("timestamp", ""))
        if cutoff is not None and stamp < cutoff:
            totals["before_since"] += 1
            continue
        totals["decisions"] += 1
        revision = str(entry.get("policy_revision"))
        report.recorded_revisions[revision] = report.recorded_revisions.get(revision, 0) + 1
        old = _recorded(entry)
        if old.reason is not None:
            totals["recorded_fail_closed"] += 1
            continue
        policy_input = policy_input_of(entry)
        if policy_input is None:
            totals["not_replayable"] += 1
            continue
        totals["replayed"] += 1
        try:
            raw = candidate.evaluate(policy_input)
            new = Outcome(
                decision=str(raw["decision"]),
                rules=tuple(raw["rules"]),
                obligations=tuple(raw["obligations"]),
                allowed_fields=tuple(raw["allowed_fields"]),
            )
        except GatekeeperError as exc:
            new = Outcome("deny", (), (), (), reason=exc.reason)
        if new == old:
            totals["unchanged"] += 1
            continue
        totals["changed"] += 1
        report.changes.append(
            Change(
                index=index,
                decision_id=entry.get("decision_id"),
                request_id=entry.get("request_id"),
                timestamp=stamp,
                old=old,
                new=new,
            )
        )
    return report
