"""The e-mail dispatcher: one message per obligation, over SMTP (STARTTLS optional).

The message is plain text for a person (what to do, for which decision and
student id, how to acknowledge) with the obligation's JSON attached for
tools. It carries names of fields, never record values. Delivered means the
SMTP server accepted the message for every recipient.
"""

from __future__ import annotations

import json
import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

from gatekeeper.obligations._dispatch import DeliveryError, ObligationMessage

__all__ = ["EmailDispatcher", "render_text"]


def _line(label: str, value: Any) -> str:
    if value is None or value == [] or value == "":
        return ""
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value)
    return f"{label}: {value}\n"


def render_text(message: ObligationMessage) -> str:
    """The human-readable body."""
    c = message.content
    requester = c.get("requester") or {}
    who = " / ".join(
        str(requester[k]) for k in ("kind", "agency", "id", "role") if requester.get(k)
    )
    student = (c.get("student") or {}).get("id")
    bulk = c.get("bulk")
    scope = f"bulk: {bulk.get('scope')} {bulk.get('grades') or ''}".strip() if bulk else None
    hold = (
        "BLOCKING: nothing may be released for this decision until this obligation is "
        "acknowledged.\n\n"
        if message.blocking
        else ""
    )
    return (
        f"Obligation {message.code} (#{message.obligation_id}) for decision "
        f"{c.get('decision_id')}.\n\n"
        + hold
        + _line("Decision", f"{c.get('decision')} ({', '.join(c.get('rules') or [])})")
        + _line("Guidance", c.get("guidance"))
        + _line("Student", student)
        + _line("Scope", scope)
        + _line("Requester", who)
        + _line("On behalf of", c.get("on_behalf_of"))
        + _line("Purpose", c.get("purpose"))
        + _line("Channel", c.get("channel"))
        + _line("Fields to release", c.get("allowed_fields"))
        + _line("Fields refused", c.get("denied_fields"))
        + _line("All obligations", c.get("obligations"))
        + _line("Audit entry", f"{(c.get('audit') or {}).get('index')}")
        + "\nWhen it is done, acknowledge it (the acknowledgment is written to the audit "
        f'log):\n\n    gatekeeper obligations ack {message.obligation_id} --by "YOUR NAME"\n'
    )


class EmailDispatcher:
    """Sends each obligation to fixed recipients through one SMTP server."""

    def __init__(
        self,
        *,
        host: str,
        port: int = 25,
        sender: str,
        to: Sequence[str],
        starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
        cafile: str | Path | None = None,
        timeout: float = 10.0,
    ) -> None:
        if not to:
            raise ValueError("an e-mail route needs at least one recipient")
        self.host = host
        self.port = port
        self.sender = sender
        self.to = tuple(to)
        self.starttls = starttls
        self.username = username
        self._password = password
        self.cafile = None if cafile is None else str(cafile)
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"EmailDispatcher({self.host}:{self.port} -> {', '.join(self.to)})"

    def compose(self, message: ObligationMessage) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = ", ".join(self.to)
        flag = "[blocking] " if message.blocking else ""
        decision_id = str(message.content.get("decision_id", ""))
        mail["Subject"] = f"[gatekeeper] {flag}{message.code} for decision {decision_id[:12]}"
        mail["Date"] = formatdate(localtime=False)
        domain = self.sender.rpartition("@")[2] or None  # no DNS lookup of our own name
        mail["Message-ID"] = make_msgid(f"obligation-{message.obligation_id}", domain=domain)
        mail["Gatekeeper-Obligation-Id"] = str(message.obligation_id)
        mail["Gatekeeper-Delivery-Attempt"] = str(message.attempt)
        mail.set_content(render_text(message))
        mail.add_attachment(
            json.dumps(message.content, indent=2, sort_keys=True, ensure_ascii=False).encode(),
            maintype="application",
            subtype="json",
            filename=f"obligation-{message.obligation_id}.json",
        )
        return mail

    def send(self, message: ObligationMessage) -> None:
        mail = self.compose(message)
        where = f"smtp://{self.host}:{self.port}"
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                smtp.ehlo()
                if self.starttls:
                    context = ssl.create_default_context(cafile=self.cafile)
                    smtp.starttls(context=context)
                    smtp.ehlo()
                if self.username is not None:
                    smtp.login(self.username, self._password or "")
                refused = smtp.send_message(mail, from_addr=self.sender, to_addrs=list(self.to))
        except (smtplib.SMTPException, ssl.SSLError, OSError) as exc:
            detail = " ".join(str(exc).split())[:300]
            raise DeliveryError(f"{where}: {type(exc).__name__}: {detail}") from exc
        if refused:
            raise DeliveryError(f"{where} refused {sorted(refused)}")
