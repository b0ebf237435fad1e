"""The webhook dispatcher: an HTTP POST of the obligation's JSON, signed with HMAC-SHA256.

    POST <url>
    Content-Type: application/json
    Gatekeeper-Obligation-Id: 17
    Gatekeeper-Delivery-Attempt: 1
    Gatekeeper-Timestamp: 1775149200
    Gatekeeper-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>

    <RFC 8785 JSON of the obligation message>

Any 2xx is acceptance; anything else (another status, a redirect, a
timeout, a refused connection) is a failed attempt. A receiver checks the
signature with :func:`verify_signature` (or the same three lines of HMAC in
any language), rejects stale timestamps, and de-duplicates on the
obligation id: delivery is at least once.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from gatekeeper.obligations._dispatch import DeliveryError, ObligationMessage

__all__ = ["WebhookDispatcher", "sign_body", "verify_signature"]

USER_AGENT = "gatekeeper-obligations/1"


def sign_body(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``Gatekeeper-Signature`` header value."""
    digest = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def verify_signature(
    secret: bytes,
    *,
    body: bytes,
    timestamp: str,
    signature: str,
    tolerance: float = 300.0,
    now: float | None = None,
) -> bool:
    """For receivers: the signature is right and the timestamp recent."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - sent) > tolerance:
        return False
    return hmac.compare_digest(sign_body(secret, timestamp, body), signature)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # a redirect is not an acceptance: the attempt fails


class WebhookDispatcher:
    """POSTs each obligation to one URL."""

    def __init__(self, *, url: str, secret: bytes, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("a webhook URL is http:// or https://")
        if parts.username is not None or parts.password is not None:
            # Never sent by urllib; they would only leak into errors and logs.
            raise ValueError("a webhook URL carries no credentials (the secret signs the body)")
        if not secret:
            raise ValueError("a webhook needs a non-empty secret")
        self.url = url
        self._secret = secret
        self.timeout = timeout
        port = f":{parts.port}" if parts.port else ""
        #: The URL as messages show it: no credentials, no query.
        self.target = f"{parts.scheme}://{parts.hostname}{port}{parts.path}"
        self._opener = urllib.request.build_opener(_NoRedirect())

    def __repr__(self) -> str:
        return f"WebhookDispatcher({self.target})"

    def send(self, message: ObligationMessage) -> None:
        body = message.body()
        stamp = str(int(time.time()))
        request = urllib.request.Request(  # noqa: S310 - scheme checked in __init__
            self.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                "Gatekeeper-Obligation-Id": str(message.obligation_id),
                "Gatekeeper-Delivery-Attempt": str(message.attempt),
                "Gatekeeper-Timestamp": stamp,
                "Gatekeeper-Signature": sign_body(self._secret, stamp, body),
            },
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                status = int(response.status)
                response.read(65536)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise DeliveryError(f"{self.target} answered HTTP {exc.code}") from exc
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DeliveryError(f"{self.target} unreachable: {reason}") from exc
        if not 200 <= status < 300:
            raise DeliveryError(f"{self.target} answered HTTP {status}")
