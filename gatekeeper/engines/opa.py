"""The OPA engine: a real OPA server, through opa-python-client.

The server must serve the same pack (``opa run --server --bundle policies/``).
Before deciding, the engine checks the server's pack revision: it reads the
modules and data the server has loaded (``GET /v1/policies``,
``GET /v1/data/<root>``), hashes them the way :func:`compute_revision` hashes
the files, and refuses to decide (EngineError ``policy_revision_mismatch``)
when they differ. The check is repeated when it is older than
``revision_ttl`` seconds, so a server swapped to another bundle is noticed.

Every failure is an :class:`~gatekeeper.errors.EngineError`: connection
refused, a timeout (``timeout``, default 250 ms), an HTTP error, an undefined
decision (opa-python-client returns ``{}``) or a malformed one.

    >>> from gatekeeper.engines import OpaServerEngine, load_pack
    >>> engine = OpaServerEngine(load_pack("policies"), url="http://127.0.0.1:8181")
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
from opa_client import OpaClient

from gatekeeper.engines._pack import ENTRYPOINT, PolicyPack, compute_revision
from gatekeeper.engines.base import check_policy_output
from gatekeeper.errors import EngineError, EngineTimeout, RevisionMismatch

__all__ = ["OpaServerEngine"]

DEFAULT_TIMEOUT = 0.25
DEFAULT_REVISION_TTL = 10.0


class OpaServerEngine:
    """Decides through a real OPA server; fails closed with EngineError."""

    name = "opa"

    def __init__(
        self,
        pack: PolicyPack,
        *,
        url: str = "http://127.0.0.1:8181",
        timeout: float = DEFAULT_TIMEOUT,
        revision_ttl: float = DEFAULT_REVISION_TTL,
        token: str | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise EngineError(f"not an OPA server URL: {url!r}", reason="engine_config")
        self._pack = pack
        self._never_release = frozenset(
            pack.data.get("catalog", {}).get("fields", {}).get("status", ())
        )
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = parts.scheme == "https"
        self._token = token
        self.url = url
        self.timeout = timeout
        self.revision_ttl = revision_ttl
        self._local = threading.local()
        self._checked_at: float | None = None
        self._check_lock = threading.Lock()
        package, _, rule = ENTRYPOINT.rpartition("/")
        self._package = package.replace("/", ".")
        self._rule = rule

    @property
    def revision(self) -> str:
        return self._pack.revision

    def _client(self) -> OpaClient:
        client: OpaClient | None = getattr(self._local, "client", None)
        if client is None:
            # No retries: a retry would double the latency the timeout bounds.
            client = OpaClient(
                host=self._host,
                port=self._port,
                ssl=self._ssl,
                token=self._token,
                retries=0,
                timeout=self.timeout,
            )
            self._local.client = client
        return client

    def _translate(self, exc: Exception, what: str) -> EngineError:
        if isinstance(exc, requests.Timeout):
            return EngineTimeout(f"OPA server did not answer {what} within {self.timeout}s")
        if isinstance(exc, requests.ConnectionError):
            return EngineError(
                f"OPA server unreachable at {self.url} ({what})", reason="engine_unreachable"
            )
        if isinstance(exc, requests.HTTPError):
            return EngineError(f"OPA server error for {what}: {exc}", reason="engine_http_error")
        return EngineError(f"OPA server failed {what}: {type(exc).__name__}: {exc}")

    def server_revision(self) -> str:
        """The revision of the pack the server has loaded, as compute_revision hashes it."""
        client = self._client()
        try:
            policies = client._session.get(f"{client.root_url}/policies", timeout=self.timeout)
            policies.raise_for_status()
            modules = [p.get("raw", "") for p in policies.json().get("result", [])]
            data: dict[str, Any] = {}
            for root in self._pack.data:
                body = client.get_data(root)
                data[root] = body["result"]
        except Exception as exc:  # requests, opa_client and JSON errors alike
            raise self._translate(exc, "the revision check") from exc
        return compute_revision(modules, data)

    def check_revision(self, *, force: bool = False) -> None:
        """Raise RevisionMismatch unless the server runs this pack's revision."""
        now = time.monotonic()
        if (
            not force
            and self._checked_at is not None
            and now - self._checked_at < self.revision_ttl
        ):
            return
        with self._check_lock:
            if (
                not force
                and self._checked_at is not None
                and now - self._checked_at < self.revision_ttl
            ):
                return
            served = self.server_revision()
            if served != self._pack.revision:
                self._checked_at = None
                raise RevisionMismatch(
                    f"OPA server at {self.url} runs policy revision {served}, "
                    f"expected {self._pack.revision}"
                )
            self._checked_at = time.monotonic()

    def evaluate_raw(self, policy_input: Mapping[str, Any]) -> Any:
        """The entrypoint's value from the server, unchecked (None when undefined)."""
        self.check_revision()
        started = time.monotonic()
        try:
            body = self._client().query_rule(dict(policy_input), self._package, self._rule)
        except Exception as exc:
            raise self._translate(exc, "the decision") from exc
        if time.monotonic() - started > self.timeout:
            raise EngineTimeout(f"OPA server answered after the {self.timeout}s timeout")
        if not isinstance(body, dict):
            raise EngineError(
                "OPA server returned a non-object body", reason="malformed_policy_output"
            )
        return body.get("result")

    def evaluate(self, policy_input: Mapping[str, Any]) -> dict[str, Any]:
        raw = self.evaluate_raw(policy_input)
        if raw is None:
            raise EngineError(
                "the policy decision is undefined on the OPA server", reason="undefined_decision"
            )
        return check_policy_output(raw, policy_input, self._never_release)

    def close(self) -> None:
        client: OpaClient | None = getattr(self._local, "client", None)
        if client is not None:
            client.close_connection()
        self._local = threading.local()
