"""The engine protocol and the check of what a policy returns.

An engine turns a policy input (docs/policy-input.md) into the raw decision
object of ``data.gatekeeper.decision``. Every failure is an
:class:`~gatekeeper.errors.EngineError`; the Gatekeeper turns it into a deny.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from gatekeeper.errors import EngineError

__all__ = ["DECISION_KEYS", "EFFECTS", "PolicyEngine", "check_policy_output"]

EFFECTS = frozenset({"permit", "deny", "escalate"})

#: The keys the entrypoint returns, no more, no fewer.
DECISION_KEYS = frozenset(
    {
        "decision",
        "rules",
        "obligations",
        "allowed_fields",
        "denied_fields",
        "guidance",
        "immigration_context",
    }
)


@runtime_checkable
class PolicyEngine(Protocol):
    """Evaluates the policy pack's entrypoint for one input."""

    #: "embedded" or "opa": the value of ``engine`` in a Decision.
    name: str

    @property
    def revision(self) -> str:
        """The revision of the pack this engine evaluates (``sha256:…``)."""
        ...

    def evaluate(self, policy_input: Mapping[str, Any]) -> dict[str, Any]:
        """Return the checked raw decision object; raise EngineError on any failure."""
        ...

    def close(self) -> None:
        """Release the engine's resources."""
        ...


def _str_list(value: Any, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise EngineError(
            f"malformed policy output: {key} is not a list of strings",
            reason="malformed_policy_output",
        )
    return value


def check_policy_output(
    raw: Any,
    policy_input: Mapping[str, Any],
    never_release: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """Check the shape and the safety invariants of a raw policy decision.

    Beyond the shape, a permit may release only requested fields, never a
    citizenship or immigration-status field (IMM-02 is absolute even if a pack
    edit gets it wrong), and only a permit releases anything.
    """
    if not isinstance(raw, dict):
        raise EngineError(
            "malformed policy output: not an object", reason="malformed_policy_output"
        )
    if set(raw) != DECISION_KEYS:
        missing = sorted(DECISION_KEYS - set(raw))
        extra = sorted(set(raw) - DECISION_KEYS)
        raise EngineError(
            f"malformed policy output: missing {missing}, unexpected {extra}",
            reason="malformed_policy_output",
        )
    if raw["decision"] not in EFFECTS:
        raise EngineError(
            f"malformed policy output: decision {raw['decision']!r}",
            reason="malformed_policy_output",
        )
    rules = _str_list(raw["rules"], "rules")
    if not rules:
        raise EngineError(
            "malformed policy output: no rule named", reason="malformed_policy_output"
        )
    _str_list(raw["obligations"], "obligations")
    allowed = _str_list(raw["allowed_fields"], "allowed_fields")
    _str_list(raw["denied_fields"], "denied_fields")
    if not isinstance(raw["guidance"], str) or not isinstance(raw["immigration_context"], bool):
        raise EngineError(
            "malformed policy output: guidance or immigration_context",
            reason="malformed_policy_output",
        )
    requested = set(policy_input.get("fields", ()))
    if raw["decision"] != "permit" and allowed:
        raise EngineError(
            "unsafe policy output: fields allowed without a permit", reason="unsafe_policy_output"
        )
    if not set(allowed) <= requested:
        raise EngineError(
            "unsafe policy output: allowed fields that were not requested",
            reason="unsafe_policy_output",
        )
    if set(allowed) & never_release:
        raise EngineError(
            "unsafe policy output: a status field would be released", reason="unsafe_policy_output"
        )
    return raw
