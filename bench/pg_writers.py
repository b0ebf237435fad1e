"""Benchmark: one PostgreSQL audit log written by eight processes at once.

    python3 bench/pg_writers.py                        # 30 s per phase, 8 processes x 4 threads
    python3 bench/pg_writers.py --seconds 60 --writers 8 --threads 8

Starts a throw-away PostgreSQL on loopback (tests/pg_server.py: initdb in a
temp dir, ``fsync=on``; the binaries from ``$GATEKEEPER_PG_BIN`` or
``/usr/lib/postgresql/*/bin``, see ``scripts/ensure-postgres``), one
database, one signing key shared by every writer (as ``open_audit_log``
requires of a shared log: one origin, one key).

Each writer is a process with its own ``PostgresStore`` and ``AuditLog``
(group commit of its threads by its writer thread); ``--threads`` threads
in each call ``AuditLog.append`` in a closed loop until the phase's deadline
with a real decision entry (the public cases' entries varied as in
bench/scale.py: 1.7-2.5 KB of RFC 8785 JSON). All processes grow one tree: they take
turns on the head row's lock (``SELECT ... FOR UPDATE``).

Phases, measured in the same run on the same database:

1. baseline: ONE writer process (``--threads`` threads);
2. ``--writers`` processes (default 8), each with ``--threads`` threads.

For each: entries/s, entries per commit (entries / checkpoints added),
p50/p99/p99.9/max append latency (an append returns once its transaction
committed), append errors by kind (e.g. a lock wait past ``lock_timeout``);
the ratio of phase 2 to the baseline. At the end: ``verify_log`` over the
whole log (every signature, 2 worker processes) and the table sizes per entry.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench._stats import Histogram, loadavg, say  # noqa: E402
from bench.scale import Template, ensure_templates, load_templates  # noqa: E402

ORIGIN = "bench.local/pg-writers"


def templates() -> list[Template]:
    """The public cases' decision entries (decided once into a throw-away SQLite log)."""
    from gatekeeper.audit.log import AuditLog

    with tempfile.TemporaryDirectory() as tmp:
        ensure_templates(Path(tmp))
        with AuditLog.open_sqlite(tmp) as log:
            return load_templates(log)


def entry(made: list[Template], slot: int, thread: int, n: int) -> bytes:
    """A decision entry (~2 KB), unique across writers, threads and phases."""
    number = slot * 100_000_000 + thread * 1_000_000 + n
    return made[number % len(made)].render(number, "pg")[0]


