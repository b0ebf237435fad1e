"""Obligations: the outbox of each decision, its dispatchers, and acknowledgments.

Every decision's obligations (``NOTIFY_PARENT_PRE``, ``NOTIFY_LEGAL``, ...)
are written to an outbox in the same transaction as the decision's audit
entry. Dispatchers deliver them at least once (a signed webhook, an e-mail);
a blocking one (⛔ in RULES.md) holds the release until someone acknowledges
it, and each acknowledgment is itself a signed audit entry.

    >>> import gatekeeper, tempfile
    >>> gk = gatekeeper.open(data_dir=tempfile.mkdtemp())
    >>> decision = gk.decide({
    ...     "channel": "internal",
    ...     "requester": {"id": "E1", "kind": "district_staff",
    ...                   "role": "teacher_of_record", "identity_verified": True},
    ...     "purpose": "educational", "student": {"id": "S1", "age": 9},
    ...     "fields": ["grades"]})
    >>> [(r.code, r.status, r.acked_by) for r in gk.obligations.list()]
    [('REDACT_OUT_OF_SCOPE', 'acknowledged', 'gatekeeper:redaction')]
    >>> gk.release(decision.decision_id).decision.allowed_fields
    ('grades',)

See ``docs/obligations.md``.
"""

from __future__ import annotations

from collections.abc import Mapping

from gatekeeper.audit.outbox import (
    ACKNOWLEDGED,
    DELIVERED,
    FAILED,
    PENDING,
    STATUSES,
    ObligationRecord,
)
from gatekeeper.obligations._api import ObligationError, Obligations, ReleaseCheck
from gatekeeper.obligations._dispatch import (
    DeliveryError,
    Dispatcher,
    DispatchReport,
    DispatchRunner,
    ObligationMessage,
    RetryPolicy,
)
from gatekeeper.obligations._email import EmailDispatcher
from gatekeeper.obligations._payload import ACK_KIND, ACK_VERSION, blocking_codes, outbox_rows
from gatekeeper.obligations._routing import (
    EmailRoute,
    ObligationSettings,
    WebhookRoute,
    parse_obligation_settings,
)
from gatekeeper.obligations._webhook import WebhookDispatcher, sign_body, verify_signature

__all__ = [
    "ACKNOWLEDGED",
    "ACK_KIND",
    "ACK_VERSION",
    "DELIVERED",
    "FAILED",
    "PENDING",
    "STATUSES",
    "DeliveryError",
    "DispatchReport",
    "DispatchRunner",
    "Dispatcher",
    "EmailDispatcher",
    "EmailRoute",
    "ObligationError",
    "ObligationMessage",
    "ObligationRecord",
    "ObligationSettings",
    "Obligations",
    "ReleaseCheck",
    "RetryPolicy",
    "WebhookDispatcher",
    "WebhookRoute",
    "blocking_codes",
    "dispatchers_for",
    "outbox_rows",
    "parse_obligation_settings",
    "sign_body",
    "verify_signature",
]


def dispatchers_for(settings: ObligationSettings) -> dict[str, Dispatcher]:
    """One dispatcher per routed code, secrets read now (GatekeeperError if missing)."""
    built: dict[int, Dispatcher] = {}
    out: dict[str, Dispatcher] = {}
    routes: Mapping[str, WebhookRoute | EmailRoute] = settings.routes
    for code, route in routes.items():
        dispatcher = built.get(id(route))
        if dispatcher is None:
            if isinstance(route, WebhookRoute):
                dispatcher = WebhookDispatcher(
                    url=route.url, secret=route.secret(), timeout=route.timeout
                )
            else:
                dispatcher = EmailDispatcher(
                    host=route.host,
                    port=route.port,
                    sender=route.sender,
                    to=route.to,
                    starttls=route.starttls,
                    username=route.username,
                    password=route.password(),
                    cafile=route.cafile,
                    timeout=route.timeout,
                )
            built[id(route)] = dispatcher
        out[code] = dispatcher
    return out
