"""Benchmark: sustained load (default 5 minutes) on the proxy and on the guarded lookup.

    python3 bench/soak.py                          # 300 s each, proxy at 40 req/s, 4 threads
    python3 bench/soak.py --duration 20 --only proxy
    python3 bench/soak.py --duration 600 --rate 50 --threads 8
    python3 bench/soak.py --engine wasm --rate 150   # the wasm engine in the proxy and the guard

Everything runs on loopback, on this machine; every loop is bounded (a
request count or a deadline); latencies go into fixed-size log-scale
histograms (2% buckets), so the load generator's own memory does not grow.

(a) The OneRoster proxy in front of the demo SIS (3,000 students), set up as
    bench/proxy.py does (separate processes; examples/proxy.toml; embedded
    engine; SQLite audit log with synchronous=FULL). Open loop: request *i*
    is sent at ``start + i / rate`` whatever happened to the ones before, and
    its latency counts from that scheduled time (no coordinated omission).
    Baseline, named ``direct``: the same single-student lookups sent to the
    SIS itself for ``--baseline-duration`` seconds, just before. The default
    rate, 40 req/s, is below the ~60 req/s ceiling of the proxy on two
    shared cores measured by bench/proxy.py.
(b) The guarded lookup (bench/guarded.py's set-up: ``GuardedSource.get`` =
    decide + durable audit entry + SQLAlchemy lookup + redaction, in this
    process). Closed loop: ``--threads`` threads, each calling as fast as it
    can until the deadline. Baseline, named ``unguarded``: the same
    ``SqlAlchemySource.get`` with the same threads, half of
    ``--baseline-duration`` just before and half just after (drift shows as a
    difference between the two halves).

For each phase: throughput (overall and the slowest and fastest
``--sample-every`` window), p50/p99/p99.9/max latency, errors by kind; the
ratio to the baseline; resident memory (the proxy process, or this one for
(b)) sampled every ``--sample-every`` seconds: start, middle, end, and the
least-squares slope over the second half (MiB per minute; growth that does
not level off is a leak); CPU per request. At the end each audit log is
verified (every signature, 2 workers). Load averages at the start and the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# The public cases are scenarios of their own day (as_of 2026-04-02): replayed
# as such, without the live as_of check (max_as_of_skew; subprocesses inherit it).
os.environ.setdefault("GATEKEEPER_MAX_AS_OF_SKEW", "off")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from bench._stats import Histogram, loadavg, say  # noqa: E402
from bench.guarded import FIELDS, build_table, one_request  # noqa: E402
from bench.proxy import (  # noqa: E402
    SIS_TOKEN,
    STUDENTS,
    TEACHER_TOKEN,
    cpu_seconds,
    rss_kib,
    start_sis_and_proxy,
)


@dataclass
class Phase:
    name: str
    hist: Histogram = field(default_factory=Histogram)
    errors: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0
    windows: list[int] = field(default_factory=list)  # completions per sample window
    rss: list[tuple[float, int]] = field(default_factory=list)  # (seconds in, KiB)
    cpu_ms: float = float("nan")  # CPU per request of the process under test

    def merge(self, other: Phase) -> None:
        self.hist.merge(other.hist)
        self.errors.update(other.errors)
        self.elapsed += other.elapsed

    def rate(self) -> float:
        return self.hist.n / self.elapsed if self.elapsed else float("nan")

    def row(self, unit: str = "req/s") -> str:
        h = self.hist
        windows = ""
        if len(self.windows) > 2:
            inner = self.windows[1:-1]  # the first and last windows are partial
            windows = f"  windows {min(inner)}-{max(inner)}"
        errors = ", ".join(f"{k} x{v}" for k, v in self.errors.most_common(5)) or "0"
        return (
            f"{self.name:<12} {h.n:8,} ok in {self.elapsed:6.1f} s = {self.rate():8.1f} {unit}"
            f"  p50 {h.quantile_ms(0.5):7.2f} ms  p99 {h.quantile_ms(0.99):7.2f} ms  "
            f"p99.9 {h.quantile_ms(0.999):7.2f} ms  max {h.max * 1000:7.1f} ms  "
            f"errors {errors}{windows}"
        )


def slope_mib_per_min(points: list[tuple[float, int]]) -> float:
    """Least-squares slope of RSS over time (MiB per minute)."""
    if len(points) < 2:
        return float("nan")
    xs = [t / 60 for t, _ in points]
    ys = [kib / 1024 for _, kib in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


def rss_line(label: str, points: list[tuple[float, int]]) -> str:
    if not points:
        return f"{label}: no samples"
    mid = points[len(points) // 2]
    half = [p for p in points if p[0] >= points[-1][0] / 2]
    return (
        f"{label}: start {points[0][1] / 1024:.1f} MiB, middle ({mid[0]:.0f} s) "
        f"{mid[1] / 1024:.1f} MiB, end ({points[-1][0]:.0f} s) {points[-1][1] / 1024:.1f} MiB, "
        f"max {max(k for _, k in points) / 1024:.1f} MiB; slope over the second half "
        f"{slope_mib_per_min(half):+.2f} MiB/min (whole run {slope_mib_per_min(points):+.2f})"
    )


def ratio_line(label: str, test: Phase, base: Phase) -> str:
    return (
        f"ratio {label}: throughput x{test.rate() / base.rate():.2f}, "
        f"p50 x{test.hist.quantile_ms(0.5) / base.hist.quantile_ms(0.5):.1f}, "
        f"p99 x{test.hist.quantile_ms(0.99) / base.hist.quantile_ms(0.99):.1f}"
    )


def verify_dir(data_dir: Path) -> str:
    from gatekeeper.audit.log import AuditLog
    from gatekeeper.audit.verify import verify_log

    t0 = time.perf_counter()
    with AuditLog.open_sqlite(data_dir) as log:
        report = verify_log(log.store, log.keys, signatures="all", workers=2)
        checkpoints = report.checkpoints
    problems = "; ".join(str(p) for p in report.problems[:3])
    return (
        f"{'OK' if report.ok else 'FAILED'} {report.summary()}, {checkpoints:,} checkpoints "
        f"({report.size / max(1, checkpoints):.1f} entries per commit), every signature "
        f"checked, in {time.perf_counter() - t0:.1f} s {problems}"
    )


# -- (a) the proxy, open loop -----------------------------------------------------------


async def open_loop(
    phase: Phase,
    base: str,
    token: str,
    rate: float,
    seconds: float,
    sample_every: float,
    watch_pid: int | None,
    seed: int,
) -> None:
    rng = random.Random(seed)
    total = int(rate * seconds)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(limits=limits, headers=headers, timeout=10.0) as client:
        for _ in range(20):  # warm-up: connections, threads, compiled policy
            await client.get(f"{base}/students/stu-{rng.randrange(1, STUDENTS + 1):05d}")
        t0 = time.perf_counter() + 0.2
        windows = [0] * (int(seconds / sample_every) + 2)

        async def one(at: float, sid: int) -> None:
            try:
                response = await client.get(f"{base}/students/stu-{sid:05d}")
                if response.status_code != 200:
                    kind = f"HTTP {response.status_code}"
                elif b'"sourcedId"' not in response.content:
                    kind = "no record"
                else:
                    kind = ""
            except httpx.HTTPError as exc:
                kind = type(exc).__name__
            done = time.perf_counter()
            if kind:
                phase.errors[kind] += 1
            else:
                phase.hist.add(done - at)
                windows[min(len(windows) - 1, int((done - t0) / sample_every))] += 1

        async def sample() -> None:
            assert watch_pid is not None
            for k in range(int(seconds / sample_every) + 1):
                await asyncio.sleep(max(0.0, t0 + k * sample_every - time.perf_counter()))
                phase.rss.append((k * sample_every, rss_kib(watch_pid)))

        sampler = asyncio.create_task(sample()) if watch_pid is not None else None
        pending: set[asyncio.Task[None]] = set()
        for i in range(total):  # bounded: rate x seconds requests
            at = t0 + i / rate
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(at, rng.randrange(1, STUDENTS + 1)))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.wait(pending)
        if sampler is not None:
            await sampler
        phase.elapsed = time.perf_counter() - t0
        phase.windows = windows[: int(phase.elapsed / sample_every) + 1]


def soak_proxy(args: argparse.Namespace, work: Path) -> bool:
    # The proxy's configuration names no engine: GATEKEEPER_ENGINE chooses it.
    sis, sis_url, proxy, proxy_url = start_sis_and_proxy(work, GATEKEEPER_ENGINE=args.engine)
    direct = Phase("direct")
    proxied = Phase("proxy")
    try:
        for phase, url, token, watch, seconds, pid in (
            (direct, sis_url, SIS_TOKEN, None, args.baseline_duration, sis.pid),
            (proxied, proxy_url, TEACHER_TOKEN, proxy.pid, args.duration, proxy.pid),
        ):
            say(f"(a) {phase.name}: {seconds:g} s at {args.rate:g} req/s ...")
            before = cpu_seconds(pid)
            asyncio.run(
                open_loop(phase, url, token, args.rate, seconds, args.sample_every, watch, seed=1)
            )
            phase.cpu_ms = (cpu_seconds(pid) - before) * 1000 / max(1, phase.hist.n + 20)
    finally:
        proxy.terminate()
        sis.terminate()
        proxy.wait(30)
        sis.wait(30)
    say(
        f"(a) proxy: single-student lookups, open loop at {args.rate:g} req/s; "
        f"{os.cpu_count()} CPUs shared by SIS, proxy and load generator"
    )
    say("    " + direct.row())
    say("    " + proxied.row())
    say("    " + ratio_line("proxy/direct", proxied, direct))
    say(
        f"    CPU per request: SIS alone {direct.cpu_ms:.2f} ms (direct phase); "
        f"proxy {proxied.cpu_ms:.2f} ms (proxy phase)"
    )
    say("    " + rss_line("proxy RSS", proxied.rss))
    say(f"    audit log: {verify_dir(work / 'gk')}")
    return not direct.errors and not proxied.errors


# -- (b) the guarded lookup, closed loop ----------------------------------------------


def closed_loop(
    name: str,
    call: Callable[[int], object],
    threads: int,
    seconds: float,
    sample_every: float,
    sample_rss: bool,
) -> Phase:
    phase = Phase(name)
    parts = [Phase(name) for _ in range(threads)]
    windows = [0] * (int(seconds / sample_every) + 2)
    windows_lock = threading.Lock()
    t0 = time.perf_counter()
    stop = t0 + seconds
    halt = threading.Event()

    def worker(slot: int) -> None:
        mine = parts[slot]
        i = slot
        while not halt.is_set():  # bounded by the deadline
            began = time.perf_counter()
            if began >= stop:
                break
            try:
                call(i)
            except Exception as exc:  # counted and shown
                mine.errors[type(exc).__name__] += 1
            else:
                done = time.perf_counter()
                mine.hist.add(done - began)
                with windows_lock:
                    windows[min(len(windows) - 1, int((done - t0) / sample_every))] += 1
            i += threads

    pool = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(threads)]
    for t in pool:
        t.start()
    if sample_rss:
        for k in range(int(seconds / sample_every) + 1):
            time.sleep(max(0.0, t0 + k * sample_every - time.perf_counter()))
            phase.rss.append((k * sample_every, rss_kib(os.getpid())))
    for t in pool:
        t.join(seconds + 60)
    halt.set()
    phase.elapsed = time.perf_counter() - t0
    for part in parts:
        phase.hist.merge(part.hist)
        phase.errors.update(part.errors)
    phase.windows = windows[: int(phase.elapsed / sample_every) + 1]
    return phase


def soak_guarded(args: argparse.Namespace, work: Path) -> bool:
    import gatekeeper
    from gatekeeper.adapters.sqlalchemy import SqlAlchemySource, guarded_source

    engine, table = build_table(work / "sis.sqlite", args.students)
    gk = gatekeeper.open(data_dir=work / "gk-guarded", engine=args.engine)
    plain = SqlAlchemySource(engine, table, id_column="student_id")
    guarded = guarded_source(gk, engine, table, id_column="student_id")
    ids = [f"S{i:05d}" for i in range(args.students)]
    for sid in ids[:20]:  # warm-up: the compiled pack, the connection pool, the log
        plain.get(sid, fields=FIELDS)
        assert set(guarded.get(one_request(sid)) or {}) == {"grades", "attendance"}

    def unguarded(i: int) -> object:
        return plain.get(ids[i % len(ids)], fields=FIELDS)

    def guard(i: int) -> object:
        record = guarded.get(one_request(ids[i % len(ids)]))
        if record is None or "home_address" in record:
            raise AssertionError("a wrong record")
        return record

    half = args.baseline_duration / 2
    every, threads = args.sample_every, args.threads
    say(f"(b) guarded lookup: {threads} threads, closed loop ...")
    cpu0 = time.process_time()
    before = closed_loop("unguarded", unguarded, threads, half, every, False)
    cpu1 = time.process_time()
    guarded_phase = closed_loop("guarded", guard, threads, args.duration, every, True)
    cpu2 = time.process_time()
    after = closed_loop("unguarded", unguarded, threads, half, every, False)
    cpu3 = time.process_time()
    assert gk.audit is not None
    entries = gk.audit.size()
    gk.close()
    base = Phase("unguarded")
    base.merge(before)
    base.merge(after)
    base_cpu = (cpu1 - cpu0 + cpu3 - cpu2) * 1000 / max(1, base.hist.n)
    guard_cpu = (cpu2 - cpu1) * 1000 / max(1, guarded_phase.hist.n)
    say(f"(b) guarded lookup: {threads} threads, closed loop; {os.cpu_count()} CPUs")
    before.name, after.name = "unguarded<", "unguarded>"
    for phase in (before, guarded_phase, after, base):
        say("    " + phase.row("ops/s"))
    say("    " + ratio_line("guarded/unguarded", guarded_phase, base))
    say(f"    CPU per lookup: unguarded {base_cpu:.3f} ms, guarded {guard_cpu:.3f} ms")
    say("    " + rss_line("this process's RSS (guarded phase)", guarded_phase.rss))
    say(f"    audit log: {entries:,} entries; {verify_dir(work / 'gk-guarded')}")
    return not base.errors and not guarded_phase.errors


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=300.0, help="seconds under load")
    parser.add_argument(
        "--baseline-duration", type=float, default=60.0, help="seconds of each baseline"
    )
    parser.add_argument("--rate", type=float, default=40.0, help="proxy requests per second")
    parser.add_argument("--threads", type=int, default=4, help="guarded-lookup threads")
    parser.add_argument("--students", type=int, default=1000, help="rows of the lookup table")
    parser.add_argument("--sample-every", type=float, default=10.0, help="RSS sample interval")
    parser.add_argument("--only", choices=("proxy", "guarded"), default=None)
    parser.add_argument(
        "--engine", choices=("embedded", "wasm"), default="embedded", help="the policy engine"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    args.sample_every = min(args.sample_every, args.duration / 3)
    say(
        f"soak: {args.duration:g} s per load phase; engine {args.engine}; "
        f"start load averages {loadavg()}"
    )
    ok = True
    work = Path(tempfile.mkdtemp(prefix="gatekeeper-soak-"))
    try:
        if args.only in (None, "proxy"):
            ok &= soak_proxy(args, work)
        if args.only in (None, "guarded"):
            ok &= soak_guarded(args, work)
    finally:
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    say(f"end load averages {loadavg()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
