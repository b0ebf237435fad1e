"""``gatekeeper report enforcement | disclosures | activity``.

gatekeeper report enforcement --from 2026-01-01 --to 2026-12-31 --format all --out board-2026/
gatekeeper report disclosures --student S010 --out record-S010.html
gatekeeper report activity --format json > activity.json
gatekeeper report activity --signatures all --workers 2 --format csv --out reports/

Each report is produced from the latest signed checkpoint after verifying the
log (signatures sampled unless ``--signatures all``). Exit status 0 when the
report was written and the log verified; 1 when the log did not verify (the
report is still written, and says so) or the report could not be made.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gatekeeper.config import load_settings

__all__ = ["add_commands"]


def _options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--from",
        dest="start",
        default=None,
        metavar="DATE",
        help="first day of the period (YYYY-MM-DD, district time zone, inclusive)",
    )
    options.add_argument(
        "--to",
        dest="end",
        default=None,
        metavar="DATE",
        help="last day of the period (inclusive); default: open",
    )
    options.add_argument(
        "--format",
        dest="fmt",
        choices=("html", "csv", "json", "all"),
        default="html",
        help="output format (default html); 'all' writes the three into --out DIR",
    )
    options.add_argument(
        "--out",
        default=None,
        metavar="DIR-or-FILE",
        help="a file, or a directory for <report>.<format>; default: standard output",
    )
    options.add_argument(
        "--signatures",
        choices=("sample", "all"),
        default="sample",
        help="entry signatures the verifier checks: a 1%% sample (default) or all",
    )
    options.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes checking signatures with --signatures all",
    )
    options.add_argument(
        "--vkey",
        action="append",
        default=[],
        help="a verifier key kept outside the data directory, trusted instead of its "
        "keyring (repeat for rotated keys)",
    )
    return options


def _cmd_report(args: argparse.Namespace) -> int:
    from gatekeeper import open_audit_log
    from gatekeeper.reports import (
        AgencyCatalog,
        Period,
        ReportError,
        Snapshot,
        activity_report,
        disclosure_record,
        enforcement_report,
        render,
        write_report,
    )

    if args.fmt == "all" and args.out is None:
        raise ReportError("--format all writes three files: give --out DIR")
    if args.workers < 1:
        raise ReportError("--workers must be at least 1")
    settings = load_settings(
        args.config,
        data_dir=args.data_dir,
        timezone=args.timezone,
        policy_dir=args.policy_dir,
    )
    if settings.audit_url is None and not (settings.data_dir / "audit.sqlite").exists():
        # Opening would create a new log and key: a report only reads.
        raise ReportError(f"no audit log in {settings.data_dir}")
    period = Period.parse(args.start, args.end, timezone=settings.timezone)
    catalog = AgencyCatalog.load(settings.policy_dir) if args.kind == "enforcement" else None
    with open_audit_log(settings) as log:
        snapshot = Snapshot.take(
            log, signatures=args.signatures, workers=args.workers, vkeys=args.vkey or None
        )
        if args.kind == "enforcement":
            report = enforcement_report(snapshot, period=period, catalog=catalog)
        elif args.kind == "disclosures":
            report = disclosure_record(
                snapshot, args.student, period=period, policy_dir=settings.policy_dir
            )
        else:
            report = activity_report(snapshot, period=period)
    p = report.provenance
    if args.out is None:
        sys.stdout.buffer.write(render(report, args.fmt))
        sys.stdout.flush()
    else:
        for path in write_report(report, args.fmt, args.out):
            print(f"wrote {path} ({path.stat().st_size:,} bytes)", file=sys.stderr)
    print(
        f"gatekeeper: {report.kind} report from checkpoint {p.origin} size {p.size} root "
        f"{p.root_base64}: {'log verified' if p.verified else 'LOG DID NOT VERIFY'} "
        f"({p.verification})",
        file=sys.stderr,
    )
    for problem in p.problems:
        print(f"gatekeeper: {problem}", file=sys.stderr)
    return 0 if p.verified else 1


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``report`` and its three subcommands to the ``gatekeeper`` parser."""
    options = _options()
    report = sub.add_parser(
        "report", parents=[common], help="compliance reports (HTML, CSV, JSON)"
    ).add_subparsers(dest="report_command", required=True)
    enforcement = report.add_parser(
        "enforcement",
        parents=[common, options],
        help="de-identified counts of immigration-related requests (board report)",
    )
    enforcement.set_defaults(func=_cmd_report, kind="enforcement")
    disclosures = report.add_parser(
        "disclosures",
        parents=[common, options],
        help="one student's record of requests and disclosures (34 CFR 99.32)",
    )
    disclosures.add_argument("--student", required=True, help="the student's id")
    disclosures.set_defaults(func=_cmd_report, kind="disclosures")
    activity = report.add_parser(
        "activity",
        parents=[common, options],
        help="decisions over time, open escalations, obligations outstanding",
    )
    activity.set_defaults(func=_cmd_report, kind="activity")