def writer(
    slot: int,
    dsn: str,
    keys_dir: str,
    made: list[Template],
    threads: int,
    seconds: float,
    timeout: float,
    ready: Any,
    go: Any,
    start_at: Any,
    results: Any,
) -> None:
    """One writer process: ``threads`` threads appending until the deadline."""
    from gatekeeper.audit.keys import KeyStore
    from gatekeeper.audit.log import AuditLog
    from gatekeeper.audit.postgres import PostgresStore

    store = PostgresStore(dsn, lock_timeout=timeout)
    log = AuditLog(store, KeyStore(keys_dir, origin=ORIGIN), timeout=timeout)
    log.append(entry(made, slot, threads, 0))  # warm-up: connection, key, first commit
    hists = [Histogram() for _ in range(threads)]
    errors: Counter[str] = Counter()
    lock = threading.Lock()
    ready.put(slot)
    go.wait(120)
    begin = start_at.value
    stop = begin + seconds
    time.sleep(max(0.0, begin - time.time()))

    def run(t: int) -> None:
        n = 0
        while True:  # bounded by the deadline
            began = time.perf_counter()
            if time.time() >= stop:
                return
            n += 1
            try:
                log.append(entry(made, slot, t, n))
            except Exception as exc:  # counted and shown
                with lock:
                    errors[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1
            else:
                hists[t].add(time.perf_counter() - began)

    pool = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for p in pool:
        p.start()
    for p in pool:
        p.join(seconds + 60)
    elapsed = time.time() - begin
    log.close()
    total = Histogram()
    for h in hists:
        total.merge(h)
    results.put((slot, total.state(), dict(errors), elapsed))


def head(dsn: str) -> tuple[int, int]:
    """(entries, checkpoints) in the log."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT (SELECT size FROM head WHERE id = 1), (SELECT count(*) FROM checkpoints)"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def phase(
    name: str,
    processes: int,
    args: argparse.Namespace,
    dsn: str,
    keys_dir: str,
    made: list[Template],
    base: int,
) -> dict[str, Any]:
    """``processes`` writers (numbered from ``base``) for ``args.seconds``."""
    ctx = multiprocessing.get_context("spawn")
    ready, results = ctx.Queue(), ctx.Queue()
    go = ctx.Event()
    start_at = ctx.Value("d", 0.0)
    common = (args.threads, args.seconds, args.timeout, ready, go, start_at, results)
    procs = [
        ctx.Process(target=writer, args=(slot + base, dsn, keys_dir, made, *common))
        for slot in range(processes)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=120)
    size0, cps0 = head(dsn)
    start_at.value = time.time() + 0.5
    go.set()
    got = [results.get(timeout=args.seconds + 180) for _ in procs]
    for p in procs:
        p.join(30)
    size1, cps1 = head(dsn)
    hist = Histogram()
    errors: Counter[str] = Counter()
    for _slot, state, errs, _elapsed in got:
        hist.merge(Histogram(*state))
        errors.update(errs)
    elapsed = max(e for *_, e in got)
    added = size1 - size0
    row = {
        "name": name,
        "rate": added / elapsed,
        "per_commit": added / max(1, cps1 - cps0),
        "hist": hist,
        "errors": errors,
    }
    shown = ", ".join(f"{k} x{v}" for k, v in errors.most_common(3)) or "0"
    say(
        f"{name:<28} {added:8,} entries in {elapsed:5.1f} s = {row['rate']:7,.0f} entries/s  "
        f"{row['per_commit']:5.1f} entries/commit  append p50 {hist.quantile_ms(0.5):7.2f} ms "
        f"p99 {hist.quantile_ms(0.99):7.2f} ms p99.9 {hist.quantile_ms(0.999):7.2f} ms "
        f"max {hist.max * 1000:7.1f} ms  errors {shown}"
    )
    return row


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="per phase")
    parser.add_argument("--writers", type=int, default=8, help="processes in phase 2")
    parser.add_argument("--threads", type=int, default=4, help="appending threads per process")
    parser.add_argument(
        "--timeout", type=float, default=2.0, help="lock_timeout and append timeout (s)"
    )
    args = parser.parse_args()

    from gatekeeper.audit.keys import KeyStore
    from gatekeeper.audit.postgres import PostgresStore
    from gatekeeper.audit.verify import verify_log
    from tests.pg_server import PostgresServer

    say(
        f"pg_writers: {args.seconds:g} s per phase, {args.threads} threads per process, "
        f"{os.cpu_count()} CPUs shared with PostgreSQL; start load averages {loadavg()}"
    )
    with PostgresServer() as server, tempfile.TemporaryDirectory() as keys_dir:
        say(f"PostgreSQL: {server.pg_bin} on 127.0.0.1:{server.port}, fsync=on")
        dsn = server.create_database("bench")
        KeyStore(keys_dir, origin=ORIGIN).active_signer()  # the shared key, made once
        PostgresStore(dsn).close()  # the schema, made once
        made = templates()
        one = phase("baseline: 1 writer process", 1, args, dsn, keys_dir, made, 0)
        many = phase(f"{args.writers} writer processes", args.writers, args, dsn, keys_dir, made, 1)
        h1, hn = one["hist"], many["hist"]
        say(
            f"ratio {args.writers} processes / 1: entries/s x{many['rate'] / one['rate']:.2f}, "
            f"entries/commit x{many['per_commit'] / one['per_commit']:.2f}, "
            f"append p50 x{hn.quantile_ms(0.5) / h1.quantile_ms(0.5):.1f}, "
            f"p99 x{hn.quantile_ms(0.99) / h1.quantile_ms(0.99):.1f}"
        )
        store = PostgresStore(dsn)
        verified = True
        try:
            for mode, workers in (("all", 2), ("none", 1)):
                t0 = time.perf_counter()
                report = verify_log(
                    store, KeyStore(keys_dir, origin=ORIGIN), signatures=mode, workers=workers
                )
                took = time.perf_counter() - t0
                verified &= report.ok
                say(
                    f"verify (signatures={mode}, workers={workers}): "
                    f"{'OK' if report.ok else 'FAILED'} {report.summary()}, "
                    f"{report.checkpoints:,} checkpoints, in {took:.1f} s "
                    f"= {took / max(1, report.checkpoints) * 1e3:.2f} ms per checkpoint "
                    f"{'; '.join(str(p) for p in report.problems[:3])}"
                )
        finally:
            store.close()
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            sizes = {
                table: int(
                    conn.execute("SELECT pg_total_relation_size(%s)", (table,)).fetchone()[0]  # type: ignore[index]
                )
                for table in ("entries", "hashes", "checkpoints")
            }
        per = ", ".join(f"{t} {b / max(1, report.size):,.0f}" for t, b in sizes.items())
        say(f"storage (pg_total_relation_size, incl. indexes and TOAST) per entry: {per} B")
    say(f"end load averages {loadavg()}")
    ok = verified and not one["errors"] and not many["errors"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
