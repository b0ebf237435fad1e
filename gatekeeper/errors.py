"""The error tree of gatekeeper.

Every error a caller can see derives from :class:`GatekeeperError`; foreign
exceptions (regopy, opa_client, urllib3, OSError) are translated where they
cross into gatekeeper, with ``raise ... from exc``. An error on the way to a
decision is a deny, never an allow: :meth:`Gatekeeper.decide` turns each of
these into a ``deny`` Decision carrying a reason code.

    GatekeeperError
    ├── RequestError          the request does not parse or validate (exit 2)
    ├── PolicyError           the policy pack cannot be loaded or is unsafe
    └── EngineError           the engine failed: down, slow, malformed output
        ├── EngineTimeout
        └── RevisionMismatch  the OPA server runs another pack revision
"""

from __future__ import annotations

import re

__all__ = [
    "EngineError",
    "EngineTimeout",
    "GatekeeperError",
    "PolicyError",
    "RequestError",
    "RevisionMismatch",
]


class GatekeeperError(Exception):
    """Root of every error gatekeeper raises.

    ``reason`` is a stable, machine-readable code (used as the deny reason in
    a fail-closed Decision); the message is for people.
    """

    reason: str = "error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason

    def diagnostics(self) -> str:
        """A multi-line explanation suitable for an operator's terminal."""
        return f"{type(self).__name__} [{self.reason}]: {self}"


class RequestError(GatekeeperError):
    """The AccessRequest does not parse or validate.

    ``path`` names the exact key path of the problem, e.g. ``legal_basis.seal``
    or ``fields[3]``; it is empty for whole-document problems (size, syntax).
    """

    reason = "invalid_request"

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)

    @property
    def loggable_path(self) -> str:
        """``path`` with any quoted request key replaced by ``<value>``."""
        return redact_quoted(self.path)

    @property
    def loggable(self) -> str:
        """The message without the request values it quotes, for the operational
        log and the audit entry (the caller gets the full message)."""
        return redact_quoted(str(self))


#: A value the request parser quoted into a message: '...' or a JSON string,
#: possibly shortened with "…".
_QUOTED = re.compile(r"""'[^'\n]*'…?|"(?:[^"\\\n]|\\.)*"…?""")


def redact_quoted(text: str) -> str:
    """``text`` with every quoted string replaced by ``<value>``."""
    return _QUOTED.sub("<value>", text)


class PolicyError(GatekeeperError):
    """The policy pack cannot be loaded, or uses a built-in the engines disagree on."""

    reason = "policy_error"


class EngineError(GatekeeperError):
    """The policy engine failed to produce a well-formed decision."""

    reason = "engine_error"


class EngineTimeout(EngineError):
    """The policy engine did not answer within the configured timeout."""

    reason = "engine_timeout"


class RevisionMismatch(EngineError):
    """The OPA server serves a different policy pack revision than ours."""

    reason = "policy_revision_mismatch"
