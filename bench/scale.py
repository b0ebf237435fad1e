"""Benchmark: an audit log of 10,000,000 entries: append rate, storage, verify, proofs.

    python3 bench/scale.py                                   # 10,000,000 entries in ../scale-data
    python3 bench/scale.py --entries 5000 --dir /tmp/scale   # a quick one
    nohup python3 bench/scale.py > scale-10M.txt 2>&1 &      # the long run

Builds (or continues: the run is resumable) a SQLite audit log of N entries
in ``--dir`` (default ``<repo>/../scale-data``, never inside the repository),
then measures it.

The entries are the real ones: the public cases (tests/cases/public.jsonl)
are decided once through ``gatekeeper.open`` (embedded engine, SQLite), and
their 32 decision entries are the templates. Entry *n* is template
``n mod 32`` with a fresh ``decision_id``, ``request_id`` ``<case>-<n>``,
one of 5,000 students (wherever the case's student id appears, the policy
input included) and a timestamp 3 s after entry *n - 1*: the same keys, the
same sizes (1.7-2.5 KB, 2.0 KB on average), RFC 8785 bytes. (The canonical
bytes of each template are computed once, with markers where the varying
strings go, and the markers are replaced: the values are plain ASCII, so the
result is the canonical JSON of the varied object; ``audit verify`` checks
that of every entry.) Each entry is signed with the log's Ed25519 key, and
appended through the store's real batch path (``SqliteStore.append_batch``:
stored RFC 6962 hashes, a signed C2SP checkpoint per batch, one WAL
transaction with ``synchronous=FULL``), ``--batch`` entries per transaction
(default 512, the writer's ``MAX_BATCH``). The obligations outbox is left
out by default (``--outbox`` writes each decision's rows in its batch's
transaction, as the real log does).

Concurrent callers group-commit about 16 entries per transaction, and each
transaction stores a checkpoint: this build stores N / ``--batch`` of them,
a real log N / 16; the checkpoint storage and the per-checkpoint verify cost
are measured and projected to that count.

Reports:

- append rate (entries/s) over the build, per progress interval and overall,
  against the baseline measured in the same run: one Ed25519 signature plus
  one SHA-256 per entry on one core, over the same entries (ratio);
- storage per entry: file size / entries, split with SQLite's ``dbstat``
  into entries, hashes, checkpoints, indexes (and the checkpoints per
  checkpoint);
- ``audit verify`` (``verify_log`` as the CLI calls it, in a forked child):
  time, rate, CPU and peak RSS with 1% of the signatures sampled, and with
  every signature checked by 2 worker processes;
- inclusion proofs (hashes, bytes, median and p99 time over 1,000 random
  indexes; checking one), consistency proofs (1,000 random old sizes), the
  root at an old size, reading and opening the latest checkpoint, reading
  all checkpoints, and verifying one checkpoint against the one before it.

Load averages (``/proc/loadavg``) are printed at the start and the end: the
figures of a shared machine are noisy. Before and during the build, the
free space is checked: when the projected size exceeds the free space
minus ``--min-free-gb`` (default 20 GB), the build stops (exit 3).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

# The public cases are scenarios of their own day (as_of 2026-04-02): replayed
# as such, without the live as_of check (max_as_of_skew; subprocesses inherit it).
os.environ.setdefault("GATEKEEPER_MAX_AS_OF_SKEW", "off")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

import gatekeeper  # noqa: E402
from bench._stats import loadavg, say  # noqa: E402
from gatekeeper.audit import merkle  # noqa: E402
from gatekeeper.audit.entry import canonical, timestamp  # noqa: E402
from gatekeeper.audit.log import MAX_BATCH, AuditLog  # noqa: E402
from gatekeeper.audit.note import Checkpoint, Verifier, open_checkpoint, sign_checkpoint  # noqa: E402
from gatekeeper.audit.outbox import NewObligation, ObligationRecord  # noqa: E402
from gatekeeper.audit.verify import verify_log  # noqa: E402

STUDENTS = 5000
START = datetime(2025, 9, 1, 7, 0, tzinfo=UTC)
STEP = timedelta(seconds=3)  # 10,000,000 entries span 347 days
GROUP_COMMIT = 16  # entries per transaction from concurrent callers (bench/audit.py)
GB = 1e9
_T = TypeVar("_T")


def pct(xs: list[float], q: float) -> float:
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def timed_us(fn: Callable[[], object]) -> float:
    return timed(fn)[0]


def timed(fn: Callable[[], _T]) -> tuple[float, _T]:
    """(microseconds, result) of one call."""
    t0 = time.perf_counter_ns()
    result = fn()
    return (time.perf_counter_ns() - t0) / 1000, result


# -- the entries ----------------------------------------------------------------------

_MARK = {"request": "@@GK-REQ@@", "student": "@@GK-STU@@", "decision": "@@GK-DID@@",
         "time": "@@GK-TS@@"}  # fmt: skip
_MARKS = re.compile(b"(" + b"|".join(re.escape(m.encode()) for m in _MARK.values()) + b")")


class Template:
    """One decided case's entry: its canonical bytes split at the varying strings."""

    def __init__(self, value: dict[str, Any], rows: list[ObligationRecord]) -> None:
        self.value = value
        self.rows = rows
        request_id = value["request_id"]
        student = value.get("student") or {}
        student_id = student.get("id") if isinstance(student, dict) else None

        def mark(node: Any) -> Any:
            if isinstance(node, dict):
                return {k: mark(v) for k, v in node.items()}
            if isinstance(node, list):
                return [mark(v) for v in node]
            if node == request_id:
                return _MARK["request"]
            if student_id is not None and node == student_id:
                return _MARK["student"]
            return node

        marked = mark(value)
        marked["decision_id"] = _MARK["decision"]
        marked["timestamp"] = _MARK["time"]
        self.parts = _MARKS.split(canonical(marked))
        self.request_id = request_id

    def render(self, n: int, origin_tag: str) -> tuple[bytes, dict[str, str]]:
        """Entry ``n``'s bytes and its varying values."""
        values = {
            _MARK["request"]: f"{self.request_id}-{n}",
            _MARK["student"]: f"S{(n * 7919 + 13) % STUDENTS:05d}",
            _MARK["decision"]: hashlib.sha256(f"{origin_tag}/{n}".encode()).hexdigest()[:32],
            _MARK["time"]: timestamp(START + STEP * n),
        }
        data = b"".join(
            values[p.decode()].encode() if i % 2 else p for i, p in enumerate(self.parts)
        )
        return data, values


