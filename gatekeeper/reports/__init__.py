"""Compliance reports from the signed audit log: HTML, CSV and JSON.

    >>> import gatekeeper, tempfile
    >>> from gatekeeper.reports import Period, Snapshot, activity_report, render
    >>> gk = gatekeeper.open(data_dir=tempfile.mkdtemp())
    >>> _ = gk.decide({
    ...     "request_id": "R1", "channel": "phone",
    ...     "requester": {"id": "badge 7", "kind": "immigration_authority",
    ...                   "agency": "ICE-ERO", "identity_verified": True},
    ...     "purpose": "immigration_enforcement", "student": {"id": "S1", "age": 9},
    ...     "fields": ["enrollment_status"]})
    >>> snapshot = Snapshot.take(gk.audit)          # latest checkpoint, verified
    >>> report = activity_report(snapshot, period=Period())
    >>> report.provenance.size, report.provenance.verified, report.summary["deny"]
    (1, True, 1)
    >>> render(report, "html")[:15]
    b'<!DOCTYPE html>'

Three reports (``gatekeeper report enforcement|disclosures|activity``):

- :func:`enforcement_report`: de-identified counts of immigration-related
  requests (board report, Ed. Code 234.7; the public yearly figure);
- :func:`disclosure_record`: one student's record of requests and
  disclosures (34 CFR 99.32), never a sealed entry, printable for a parent;
- :func:`activity_report`: every decision by type, requester kind and rule
  over time; escalations still open; obligations still owed.

Each is produced from one signed checkpoint (:meth:`Snapshot.take`, which
runs the verifier, signatures sampled by default) and counts entries up to
its size only, streaming them once in chunks and re-hashing them against the
checkpoint's root; each states that checkpoint and the verdict. HTML needs
the ``reports`` extra (matplotlib, jinja2); CSV and JSON need nothing.
"""

from __future__ import annotations

from pathlib import Path

from gatekeeper.reports._activity import ActivityAggregator
from gatekeeper.reports._disclosures import DisclosureAggregator
from gatekeeper.reports._enforcement import AgencyCatalog, EnforcementAggregator
from gatekeeper.reports._model import Chart, Period, Provenance, Report, ReportError, Table
from gatekeeper.reports._outstanding import outstanding_obligations
from gatekeeper.reports._render import (
    FORMATS,
    render,
    render_csv,
    render_html,
    render_json,
    write_report,
)
from gatekeeper.reports._source import Snapshot

__all__ = [
    "FORMATS",
    "AgencyCatalog",
    "Chart",
    "Period",
    "Provenance",
    "Report",
    "ReportError",
    "Snapshot",
    "Table",
    "activity_report",
    "disclosure_record",
    "enforcement_report",
    "render",
    "render_csv",
    "render_html",
    "render_json",
    "write_report",
]


def enforcement_report(
    snapshot: Snapshot,
    *,
    period: Period | None = None,
    catalog: AgencyCatalog | None = None,
) -> Report:
    """Immigration-related requests in ``period``: counts by agency, document,
    channel, requester kind, decision and rule, per month; the headline figures.

    ``catalog``: the agency codes the report may name (default: the policy
    pack's). See :mod:`gatekeeper.reports._enforcement` for what counts.
    """
    chosen = period or Period()
    aggregator = EnforcementAggregator(chosen, catalog or AgencyCatalog.load())
    result = snapshot.scan([aggregator], chosen.zone)
    return aggregator.report(snapshot.checked(result))


def disclosure_record(
    snapshot: Snapshot,
    student_id: str,
    *,
    period: Period | None = None,
    policy_dir: str | Path | None = None,
) -> Report:
    """The parent-visible record of requests and disclosures for one student
    (entries with ``LOG_9932``/``LOG_9932_EMERG``; never ``SEALED_LOG``).

    ``policy_dir``: the pack whose catalog names the blocking obligations
    (a permit they held is a disclosure only once released; default: the
    configured pack)."""
    if not student_id:
        raise ReportError("a student id is required for a record of disclosures")
    from gatekeeper.config import default_policy_dir
    from gatekeeper.engines import load_pack
    from gatekeeper.obligations._payload import blocking_codes

    chosen = period or Period()
    blocking = blocking_codes(load_pack(policy_dir or default_policy_dir()).data)
    aggregator = DisclosureAggregator(student_id, chosen, blocking)
    result = snapshot.scan([aggregator], chosen.zone)
    return aggregator.report(snapshot.checked(result))


def activity_report(snapshot: Snapshot, *, period: Period | None = None) -> Report:
    """Decisions by type, requester kind and rule over time; open escalations;
    obligations outstanding (read-only from the outbox, when the store keeps one)."""
    chosen = period or Period()
    aggregator = ActivityAggregator(chosen)
    result = snapshot.scan([aggregator], chosen.zone)
    provenance = snapshot.checked(result)
    owed = outstanding_obligations(snapshot.log, provenance.size)
    return aggregator.report(provenance, owed)
