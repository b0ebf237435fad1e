"""Decision-table cases: what a request must decide, and a readable diff when it does not.

    >>> from gatekeeper.policy.cases import Case, check_decision
    >>> case = Case.from_dict({"id": "X1", "request": {}, "expect": {
    ...     "decision": "permit", "rules": ["FERPA-1"], "obligations": [],
    ...     "allowed_fields": ["grades"]}})
    >>> check_decision(case, {"decision": "deny", "rules": ["FERPA-1N"], "obligations": [],
    ...                       "allowed_fields": [], "guidance": "…"})
    ['decision: expected permit, got deny', 'deciding rule: expected FERPA-1, got FERPA-1N', \
'rules: missing FERPA-1; unexpected FERPA-1N', 'allowed_fields: missing grades']

A case file is JSON lines, one case a line (``tests/cases/public.jsonl``)::

    {"id": "A01", "title": "...", "request": {AccessRequest},
     "expect": {"decision": "permit", "rules": ["FERPA-1"],
                "obligations": ["REDACT_OUT_OF_SCOPE"], "allowed_fields": ["grades"]}}

A decision meets its case when it was not made fail-closed, the decision
and the deciding rule (the first of ``rules``) are equal, and the rules,
the obligations and the allowed fields are equal as sets (``allowed_fields``
defaults to none).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gatekeeper.errors import PolicyError

__all__ = ["Case", "check_decision", "load_cases"]


@dataclass(frozen=True, slots=True)
class Case:
    """One decision-table case."""

    id: str
    request: Mapping[str, Any]
    decision: str
    rules: tuple[str, ...]
    obligations: tuple[str, ...]
    allowed_fields: tuple[str, ...]
    title: str = ""
    #: ``file:line`` the case came from.
    where: str = ""

    @classmethod
    def from_dict(cls, value: Mapping[str, Any], where: str = "") -> Case:
        """Parse one case; PolicyError (naming ``where``) if it is malformed."""
        label = where or "case"
        if not isinstance(value, Mapping):
            raise PolicyError(f"{label}: a case is a JSON object")
        expect = value.get("expect")
        if not isinstance(value.get("id"), str) or not isinstance(expect, Mapping):
            raise PolicyError(f"{label}: a case needs an 'id' string and an 'expect' object")
        if not isinstance(value.get("request"), Mapping):
            raise PolicyError(f"{label}: case {value['id']}: 'request' is not an object")

        def strings(key: str, default: Sequence[str] | None = None) -> tuple[str, ...]:
            items = expect.get(key, default)
            if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
                raise PolicyError(f"{label}: case {value['id']}: expect.{key} is not a string list")
            return tuple(items)

        decision = expect.get("decision")
        if decision not in ("permit", "deny", "escalate"):
            raise PolicyError(f"{label}: case {value['id']}: expect.decision is {decision!r}")
        rules = strings("rules")
        if not rules:
            raise PolicyError(f"{label}: case {value['id']}: expect.rules is empty")
        title = value.get("title", "")
        return cls(
            id=value["id"],
            request=value["request"],
            decision=decision,
            rules=rules,
            obligations=strings("obligations", ()),
            allowed_fields=strings("allowed_fields", ()),
            title=title if isinstance(title, str) else "",
            where=where,
        )


def load_cases(paths: Iterable[str | Path]) -> list[Case]:
    """Every case of the JSON-lines files ``paths``, in order; ids must be unique per file."""
    cases: list[Case] = []
    for path in paths:
        file = Path(path)
        try:
            lines = file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError(f"cannot read the cases file {file}: {exc}") from exc
        seen: set[str] = set()
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{file.name}:{number}"
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise PolicyError(f"{where}: not JSON: {exc.msg}") from exc
            case = Case.from_dict(value, where)
            if case.id in seen:
                raise PolicyError(f"{where}: case id {case.id} appears twice in {file.name}")
            seen.add(case.id)
            cases.append(case)
    return cases


def _set_diff(key: str, expected: Iterable[str], got: Iterable[str]) -> str | None:
    want, have = list(dict.fromkeys(expected)), list(dict.fromkeys(got))
    missing = [x for x in want if x not in have]
    unexpected = [x for x in have if x not in want]
    if not missing and not unexpected:
        return None
    parts = []
    if missing:
        parts.append("missing " + ", ".join(missing))
    if unexpected:
        parts.append("unexpected " + ", ".join(unexpected))
    return f"{key}: " + "; ".join(parts)


def check_decision(case: Case, got: Mapping[str, Any]) -> list[str]:
    """The differences between ``case``'s expectation and a Decision dict ([] if it meets it)."""
    if got.get("reason"):
        return [f"failed closed ({got['reason']}): no policy decision was made"]
    problems: list[str] = []
    if got.get("decision") != case.decision:
        problems.append(f"decision: expected {case.decision}, got {got.get('decision')}")
    rules = list(got.get("rules") or [])
    deciding = rules[0] if rules else "(none)"
    if deciding != case.rules[0]:
        problems.append(f"deciding rule: expected {case.rules[0]}, got {deciding}")
    for key, expected in (
        ("rules", case.rules),
        ("obligations", case.obligations),
        ("allowed_fields", case.allowed_fields),
    ):
        diff = _set_diff(key, expected, got.get(key) or [])
        if diff:
            problems.append(diff)
    if not got.get("guidance"):
        problems.append("guidance: empty (staff get no instructions)")
    return problems
