"""Benchmark: the three compliance reports on a 100,000-entry log.

    python3 bench/reports.py                     # 100,000 entries
    python3 bench/reports.py --entries 20000 --keep /tmp/gk-100k

Builds the log quickly but for real: the public cases are decided once
through ``gatekeeper.open`` (embedded engine, SQLite), then their entries are
appended again with variations (timestamps spread over twelve months, fresh
decision and request ids, 5,000 students, half the escalations later decided
again under the same request id) through the store's batch append, each
entry signed with the log's Ed25519 key, each batch a signed checkpoint, and
each decision's obligations in the outbox in the same transaction.

Then, for each report: the snapshot (latest checkpoint + ``verify_log``, 1%
of signatures sampled), the one-pass scan and aggregation, and rendering to
HTML, CSV and JSON; prints the times, the output sizes, and peak memory.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# The public cases are scenarios of their own day (as_of 2026-04-02): replayed
# as such, without the live as_of check (max_as_of_skew; subprocesses inherit it).
os.environ.setdefault("GATEKEEPER_MAX_AS_OF_SKEW", "off")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import gatekeeper  # noqa: E402
from gatekeeper.audit.entry import canonical, timestamp  # noqa: E402
from gatekeeper.audit.log import AuditLog  # noqa: E402
from gatekeeper.audit.note import Checkpoint, sign_checkpoint  # noqa: E402
from gatekeeper.audit.outbox import NewObligation, ObligationRecord  # noqa: E402
from gatekeeper.reports import (  # noqa: E402
    AgencyCatalog,
    Period,
    Report,
    Snapshot,
    activity_report,
    disclosure_record,
    enforcement_report,
    render,
)

BATCH = 5000
STUDENTS = 5000
START = datetime(2025, 12, 1, 8, 0, tzinfo=UTC)
SPAN = timedelta(days=357)


def decide_public_cases(data_dir: Path) -> None:
    cases = [json.loads(line) for line in (REPO / "tests/cases/public.jsonl").open()]
    with gatekeeper.open(data_dir=data_dir) as gk:
        for case in cases:
            gk.decide(case["request"])


def _rows(
    template: list[ObligationRecord], decision_id: str, request_id: str, when: datetime
) -> list[NewObligation]:
    return [
        NewObligation(
            decision_id=decision_id,
            request_id=request_id,
            code=row.code,
            blocking=row.blocking,
            payload=row.payload,
            created_at=when,
            met_by=row.acked_by if row.status == "acknowledged" else None,
        )
        for row in template
    ]


def fill(log: AuditLog, total: int) -> float:
    """Append variations of the public cases' entries until the log holds ``total``."""
    started = time.perf_counter()
    base = log.size()
    templates = [json.loads(s.data) for s in log.store.read_entries(0, base)]
    outbox = log.outbox
    rows = {
        t["decision_id"]: outbox.list_obligations(decision_id=t["decision_id"]) for t in templates
    }
    by_request = {t["request_id"]: t for t in templates}
    signer = log.keys.active_signer()

    def sign(size: int, root: bytes) -> str:
        return sign_checkpoint(Checkpoint(log.origin, size, root), [signer])

    pairs: list[tuple[bytes, bytes]] = []
    ops: list[list[NewObligation]] = []
    wanted = total - base
    rng = random.Random(7)
    i = 0

    def add(template: dict[str, Any], request_id: str, student: str | None, n: int) -> None:
        when = START + SPAN * (n / max(1, wanted))
        value = dict(template)
        decision_id = hashlib.sha256(f"bench-{n}".encode()).hexdigest()[:32]
        value["timestamp"] = timestamp(when)
        value["decision_id"] = decision_id
        value["request_id"] = request_id
        if student is not None and value.get("student"):
            value["student"] = {"id": student}
        data = canonical(value)
        pairs.append((data, signer.sign(data)))
        ops.append(_rows(rows[template["decision_id"]], decision_id, request_id, when))

    while i < wanted:
        template = templates[i % len(templates)]
        request_id = f"{template['request_id']}-{i}"
        student = f"S{rng.randrange(STUDENTS):05d}"
        add(template, request_id, student, i)
        i += 1
        if template["decision"] == "escalate" and i % 2 == 0 and i < wanted:
            # Decided again after review: the permit of A10 (immigration) or A13.
            again = by_request["A10" if template.get("immigration_context") else "A13"]
            add(again, request_id, student, i)
            i += 1
        if len(pairs) >= BATCH or i >= wanted:
            outbox.append_batch(pairs, sign, outbox=ops)
            pairs, ops = [], []
    return time.perf_counter() - started


def timed(what: Callable[[], Report]) -> tuple[Report, float]:
    t0 = time.perf_counter()
    report = what()
    return report, time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--student", default="S00010")
    parser.add_argument("--keep", default=None, help="build the log in this directory and keep it")
    parser.add_argument("--out", default=None, help="write the reports into this directory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(args.keep or tmp)
        decide_public_cases(data_dir)
        with AuditLog.open_sqlite(data_dir) as log:
            took = fill(log, args.entries)
            size = log.size()
            db = (data_dir / "audit.sqlite").stat().st_size
            print(f"log: {size:,} entries ({db / 1e6:,.0f} MB SQLite) built in {took:.1f} s")
            t0 = time.perf_counter()
            snapshot = Snapshot.take(log)
            snap_s = time.perf_counter() - t0
            p = snapshot.provenance
            print(
                f"snapshot: checkpoint size {p.size:,}, verified={p.log_verified} "
                f"({p.verification}) in {snap_s:.2f} s"
            )
            catalog = AgencyCatalog.load()
            year = Period.parse("2026-01-01", "2026-12-31")
            runs: list[tuple[str, Callable[[], Report]]] = [
                ("enforcement", lambda: enforcement_report(snapshot, period=year, catalog=catalog)),
                ("disclosures", lambda: disclosure_record(snapshot, args.student)),
                ("activity", lambda: activity_report(snapshot)),
            ]
            print(
                f"{'report':<12} {'scan+aggregate':>15} {'html':>14} {'csv':>14} "
                f"{'json':>14}  summary"
            )
            for name, build in runs:
                report, scan_s = timed(build)
                cells = []
                for fmt in ("html", "csv", "json"):
                    t0 = time.perf_counter()
                    data = render(report, fmt)
                    cells.append(f"{len(data) / 1024:7.0f} KiB {time.perf_counter() - t0:4.2f}s")
                    if args.out:
                        Path(args.out).mkdir(parents=True, exist_ok=True)
                        (Path(args.out) / f"{name}.{fmt}").write_bytes(data)
                assert report.provenance.verified, report.provenance.problems
                shown = {k: v for k, v in report.summary.items() if k != "statement"}
                print(
                    f"{name:<12} {scan_s:14.2f}s {cells[0]:>14} {cells[1]:>14} "
                    f"{cells[2]:>14}  {shown}"
                )
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"peak RSS of this process: {peak:,.0f} MB (log building included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