def public_requests() -> list[dict[str, Any]]:
    cases = [json.loads(line) for line in (REPO / "tests/cases/public.jsonl").open()]
    return [case["request"] for case in cases]


def ensure_templates(data_dir: Path) -> None:
    """A new data directory: decide the public cases (the first entries, the templates)."""
    with gatekeeper.open(data_dir=data_dir) as gk:
        for request in public_requests():
            gk.decide(request)


def load_templates(log: AuditLog) -> list[Template]:
    """The public cases' decision entries at the head of the log."""
    ids = {r.get("request_id") for r in public_requests()}
    head = log.store.read_entries(0, min(log.size(), len(ids)))
    values = [json.loads(e.data) for e in head]
    values = [v for v in values if v.get("kind") == "decision" and v.get("request_id") in ids]
    if not values:
        raise SystemExit("the log's first entries are not decisions: not a scale.py data dir")
    outbox = log.outbox
    return [Template(v, outbox.list_obligations(decision_id=v["decision_id"])) for v in values]


def baseline_per_entry(samples: list[bytes], rounds: int = 5) -> float:
    """Median over ``rounds`` of the time per entry of one Ed25519 signature + one SHA-256."""
    signer_key = Ed25519PrivateKey.generate()
    runs = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for data in samples:
            signer_key.sign(data)
            hashlib.sha256(b"\x00" + data).digest()
        runs.append((time.perf_counter() - t0) / len(samples))
    return statistics.median(runs)


