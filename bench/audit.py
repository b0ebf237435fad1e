"""Benchmark: the audit log's sustained append rate, verify rate and a full decision.

    python3 bench/audit.py                       # all three parts
    python3 bench/audit.py --verify-entries 1000000

1. Sustained appends with SQLite durability (WAL, synchronous=FULL), group
   committed from concurrent callers (threads). Baseline, measured in the
   same run: the raw cost of one Ed25519 signature plus one SHA-256 over an
   entry of the same size, per entry, on one core. Prints entries/s and the
   ratio of the append cost per entry to that baseline.
2. ``audit verify`` of N entries (default 1,000,000): entries/s for the
   tree and checkpoint verification with signatures sampled (1%), and
   the rate with every signature checked in parallel by 2 processes.
3. The median full decision: engine + durable audit entry (``gatekeeper.open``
   defaults, SQLite), against the median decide without audit, for the
   embedded engine (regopy) and for the wasm engine (the pack compiled by OPA
   to WebAssembly, in-process; ``--engine``). Two inputs: a request
   ``parse_request`` returned (as ``gk.access`` and the proxy pass it; not
   parsed again) and the same request as a JSON-decoded dict (parsed inside
   ``decide``). The public cases in turn; 29 of 32 permits write obligation
   rows in the entry's transaction.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

# The public cases are scenarios of their own day (as_of 2026-04-02): replayed
# as such, without the live as_of check (max_as_of_skew; subprocesses inherit it).
os.environ.setdefault("GATEKEEPER_MAX_AS_OF_SKEW", "off")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

import gatekeeper  # noqa: E402
from gatekeeper import Gatekeeper  # noqa: E402
from gatekeeper.audit.log import AuditLog  # noqa: E402
from gatekeeper.audit.note import Checkpoint, sign_checkpoint  # noqa: E402
from gatekeeper.audit.verify import verify_log  # noqa: E402
from gatekeeper.request import parse_request  # noqa: E402

ENTRY = json.dumps(
    {"schema": "gatekeeper.audit/v1", "kind": "bench", "pad": "x" * 1900},
    separators=(",", ":"),
    sort_keys=True,
).encode()


def baseline_per_entry(n: int = 5000) -> float:
    key = Ed25519PrivateKey.generate()
    start = time.perf_counter()
    for _ in range(n):
        key.sign(ENTRY)
        hashlib.sha256(b"\x00" + ENTRY).digest()
    return (time.perf_counter() - start) / n


def bench_appends(seconds: float, threads: int) -> None:
    base = baseline_per_entry()
    with tempfile.TemporaryDirectory() as tmp, AuditLog.open_sqlite(tmp, origin="bench/log") as log:
        log.append(ENTRY)
        stop = time.monotonic() + seconds
        counts = [0] * threads

        def worker(slot: int) -> None:
            while time.monotonic() < stop:
                log.append(ENTRY)
                counts[slot] += 1

        pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
        started = time.perf_counter()
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        elapsed = time.perf_counter() - started
        total = sum(counts)
        rate = total / elapsed
        checkpoints = len(log.store.checkpoints())
        print(
            f"appends: {total} entries in {elapsed:.1f} s from {threads} threads: "
            f"{rate:,.0f} entries/s ({checkpoints} checkpoints: "
            f"{total / max(1, checkpoints - 1):.1f} entries per commit)"
        )
        print(
            f"appends: baseline Ed25519 sign + SHA-256 per entry: {base * 1e6:.1f} us "
            f"(= {1 / base:,.0f}/s on one core)"
        )
        print(
            f"appends: ratio (wall time per appended entry / baseline) = "
            f"{(1 / rate) / base:.2f}  (target: >= 5,000 entries/s)"
        )


def bench_verify(entries: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        log = AuditLog.open_sqlite(tmp, origin="bench/log")
        started = time.perf_counter()
        batch = 20000
        signer = log.keys.active_signer()
        signature = signer.sign(ENTRY)
        # Fill fast through the store (one transaction per 20,000 entries).
        for start in range(0, entries, batch):
            n = min(batch, entries - start)
            log.store.append_batch(
                [(ENTRY, signature)] * n,
                lambda size, root: sign_checkpoint(Checkpoint(log.origin, size, root), [signer]),
            )
        fill = time.perf_counter() - started
        print(f"verify: filled {entries:,} entries in {fill:.1f} s")
        for mode, workers in (("sample", 1), ("all", 2)):
            t0 = time.perf_counter()
            report = verify_log(log.store, log.keys, signatures=mode, workers=workers)
            took = time.perf_counter() - t0
            assert report.ok, report.problems[:3]
            print(
                f"verify: {entries:,} entries, signatures={mode} (workers={workers}): "
                f"{took:.1f} s = {entries / took:,.0f} entries/s "
                f"({report.signatures_checked:,} signatures checked)"
            )
        log.close()


def bench_decision(rounds: int, engine: str) -> None:
    cases = [json.loads(line) for line in (REPO / "tests/cases/public.jsonl").open()]
    dicts = [c["request"] for c in cases]
    requests = [parse_request(c["request"]) for c in cases]
    with tempfile.TemporaryDirectory() as tmp:
        gk = gatekeeper.open(data_dir=tmp, engine=engine)
        bare = Gatekeeper(engine=gk.engine, allow_unaudited=True)
        for r in requests:
            gk.decide(r)
        full: list[float] = []
        full_dict: list[float] = []
        no_audit: list[float] = []
        for i in range(rounds):
            r = requests[i % len(requests)]
            s = time.perf_counter_ns()
            bare.decide(r)
            no_audit.append((time.perf_counter_ns() - s) / 1000)
            s = time.perf_counter_ns()
            d = gk.decide(r)
            full.append((time.perf_counter_ns() - s) / 1000)
            assert d.audit is not None and d.engine == engine, d
            raw = dicts[i % len(dicts)]
            s = time.perf_counter_ns()
            d = gk.decide(raw)
            full_dict.append((time.perf_counter_ns() - s) / 1000)
            assert d.audit is not None and d.engine == engine, d
        gk.close()
        gk.engine.close()

    def p99(xs: list[float]) -> float:
        return sorted(xs)[int(len(xs) * 0.99)]

    print(
        f"decision [{engine}]: decide without audit (baseline): "
        f"median {statistics.median(no_audit):8.1f} us  p99 {p99(no_audit):8.1f} us"
    )
    print(
        f"decision [{engine}]: decide + durable audit entry:     "
        f"median {statistics.median(full):8.1f} us  p99 {p99(full):8.1f} us"
        "  (target: median <= 1500 us)"
    )
    print(
        f"decision [{engine}]: decide + audit, request as dict: "
        f"median {statistics.median(full_dict):8.1f} us  p99 {p99(full_dict):8.1f} us"
        "  (parsed inside decide)"
    )
    print(f"decision [{engine}]: ratio {statistics.median(full) / statistics.median(no_audit):.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--verify-entries", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--only", choices=("appends", "verify", "decision"), default=None)
    parser.add_argument(
        "--engine",
        choices=("embedded", "wasm", "both"),
        default="both",
        help="the engine(s) of the full-decision benchmark (both: embedded, then wasm)",
    )
    args = parser.parse_args()
    if args.only in (None, "appends"):
        bench_appends(args.seconds, args.threads)
    if args.only in (None, "verify"):
        bench_verify(args.verify_entries)
    if args.only in (None, "decision"):
        for engine in ("embedded", "wasm") if args.engine == "both" else (args.engine,):
            bench_decision(args.rounds, engine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
