"""The Decision: what gatekeeper answers for one AccessRequest.

``Decision.to_dict()`` is exactly the Decision JSON of ``shared/CONTRACT.md``
(plus ``reason`` on a fail-closed deny)::

    >>> from gatekeeper.decision import Decision, Effect
    >>> d = Decision.fail_closed(request_id="r1", reason="engine_timeout",
    ...                          policy_revision="sha256:00", engine="opa")
    >>> d.decision is Effect.DENY, d.allowed_fields
    (True, ())
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["BLOCKING_OBLIGATIONS", "Decision", "Effect"]

#: Obligations (⛔ in RULES.md) that must be met before any release.
BLOCKING_OBLIGATIONS = frozenset(
    {"REDACT_OUT_OF_SCOPE", "NOTIFY_PARENT_PRE", "VERIFY_IDENTITY", "VERIFY_CONSENT"}
)

_FAIL_CLOSED_GUIDANCE = (
    "The gatekeeper could not decide this request ({reason}). Release nothing; "
    "try again later or call the records office."
)
#: An invalid request is the caller's to fix: waiting does not help.
_INVALID_REQUEST_GUIDANCE = (
    "The gatekeeper could not read this request (invalid_request). Release nothing; "
    "the system that sent it must correct it (its error names the field), then ask again."
)


class Effect(StrEnum):
    """permit: release allowed_fields after the blocking obligations are met;
    deny: release nothing; escalate: release nothing now, the legal office decides."""

    PERMIT = "permit"
    DENY = "deny"
    ESCALATE = "escalate"


def _new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """One decision. ``allowed_fields`` is empty unless ``decision`` is permit."""

    decision: Effect
    rules: tuple[str, ...]
    obligations: tuple[str, ...]
    allowed_fields: tuple[str, ...]
    denied_fields: tuple[str, ...]
    guidance: str
    policy_revision: str
    engine: str
    request_id: str | None = None
    decision_id: str = field(default_factory=_new_id)
    audit: Mapping[str, Any] | None = None
    #: Set only on a fail-closed deny: why no policy decision could be made.
    reason: str | None = None
    #: Whether the pack found an immigration context (kept for the audit log).
    immigration_context: bool = False

    def __post_init__(self) -> None:
        if self.decision is not Effect.PERMIT and self.allowed_fields:
            raise ValueError("only a permit releases fields")

    @classmethod
    def from_policy(
        cls,
        raw: Mapping[str, Any],
        *,
        request_id: str | None,
        policy_revision: str,
        engine: str,
    ) -> Decision:
        """Build from a checked raw policy output (engines.check_policy_output)."""
        return cls(
            decision=Effect(raw["decision"]),
            rules=tuple(raw["rules"]),
            obligations=tuple(raw["obligations"]),
            allowed_fields=tuple(raw["allowed_fields"]),
            denied_fields=tuple(raw["denied_fields"]),
            guidance=raw["guidance"],
            immigration_context=bool(raw["immigration_context"]),
            request_id=request_id,
            policy_revision=policy_revision,
            engine=engine,
        )

    @classmethod
    def fail_closed(
        cls,
        *,
        request_id: str | None,
        reason: str,
        policy_revision: str,
        engine: str,
        denied_fields: tuple[str, ...] = (),
    ) -> Decision:
        """A deny made without a policy decision: engine error, bad input, ..."""
        return cls(
            decision=Effect.DENY,
            rules=(),
            obligations=(),
            allowed_fields=(),
            denied_fields=denied_fields,
            guidance=_INVALID_REQUEST_GUIDANCE
            if reason == "invalid_request"
            else _FAIL_CLOSED_GUIDANCE.format(reason=reason),
            request_id=request_id,
            policy_revision=policy_revision,
            engine=engine,
            reason=reason,
        )

    @property
    def permitted(self) -> bool:
        return self.decision is Effect.PERMIT

    @property
    def blocking_obligations(self) -> tuple[str, ...]:
        """The obligations that hold the release until they are met."""
        return tuple(o for o in self.obligations if o in BLOCKING_OBLIGATIONS)

    def to_dict(self) -> dict[str, Any]:
        """Exactly the Decision JSON of CONTRACT.md (``reason`` only on a fail-closed deny)."""
        out: dict[str, Any] = {
            "decision_id": self.decision_id,
            "request_id": self.request_id,
            "decision": str(self.decision),
            "rules": list(self.rules),
            "obligations": list(self.obligations),
            "allowed_fields": list(self.allowed_fields),
            "denied_fields": list(self.denied_fields),
            "guidance": self.guidance,
            "policy_revision": self.policy_revision,
            "engine": self.engine,
            "audit": None if self.audit is None else dict(self.audit),
        }
        if self.reason is not None:
            out["reason"] = self.reason
        return out