# -- building -------------------------------------------------------------------------


def db_bytes(db_path: Path) -> int:
    total = 0
    for suffix in ("", "-wal", "-shm"):
        p = Path(f"{db_path}{suffix}")
        if p.exists():
            total += p.stat().st_size
    return total


def build(
    log: AuditLog,
    templates: list[Template],
    target: int,
    *,
    batch: int,
    progress: int,
    outbox: bool,
    min_free: float,
    db_path: Path,
) -> tuple[int, float, float, float] | None:
    """Append until the log holds ``target`` entries.

    Returns (appended, seconds, seconds rendering + signing entries, seconds in
    append_batch), or None when the disk would fill up.
    """
    signer = log.keys.active_signer()
    origin = log.origin
    tag = hashlib.sha256(origin.encode()).hexdigest()[:8]
    store = log.outbox if outbox else log.store

    def sign(size: int, root: bytes) -> str:
        return sign_checkpoint(Checkpoint(origin, size, root), [signer])

    first = log.size()
    n = first
    started = time.perf_counter()
    t_sign = t_store = 0.0
    mark_n, mark_t = n, started
    next_report = (n // progress + 1) * progress
    per_entry = 2600.0  # bytes, until measured
    free_dir = db_path.parent

    def room_for(remaining: int) -> bool:
        free = shutil.disk_usage(free_dir).free
        need = remaining * per_entry
        if need > free - min_free:
            say(
                f"STOP: {remaining:,} more entries need ~{need / GB:.1f} GB "
                f"({per_entry:,.0f} B/entry) but {free / GB:.1f} GB are free and "
                f"{min_free / GB:.0f} GB must stay free; rerun to continue from {n:,}"
            )
            return False
        return True

    if not room_for(target - n):
        return None
    while n < target:
        count = min(batch, target - n)
        t0 = time.perf_counter()
        pairs: list[tuple[bytes, bytes]] = []
        ops: list[list[NewObligation]] = []
        for i in range(n, n + count):
            template = templates[i % len(templates)]
            data, values = template.render(i, tag)
            pairs.append((data, signer.sign(data)))
            if outbox:
                when = START + STEP * i
                ops.append(
                    [
                        NewObligation(
                            decision_id=values[_MARK["decision"]],
                            request_id=values[_MARK["request"]],
                            code=row.code,
                            blocking=row.blocking,
                            payload=row.payload,
                            created_at=when,
                            met_by=row.acked_by if row.status == "acknowledged" else None,
                        )
                        for row in template.rows
                    ]
                )
        t1 = time.perf_counter()
        if outbox:
            store.append_batch(pairs, sign, outbox=ops)  # type: ignore[call-arg]
        else:
            store.append_batch(pairs, sign)
        t2 = time.perf_counter()
        t_sign += t1 - t0
        t_store += t2 - t1
        n += count
        if n >= next_report or n >= target:
            now = time.perf_counter()
            size_now = db_bytes(db_path)
            if n > 50_000:
                per_entry = size_now / n
            say(
                f"build: {n:>12,} entries  {(n - mark_n) / (now - mark_t):8,.0f} entries/s "
                f"(interval)  {(n - first) / (now - started):8,.0f} entries/s (this run)  "
                f"{now - started:7.0f} s  {size_now / GB:6.2f} GB ({size_now / n:,.0f} B/entry)"
                f"  load {loadavg()}"
            )
            mark_n, mark_t = n, now
            next_report = (n // progress + 1) * progress
            if n < target and not room_for(target - n):
                return None
    return n - first, time.perf_counter() - started, t_sign, t_store


# -- measuring ------------------------------------------------------------------------


def storage(db_path: Path, size: int, checkpoints: int, use_dbstat: bool) -> None:
    db = sqlite3.connect(db_path, isolation_level=None)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = db.execute("PRAGMA page_size").fetchone()[0]
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        file_size = db_path.stat().st_size
        say(
            f"storage: {file_size / GB:.2f} GB SQLite file ({pages:,} pages of {page} B, "
            f"{free:,} free) for {size:,} entries = {file_size / size:,.0f} B/entry"
        )
        if not use_dbstat:
            return
        try:
            t0 = time.perf_counter()
            rows = db.execute(
                "SELECT name, SUM(pgsize), SUM(payload), SUM(ncell) FROM dbstat GROUP BY name"
            ).fetchall()
            took = time.perf_counter() - t0
        except sqlite3.Error as exc:
            say(f"storage: no dbstat ({exc})")
            return
        kinds = dict(db.execute("SELECT name, type FROM sqlite_schema").fetchall())
        groups: dict[str, list[int]] = {}
        for name, pgsize, payload, _cells in rows:
            kind = kinds.get(name, "table" if name == "sqlite_schema" else "index")
            if name in ("entries", "hashes", "checkpoints"):
                group = name
            elif kind == "index":
                group = "indexes"
            elif name.startswith("obligation"):
                group = "outbox"
            else:
                group = "other (schema, head)"
            g = groups.setdefault(group, [0, 0])
            g[0] += pgsize
            g[1] += payload
        say(f"storage by dbstat ({took:.0f} s to scan):")
        for group, (pgsize, payload) in sorted(groups.items(), key=lambda kv: -kv[1][0]):
            per = f"{pgsize / size:8,.1f} B/entry"
            extra = ""
            if group == "checkpoints" and checkpoints:
                extra = f"  = {pgsize / checkpoints:,.0f} B per checkpoint ({checkpoints:,})"
            say(
                f"  {group:<22} {pgsize / GB:8.3f} GB  {per}  payload {payload / GB:8.3f} GB "
                f"(pages {100 * payload / max(1, pgsize):.0f}% payload){extra}"
            )
        say(f"  {'free pages':<22} {free * page / GB:8.3f} GB")
    finally:
        db.close()


def verify_child(data_dir: Path, mode: str, workers: int, size: int) -> None:
    """``audit verify`` as the CLI runs it (``verify_log`` on the opened log), in a forked
    child: its own peak RSS, and the modules already imported (a long run does not
    depend on the working tree at its end)."""
    read_fd, write_fd = os.pipe()
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_fd)
        code = 1
        try:
            with AuditLog.open_sqlite(data_dir) as log:
                report = verify_log(log.store, log.keys, signatures=mode, workers=workers)
            problems = "; ".join(str(p) for p in report.problems[:3])
            line = (
                f"{report.summary()}; {report.checkpoints} checkpoints; signatures: "
                f"{report.signature_mode} ({report.signatures_checked} checked) {problems}"
            )
            code = 0 if report.ok else 1
        except BaseException as exc:  # reported by the parent
            line = f"failed: {exc!r}"
        os.write(write_fd, line.encode())
        os.close(write_fd)
        os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        line = pipe.read().decode("utf-8", "replace")
    _pid, status, usage = os.wait4(pid, 0)
    took = time.perf_counter() - t0
    say(
        f"verify: signatures={mode} workers={workers}: {took:,.1f} s = {size / took:,.0f} "
        f"entries/s; CPU {usage.ru_utime + usage.ru_stime:,.0f} s; peak RSS "
        f"{usage.ru_maxrss / 1024:,.0f} MiB; exit {os.waitstatus_to_exitcode(status)}: {line}"
    )


def proofs(log: AuditLog, samples: int, seed: int = 11) -> None:
    store = log.store
    size = log.size()
    rng = random.Random(seed)
    root = log.root(size)
    verifier = Verifier(log.keys.active_signer().vkey)

    # Inclusion.
    times, checks, lengths = [], [], []
    for _ in range(samples):
        index = rng.randrange(size)
        took, proof = timed(lambda i=index: log.prove_inclusion(i, size))
        times.append(took)
        lengths.append(len(proof))
        leaf = merkle.leaf_hash(store.read_entries(index, index + 1)[0].data)
        checks.append(timed_us(lambda p=proof, i=index, lf=leaf: merkle.check_record(
            p, size, root, i, lf)))  # fmt: skip
    say(
        f"inclusion proof at size {size:,}: {statistics.median(lengths):.0f} hashes "
        f"(max {max(lengths)}) = {32 * statistics.median(lengths):.0f} bytes; "
        f"prove median {statistics.median(times):,.0f} us p99 {pct(times, 0.99):,.0f} us; "
        f"check median {statistics.median(checks):,.0f} us  ({samples} random indexes)"
    )
    # Consistency.
    times, lengths, roots = [], [], []
    for _ in range(samples):
        old = rng.randrange(1, size)
        took, proof = timed(lambda o=old: log.prove_consistency(o, size))
        times.append(took)
        lengths.append(len(proof))
        if len(roots) < min(samples, 200):
            took, old_root = timed(lambda o=old: log.root(o))
            roots.append(took)
            merkle.check_tree(proof, size, root, old, old_root)
    say(
        f"consistency proof to size {size:,}: {statistics.median(lengths):.0f} hashes "
        f"(max {max(lengths)}) = {32 * statistics.median(lengths):.0f} bytes; prove median "
        f"{statistics.median(times):,.0f} us p99 {pct(times, 0.99):,.0f} us ({samples} random "
        f"old sizes); root at an old size median {statistics.median(roots):,.0f} us"
    )
    # Checkpoints.
    reads = [timed_us(store.latest_checkpoint) for _ in range(samples)]
    note = store.latest_checkpoint()
    assert note is not None
    opens = [timed_us(lambda: open_checkpoint(note, [verifier])) for _ in range(samples)]
    t0 = time.perf_counter()
    stored = store.checkpoints()
    all_s = time.perf_counter() - t0
    say(
        f"checkpoint: read latest median {statistics.median(reads):,.0f} us p99 "
        f"{pct(reads, 0.99):,.0f} us; open (signature) median {statistics.median(opens):,.0f} us;"
        f" read all {len(stored):,} checkpoints {all_s:.2f} s"
    )
    # One checkpoint as verify checks it: open it, prove and check it against the one before.
    per = []
    for _ in range(min(samples, max(0, len(stored) - 1))):
        i = rng.randrange(1, len(stored))

        def one(i: int = i) -> None:
            before = open_checkpoint(stored[i - 1][1], [verifier])
            cp = open_checkpoint(stored[i][1], [verifier])
            proof = log.prove_consistency(before.size, cp.size)
            merkle.check_tree(proof, cp.size, cp.root, before.size, before.root)

        per.append(timed_us(one))
    if per:
        each = statistics.median(per)
        projected = size // GROUP_COMMIT
        say(
            f"checkpoint verify (open two, prove + check consistency): median {each:,.0f} us "
            f"-> {len(stored):,} checkpoints {len(stored) * each / 1e6:,.1f} s; at "
            f"{GROUP_COMMIT} entries/commit {projected:,} checkpoints "
            f"~{projected * each / 1e6:,.0f} s"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=10_000_000)
    parser.add_argument("--dir", default=str(REPO.parent / "scale-data"), help="the data dir")
    parser.add_argument("--batch", type=int, default=MAX_BATCH, help="entries per transaction")
    parser.add_argument("--progress", type=int, default=500_000, help="report every N entries")
    parser.add_argument("--outbox", action="store_true", help="write the obligations outbox too")
    parser.add_argument("--samples", type=int, default=1000, help="proofs and reads to time")
    parser.add_argument("--min-free-gb", type=float, default=20.0)
    parser.add_argument("--no-dbstat", action="store_true", help="skip the dbstat scan")
    parser.add_argument(
        "--verify", default="sample,all", help="verify modes to run: sample,all,none"
    )
    args = parser.parse_args()
    data_dir = Path(args.dir).resolve()
    if data_dir == REPO or REPO in data_dir.parents:
        raise SystemExit(f"--dir {data_dir} is inside the repository: choose one outside it")
    db_path = data_dir / "audit.sqlite"

    say(f"scale: {args.entries:,} entries in {data_dir}; batch {args.batch}; "
        f"outbox {'included' if args.outbox else 'left out'}; {os.cpu_count()} CPUs")  # fmt: skip
    say(f"start: {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC; load averages {loadavg()}")
    data_dir.mkdir(parents=True, exist_ok=True)
    fresh = not db_path.exists()
    if not fresh:
        with AuditLog.open_sqlite(data_dir) as log:
            fresh = log.size() == 0
    if fresh:
        ensure_templates(data_dir)
    with AuditLog.open_sqlite(data_dir) as log:
        templates = load_templates(log)
        tag = hashlib.sha256(log.origin.encode()).hexdigest()[:8]
        samples = [templates[i % len(templates)].render(i, tag)[0] for i in range(2000)]
        assert all(canonical(json.loads(s)) == s for s in samples[:64])
        base_before = baseline_per_entry(samples)
        sizes = [len(s) for s in samples]
        say(
            f"entries: {len(templates)} templates, {statistics.mean(sizes):,.0f} B on average "
            f"({min(sizes):,}-{max(sizes):,}); baseline sign + SHA-256 per entry "
            f"{base_before * 1e6:.1f} us (= {1 / base_before:,.0f}/s on one core)"
        )
        present = log.size()
        if present < args.entries:
            say(f"build: the log holds {present:,} entries; appending to {args.entries:,}")
            result = build(
                log,
                templates,
                args.entries,
                batch=args.batch,
                progress=args.progress,
                outbox=args.outbox,
                min_free=args.min_free_gb * GB,
                db_path=db_path,
            )
            if result is None:
                say(f"end: load averages {loadavg()}")
                return 3
            appended, took, t_sign, t_store = result
            base_after = baseline_per_entry(samples)
            base = statistics.median([base_before, base_after])
            rate = appended / took
            say(
                f"append: {appended:,} entries in {took:,.0f} s = {rate:,.0f} entries/s "
                f"(batches of {args.batch}); render + sign {t_sign / appended * 1e6:.1f} us/entry,"
                f" append_batch (tree hashes, SQL, checkpoint, COMMIT) "
                f"{t_store / appended * 1e6:.1f} us/entry"
            )
            say(
                f"append: baseline sign + SHA-256 {base_before * 1e6:.1f} us before, "
                f"{base_after * 1e6:.1f} us after; ratio (time per appended entry / baseline) "
                f"= {(1 / rate) / base:.2f}"
            )
        else:
            say(f"build: the log already holds {present:,} entries (>= {args.entries:,})")
        size = log.size()
        checkpoints = len(log.store.checkpoints())
        say(
            f"checkpoints: {checkpoints:,} stored ({size / max(1, checkpoints):,.0f} entries per "
            f"checkpoint); at {GROUP_COMMIT} entries/commit a real log of {size:,} entries "
            f"stores {size // GROUP_COMMIT:,}"
        )
        storage(db_path, size, checkpoints, not args.no_dbstat)
        proofs(log, args.samples)
    modes = [m for m in args.verify.split(",") if m and m != "none"]
    for mode in modes:
        verify_child(data_dir, mode, 2 if mode == "all" else 1, size)
    say(f"end: {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC; load averages {loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
