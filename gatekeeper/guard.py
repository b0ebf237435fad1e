"""The Gatekeeper: parse, decide, (audit), answer — failing closed.

    >>> import gatekeeper
    >>> gk = gatekeeper.open(data_dir="/tmp/gk-doctest")
    >>> d = gk.decide({
    ...     "channel": "in_person",
    ...     "requester": {"id": "b1", "kind": "immigration_authority",
    ...                   "agency": "ICE-ERO", "identity_verified": True},
    ...     "purpose": "immigration_enforcement",
    ...     "student": {"id": "S1"}, "fields": ["home_address"]})
    >>> d.decision.value, d.rules[0]
    ('deny', 'IMM-01')

``decide`` never raises because of the request or the engine: a request that
does not validate, an engine that is down, slow or returns something
malformed all give a ``deny`` whose ``reason`` names the failure.
``enforce`` is the raising twin: it returns only a permit. So does a wall
clock that cannot be trusted (``clock_jump``, ``clock_behind_log``: see
``gatekeeper._clock``), checked first on every decision.

A permit with blocking obligations pending (NOTIFY_PARENT_PRE, VERIFY_…) is
held: ``access``/``guard`` raise :class:`ReleaseHeld`. Once every blocking
obligation is acknowledged (``gk.obligations.ack``), ``gk.release(decision_id)``
re-reads the decision's signed entry and its outbox rows and returns a
:class:`Grant`; a deny or an escalate is never released.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gatekeeper._clock import ClockGuard
from gatekeeper._logging import get_logger, raised_at
from gatekeeper.decision import BLOCKING_OBLIGATIONS, Decision
from gatekeeper.engines.base import PolicyEngine
from gatekeeper.errors import GatekeeperError, RequestError
from gatekeeper.redact import Redactor
from gatekeeper.request import DEFAULT_TIMEZONE, AccessRequest, parse_request, was_parsed

if TYPE_CHECKING:
    from gatekeeper.audit.log import AuditLog
    from gatekeeper.audit.outbox import NewObligation
    from gatekeeper.obligations import Obligations

__all__ = ["AccessDenied", "Gatekeeper", "Grant", "ReleaseHeld", "RequestInput"]

_T = TypeVar("_T")

#: Blocking obligations the guard itself meets (by redacting).
_MET_BY_REDACTION = frozenset({"REDACT_OUT_OF_SCOPE"})

#: How long after its decision a held permit can still be released (30 days).
DEFAULT_RELEASE_MAX_AGE = 30 * 24 * 3600.0

#: Clock sanity: how far (s) the wall clock may stray from its anchor or fall
#: behind the log, and how long (s) a new offset must hold to be accepted.
DEFAULT_CLOCK_TOLERANCE = 60.0
DEFAULT_CLOCK_SETTLE = 600.0

RequestInput = AccessRequest | Mapping[str, Any] | str | bytes

_log = get_logger("gatekeeper.guard")


class _Default(enum.Enum):
    """A keyword left to its documented default (read when the Gatekeeper is made)."""

    TOKEN = 0


_DEFAULT = _Default.TOKEN


class AccessDenied(GatekeeperError):
    """Raised by :meth:`Gatekeeper.enforce` for a deny or an escalate."""

    reason = "access_denied"

    def __init__(self, decision: Decision) -> None:
        self.decision = decision
        #: For an invalid request (``decision.reason == "invalid_request"``): what
        #: is wrong with it, the key path in ``error.path``.
        self.error: RequestError | None = None
        rule = decision.rules[0] if decision.rules else decision.reason
        super().__init__(f"{decision.decision} ({rule}); decision {decision.decision_id}")


class ReleaseHeld(AccessDenied):
    """A permit whose blocking obligations (NOTIFY_PARENT_PRE, VERIFY_…) are
    not met yet: nothing may be released until they are acknowledged.

    ``pending`` names them; once they are acknowledged,
    ``gk.release(exc.decision.decision_id)`` returns the Grant.
    """

    reason = "release_held"

    def __init__(self, decision: Decision, *, pending: Sequence[str] | None = None) -> None:
        super().__init__(decision)
        self.pending: tuple[str, ...] = (
            tuple(pending) if pending is not None else decision.blocking_obligations
        )
        self.args = (f"{self.args[0]}; held for {', '.join(self.pending) or 'review'}",)


class Grant:
    """A permit in hand: redacts what the lookup returns to the allowed fields."""

    def __init__(self, decision: Decision, redactor: Redactor) -> None:
        self.decision = decision
        self._redactor = redactor

    def redact(self, result: Any) -> Any:
        """A record (mapping) or a bulk result (sequence of mappings), redacted."""
        allowed = self.decision.allowed_fields
        if isinstance(result, Mapping):
            return self._redactor.redact(result, allowed)
        if isinstance(result, Sequence) and not isinstance(result, str | bytes):
            return self._redactor.redact_many(
                [r for r in result if isinstance(r, Mapping)], allowed
            )
        raise TypeError("a guarded lookup must return a mapping or a sequence of mappings")


_P = ParamSpec("_P")


def _request_id_of(request: RequestInput) -> str | None:
    if isinstance(request, Mapping):
        rid = request.get("request_id")
        if isinstance(rid, str) and len(rid) <= 256:
            return rid
    return None


class Gatekeeper:
    """Decides AccessRequests with a policy engine; the recipe layer of gatekeeper.

    Use :func:`gatekeeper.open` for the defaults; construct it directly to
    inject an engine.
    """

    def __init__(
        self,
        *,
        engine: PolicyEngine,
        audit: AuditLog | None = None,
        timezone: str = DEFAULT_TIMEZONE,
        allow_unaudited: bool = False,
        max_as_of_skew: float | _Default | None = _DEFAULT,
        blocking_obligations: Iterable[str] | None = None,
        release_max_age: float | None = DEFAULT_RELEASE_MAX_AGE,
        clock_tolerance: float | None = DEFAULT_CLOCK_TOLERANCE,
        clock_settle: float = DEFAULT_CLOCK_SETTLE,
        keep_policy_input: bool = True,
    ) -> None:
        try:
            self._zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise GatekeeperError(f"unknown time zone {timezone!r}", reason="config") from exc
        self.engine = engine
        self.audit = audit
        #: Without an audit log, decisions are made but a permit becomes a
        #: deny (``audit_unavailable``) unless this is set (tests, benchmarks).
        self.allow_unaudited = allow_unaudited
        #: When set, a request whose ``as_of`` is further than this many seconds
        #: from now is decided as of now (the claim kept in its entry): a
        #: backdated request cannot revive a revoked consent or an expired
        #: warrant. (Replays do not use decide.)
        from gatekeeper.config import as_of_skew, default_max_as_of_skew

        self.max_as_of_skew: float | None = (
            default_max_as_of_skew()
            if isinstance(max_as_of_skew, _Default)
            else as_of_skew(max_as_of_skew, text=False)  # False: off, as in the settings
        )
        self.timezone = timezone
        if blocking_obligations is None:
            pack = getattr(engine, "pack", None)
            from gatekeeper.obligations._payload import blocking_codes

            blocking_obligations = (
                blocking_codes(pack.data) if pack is not None else BLOCKING_OBLIGATIONS
            )
        #: Obligation codes (⛔) that hold a release until acknowledged: the
        #: pack's ``catalog.blocking_obligations``, else those of RULES.md.
        self.blocking_obligations = frozenset(blocking_obligations)
        #: A held permit can be released this many seconds after its decision (None: always).
        self.release_max_age = release_max_age
        #: Clock sanity (``gatekeeper._clock``): a wall clock that jumped more than
        #: ``clock_tolerance`` seconds from its monotonic anchor (``clock_jump``),
        #: or is that far behind the log's latest entry (``clock_behind_log``),
        #: denies every decision; None: no check.
        self.clock: ClockGuard | None = (
            None
            if clock_tolerance is None
            else ClockGuard(tolerance=clock_tolerance, settle=clock_settle)
        )
        #: Keep each decision's policy input in its entry (policy replay);
        #: False: the entry holds the request's summaries only (least data).
        self.keep_policy_input = keep_policy_input
        self._obligations: Obligations | None = None

    @property
    def policy_revision(self) -> str:
        return self.engine.revision

    def parse(self, request: RequestInput) -> AccessRequest:
        """Parse and validate a request (raises RequestError)."""
        return self._parse(request)

    def _parse(self, request: RequestInput) -> AccessRequest:
        if isinstance(request, AccessRequest) and was_parsed(request):
            # parse_request made it (gk.access, the proxy, a caller that
            # parsed first): it is valid and immutable; no second parse.
            parsed = request
        elif isinstance(request, AccessRequest):
            # A typed request is checked like any other: the dataclasses do
            # not validate themselves, and a wrong type must not reach Rego.
            try:
                parsed = parse_request(request.to_dict())
            except RequestError:
                raise
            except Exception as exc:
                raise RequestError("", f"malformed AccessRequest object: {exc}") from exc
        else:
            parsed = parse_request(request)
        return parsed

    def _as_of_now(self, parsed: AccessRequest) -> tuple[AccessRequest, datetime | None]:
        """The request to decide, and the ``as_of`` it claimed if that was set
        aside: one further than ``max_as_of_skew`` from the clock is a claim,
        not evidence (a backdated request would revive an expired warrant), so
        the request is decided as of now and the claim goes into its entry."""
        if self.max_as_of_skew is None:
            return parsed, None
        now = datetime.now(UTC)
        skew = (parsed.as_of - now).total_seconds()
        if abs(skew) <= self.max_as_of_skew:
            return parsed, None
        _log.warning(
            "as_of_set_aside",
            request_id=parsed.request_id,
            skew_s=round(skew),
            max_as_of_skew=self.max_as_of_skew,
        )
        return dataclasses.replace(parsed, as_of=now), parsed.as_of

    def _fail_closed(self, request_id: str | None, reason: str) -> Decision:
        return Decision.fail_closed(
            request_id=request_id,
            reason=reason,
            policy_revision=self.engine.revision,
            engine=self.engine.name,
        )

    def decide(self, request: RequestInput) -> Decision:
        """Decide one request and write its signed audit entry before returning.

        Never raises on deny; every failure is a deny. With an audit log, a
        decision is returned only after its entry is durable; when the entry
        cannot be written the answer is a deny (``audit_unavailable``...),
        never a permit.
        """
        from gatekeeper.audit.entry import decision_entry, invalid_request_entry

        started = time.perf_counter()
        # The clock first: while it cannot be trusted, as_of cannot be checked
        # against it, and every decision is a deny naming the clock fault.
        clock_fault, wall = self._clock_check()
        try:
            parsed = self._parse(request)
        except RequestError as exc:
            # The caller gets str(exc); logs and the entry get it without the
            # request values it quotes (docs/security.md: no values in logs).
            _log.warning("request_invalid", path=exc.loggable_path, error=exc.loggable)
            denial = self._fail_closed(_request_id_of(request), clock_fault or exc.reason)
            raw = (
                request
                if isinstance(request, bytes)
                else (request.encode("utf-8", "replace") if isinstance(request, str) else None)
            )
            path, message = exc.loggable_path, exc.loggable
            return self._audited(
                denial,
                lambda: invalid_request_entry(denial, path=path, message=message, raw=raw),
                keep_reason=True,
            )
        policy_input: dict[str, Any] | None = None
        if clock_fault is not None:
            _log.warning("fail_closed", reason=clock_fault, request_id=parsed.request_id)
            clock_denial = self._fail_closed(parsed.request_id, clock_fault)
            return self._audited(clock_denial, lambda: decision_entry(clock_denial, parsed, None))
        parsed, as_of_claimed = self._as_of_now(parsed)
        try:
            policy_input = parsed.to_policy_input(self._zone)
            raw_decision = self.engine.evaluate(policy_input)
            decision = Decision.from_policy(
                raw_decision,
                request_id=parsed.request_id,
                policy_revision=self.engine.revision,
                engine=self.engine.name,
            )
        except GatekeeperError as exc:
            _log.warning(
                "fail_closed",
                reason=exc.reason,
                error=str(exc),
                engine=self.engine.name,
                request_id=parsed.request_id,
            )
            decision = self._fail_closed(parsed.request_id, exc.reason)
        except Exception as exc:  # a bug must deny, never allow
            _log.error(
                "fail_closed",
                reason="internal_error",
                # The type and where it was raised, not its message: an
                # exception's text can carry the values it was handed.
                error=raised_at(exc),
                engine=self.engine.name,
                request_id=parsed.request_id,
            )
            decision = self._fail_closed(parsed.request_id, "internal_error")
        final = self._audited(
            decision,
            lambda: decision_entry(
                decision,
                parsed,
                policy_input if self.keep_policy_input else None,
                held_for=self._held_for(decision, parsed),
                as_of_claimed=as_of_claimed,
            ),
            obligations=lambda: self._outbox_rows(decision, parsed),
        )
        if self.clock is not None and final.audit is not None:
            self.clock.observe(wall)
        _log.debug(
            "decided",
            decision=str(final.decision),
            rules=list(final.rules),
            engine=final.engine,
            decision_id=final.decision_id,
            ms=round((time.perf_counter() - started) * 1000, 3),
        )
        return final

    def _clock_check(self) -> tuple[str | None, float]:
        """(the clock fault or None, the wall clock read); cheap: two clock reads."""
        if self.clock is None:
            return None, 0.0
        floor = self.audit.time_floor() if self.audit is not None else 0.0
        return self.clock.read(floor)

    def _outbox_rows(self, decision: Decision, parsed: AccessRequest) -> list[NewObligation]:
        from gatekeeper.audit.entry import AuditError
        from gatekeeper.obligations._payload import outbox_rows

        try:
            return outbox_rows(decision, parsed, self.blocking_obligations)
        except Exception as exc:  # no outbox rows, no entry: a deny
            raise AuditError(
                f"cannot build the obligations outbox rows: {exc!r}",
                reason="obligation_outbox_invalid",
            ) from exc

    def _audited(
        self,
        decision: Decision,
        entry: Any,
        *,
        keep_reason: bool = False,
        obligations: Callable[[], Sequence[NewObligation]] | None = None,
    ) -> Decision:
        """Write the decision's entry (and its obligations, in the same transaction);
        on failure, a deny that discloses nothing."""
        if self.audit is None:
            if decision.permitted and not self.allow_unaudited:
                return dataclasses.replace(
                    self._fail_closed(decision.request_id, "audit_unavailable"),
                    decision_id=decision.decision_id,
                    denied_fields=decision.denied_fields + decision.allowed_fields,
                )
            return decision
        try:
            rows = obligations() if obligations is not None and decision.obligations else ()
            receipt = self.audit.append(entry(), obligations=rows)
        except GatekeeperError as exc:
            _log.error(
                "audit_failed", reason=exc.reason, error=str(exc), decision_id=decision.decision_id
            )
            if keep_reason and decision.reason is not None:
                return decision
            return dataclasses.replace(
                self._fail_closed(decision.request_id, exc.reason),
                decision_id=decision.decision_id,
                denied_fields=decision.denied_fields + decision.allowed_fields,
            )
        return dataclasses.replace(decision, audit=receipt.to_dict())

    def enforce(self, request: RequestInput) -> Decision:
        """Decide and return the decision only if it is a permit; raise AccessDenied otherwise."""
        decision = self.decide(request)
        if not decision.permitted:
            raise AccessDenied(decision)
        return decision

    def invalid_request(self, request: RequestInput, error: RequestError) -> AccessDenied:
        """The AccessDenied to raise for a request that does not parse: its deny
        entry is written (``decide``), and the caller learns what to fix:
        ``error`` (its own request, in full); the message quotes no request
        value, as it may end up in a log."""
        invalid = AccessDenied(self.decide(request))
        invalid.error = error
        invalid.args = (f"{invalid.args[0]}: {error.loggable}",)
        return invalid

    @contextmanager
    def access(self, request: RequestInput, *, redactor: Redactor | None = None) -> Iterator[Grant]:
        """Decide first; inside the block, fetch and pass the result through ``grant.redact``.

            with gk.access(request) as grant:
                record = grant.redact(sis.lookup(student_id))

        Raises AccessDenied (deny, escalate) or ReleaseHeld (a permit whose
        blocking obligations are pending, or a bulk permit: which students a
        bulk basis covers is for the SIS to scope, not for field redaction)
        before the block runs.
        """
        try:
            parsed = self.parse(request) if not isinstance(request, AccessRequest) else request
        except RequestError as error:
            raise self.invalid_request(request, error) from None
        decision = self.enforce(parsed)
        pending = self._held_for(decision, parsed)
        if pending:
            raise ReleaseHeld(decision, pending=pending)
        yield Grant(decision, redactor or Redactor())

    def _held_for(self, decision: Decision, parsed: AccessRequest) -> list[str]:
        """The obligations that hold a permit's release until acknowledged."""
        if not decision.permitted:
            return []
        blocking = [o for o in decision.obligations if o in self.blocking_obligations]
        pending = [o for o in blocking if o not in _MET_BY_REDACTION]
        if parsed.bulk is not None and "REDACT_OUT_OF_SCOPE" in decision.obligations:
            # Field redaction cannot tell which students a bulk basis covers
            # (per-student opt-outs, homeless flags): the caller's SIS must
            # scope the rows, so the guard does not release bulk results.
            pending.append("REDACT_OUT_OF_SCOPE")
        return pending

    @property
    def obligations(self) -> Obligations:
        """The outbox of this Gatekeeper's audit log: ``list``, ``get``, ``ack``."""
        if self._obligations is None:
            if self.audit is None:
                raise GatekeeperError(
                    "no audit log: there is no obligations outbox", reason="audit_unavailable"
                )
            from gatekeeper.obligations import Obligations

            self._obligations = Obligations(self.audit, blocking=self.blocking_obligations)
        return self._obligations

    def release(self, decision_id: str, *, redactor: Redactor | None = None) -> Grant:
        """The Grant of a held permit whose blocking obligations are all acknowledged.

            try:
                with gk.access(request) as grant: ...
            except ReleaseHeld as held:
                ...                                  # notify, verify; then someone runs
                                                     # `gatekeeper obligations ack ID`
            grant = gk.release(held.decision.decision_id)
            record = grant.redact(sis.lookup(student_id))

        The decision is read back from its signed audit entry and every
        blocking obligation must be acknowledged in the outbox AND by a signed
        ``obligation_ack`` entry: nothing the caller passes is trusted. Raises
        AccessDenied for a deny or an escalate (never released this way) or a
        permit older than ``release_max_age``, ReleaseHeld while an obligation
        is open, ObligationError for an unknown decision.
        """
        limit = self.release_max_age
        max_age = None if limit is None else timedelta(seconds=limit)
        check = self.obligations.release_check(decision_id, max_age=max_age)
        if not check.decision.permitted:
            raise AccessDenied(check.decision)
        if check.expired:
            expired = AccessDenied(check.decision)
            expired.reason = "release_expired"
            expired.args = (
                f"decision {decision_id} is older than release_max_age "
                f"({self.release_max_age:g} s): decide the request again",
            )
            raise expired
        if check.open:
            raise ReleaseHeld(check.decision, pending=check.open)
        # The release is a disclosure of its own (the decision's entry was held):
        # it is logged, durably, before the Grant leaves; if it cannot be, nothing does.
        from gatekeeper.audit.entry import AuditError
        from gatekeeper.obligations._payload import release_entry

        assert self.audit is not None  # release_check read the decision from it
        try:
            receipt = self.audit.append(release_entry(check.decision, when=datetime.now(UTC)))
        except AuditError as exc:
            unlogged = AccessDenied(check.decision)
            unlogged.reason = exc.reason or "audit_unavailable"
            unlogged.args = (
                f"decision {decision_id}: the release could not be logged ({exc}); "
                "nothing is released",
            )
            raise unlogged from exc
        _log.info("released", decision_id=decision_id, entry=receipt.index)
        return Grant(check.decision, redactor or Redactor())

    def guard(
        self,
        request: Callable[_P, RequestInput],
        *,
        redactor: Redactor | None = None,
    ) -> Callable[[Callable[_P, _T]], Callable[_P, Any]]:
        """Decorate a lookup: decide from ``request(*args)`` before it runs.

            @gk.guard(lambda student_id, user: make_request(student_id, user))
            def lookup(student_id, user): ...

        The lookup runs only on a permit; its result comes back redacted.
        """

        def decorate(lookup: Callable[_P, _T]) -> Callable[_P, Any]:
            @wraps(lookup)
            def guarded(*args: _P.args, **kwargs: _P.kwargs) -> Any:
                with self.access(request(*args, **kwargs), redactor=redactor) as grant:
                    return grant.redact(lookup(*args, **kwargs))

            return guarded

        return decorate

    def close(self) -> None:
        self.engine.close()
        if self.audit is not None:
            self.audit.close()

    def __enter__(self) -> Gatekeeper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
