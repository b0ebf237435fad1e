"""Benchmark: single-student lookups through the OneRoster proxy against the demo SIS directly.

    python3 bench/proxy.py                      # 60 s each, 60 requests/s
    python3 bench/proxy.py --seconds 10 --rate 150

Starts the demo SIS (3000 students) and the proxy (examples/proxy.toml,
embedded engine, SQLite audit log in a temporary directory) as separate
processes on loopback, then drives each with an open-loop load generator
(asyncio + httpx): request *i* is sent at ``start + i / rate`` whatever
happened to the ones before, and its latency is counted from that scheduled
time, so a server that falls behind shows it in p99 instead of slowing the
generator down (no coordinated omission).

Phase 1 asks the SIS directly (``GET /students/{id}``, the SIS's token);
phase 2 asks the proxy the same as the teacher client (every request
decided, audited, forwarded, redacted). Prints throughput, p50 and p99 for
both, their ratio, the error count, CPU per request, and the proxy's
resident memory at the start, middle and end of its phase (it should stay
flat). Then five whole-district pages (3000 students) stream through the
proxy as the roster-sync vendor, with the proxy's peak RSS meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

SIS_TOKEN = "demo-sis-token"
TEACHER_TOKEN = "demo-teacher-token"  # examples/proxy.toml's teacher_of_record
VENDOR_TOKEN = "demo-busco-token"  # examples/proxy.toml's roster-sync vendor
STUDENTS = 3000


@dataclass
class Phase:
    name: str
    latencies: list[float] = field(default_factory=list)  # seconds, of successes
    errors: int = 0
    elapsed: float = 0.0
    rss: list[tuple[float, int]] = field(default_factory=list)  # (seconds in, KiB)
    cpu: dict[str, float] = field(default_factory=dict)  # process -> CPU ms per request

    def row(self) -> str:
        ok = len(self.latencies)
        ms = sorted(x * 1000 for x in self.latencies)
        p50 = statistics.median(ms) if ms else float("nan")
        p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))] if ms else float("nan")
        return (
            f"{self.name:<8} {ok / self.elapsed:8.1f} req/s  p50 {p50:7.2f} ms  "
            f"p99 {p99:7.2f} ms  errors {self.errors}"
        )

    def quantile(self, q: float) -> float:
        ms = sorted(x * 1000 for x in self.latencies)
        return ms[min(len(ms) - 1, int(len(ms) * q))]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(cmd: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None
    line = process.stdout.readline()
    found = re.search(r"(http://\S+v1p2)", line)
    if not found:
        process.kill()
        raise SystemExit(f"did not start: {' '.join(cmd)}: {line!r}")
    return process, found[1]


def start_sis_and_proxy(
    work: Path, **env: str
) -> tuple[subprocess.Popen[str], str, subprocess.Popen[str], str]:
    """The demo SIS and the proxy in front of it (examples/proxy.toml), as separate
    processes with their data in ``work``; ``env`` is added to their environment."""
    environ = {**os.environ, "DEMO_SIS_TOKEN": SIS_TOKEN, **env}
    python = [sys.executable, "-m", "gatekeeper"]
    sis, sis_url = start(
        [*python, "demo-sis", "--port", "0", "--students", str(STUDENTS),
         "--db", str(work / "sis.sqlite")],
        environ,
    )  # fmt: skip
    proxy, proxy_url = start(
        [*python, "--data-dir", str(work / "gk"), "proxy", "--config",
         str(REPO / "examples" / "proxy.toml"), "--upstream", sis_url, "--port", "0"],
        environ,
    )  # fmt: skip
    return sis, sis_url, proxy, proxy_url


async def drive(
    phase: Phase,
    base: str,
    token: str,
    rate: float,
    seconds: float,
    *,
    watch_pid: int | None = None,
    seed: int = 1,
) -> None:
    rng = random.Random(seed)
    total = int(rate * seconds)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(limits=limits, headers=headers, timeout=10.0) as client:
        for _ in range(20):  # warm-up: connections, threads, compiled policy
            await client.get(f"{base}/students/stu-{rng.randrange(1, STUDENTS + 1):05d}")

        async def one(at: float, sid: int) -> None:
            await asyncio.sleep(max(0.0, at - time.perf_counter()))
            try:
                response = await client.get(f"{base}/students/stu-{sid:05d}")
                ok = response.status_code == 200 and b'"sourcedId"' in response.content
            except httpx.HTTPError:
                ok = False
            if ok:
                phase.latencies.append(time.perf_counter() - at)
            else:
                phase.errors += 1

        async def sample() -> None:
            assert watch_pid is not None
            for moment in (0.0, seconds / 2, seconds):
                await asyncio.sleep(max(0.0, t0 + moment - time.perf_counter()))
                phase.rss.append((moment, rss_kib(watch_pid)))

        t0 = time.perf_counter() + 0.2
        tasks = [
            asyncio.create_task(one(t0 + i / rate, rng.randrange(1, STUDENTS + 1)))
            for i in range(total)
        ]
        if watch_pid is not None:
            tasks.append(asyncio.create_task(sample()))
        await asyncio.gather(*tasks)
        phase.elapsed = time.perf_counter() - t0


async def bulk_pulls(base: str, pid: int, pulls: int = 5) -> tuple[int, int, int, float]:
    """Whole-district pages (limit=3000) as the roster-sync vendor, RSS sampled meanwhile.

    Returns (RSS before KiB, peak RSS KiB, bytes per page, seconds per page).
    """
    before = rss_kib(pid)
    peak = before
    size = 0
    headers = {"Authorization": f"Bearer {VENDOR_TOKEN}"}
    started = time.perf_counter()
    async with httpx.AsyncClient(headers=headers, timeout=60.0) as client:
        for _ in range(pulls):
            async with client.stream("GET", f"{base}/students?limit={STUDENTS}") as response:
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    peak = max(peak, rss_kib(pid))
    return before, peak, size, (time.perf_counter() - started) / pulls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="per phase (default 60)")
    parser.add_argument("--rate", type=float, default=60.0, help="requests per second (60)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="gatekeeper-bench-proxy-"))
    sis, sis_url, proxy, proxy_url = start_sis_and_proxy(work)
    try:
        direct = Phase("direct")
        proxied = Phase("proxy")
        for phase, url, token, watch in (
            (direct, sis_url, SIS_TOKEN, None),
            (proxied, proxy_url, TEACHER_TOKEN, proxy.pid),
        ):
            before = {"sis": cpu_seconds(sis.pid), "proxy": cpu_seconds(proxy.pid)}
            asyncio.run(drive(phase, url, token, args.rate, args.seconds, watch_pid=watch))
            done = max(1, len(phase.latencies) + phase.errors + 20)
            phase.cpu = {
                name: (cpu_seconds(p.pid) - before[name]) * 1000 / done
                for name, p in (("sis", sis), ("proxy", proxy))
            }
        bulk = asyncio.run(bulk_pulls(proxy_url, proxy.pid))
    finally:
        proxy.terminate()
        sis.terminate()
        proxy.wait(30)
        sis.wait(30)

    from gatekeeper.audit.log import AuditLog

    with AuditLog.open_sqlite(work / "gk") as log:
        entries = log.size()
    print(
        f"single-student lookups, open loop at {args.rate:g} req/s for {args.seconds:g} s "
        f"each; {os.cpu_count()} CPUs shared by SIS, proxy and load generator"
    )
    print(direct.row())
    print(proxied.row())
    print(
        f"ratio    proxy/direct: p50 x{proxied.quantile(0.5) / direct.quantile(0.5):.1f}, "
        f"p99 x{proxied.quantile(0.99) / direct.quantile(0.99):.1f}"
    )
    print(
        f"CPU per request: direct phase SIS {direct.cpu['sis']:.2f} ms; proxy phase "
        f"SIS {proxied.cpu['sis']:.2f} ms + proxy {proxied.cpu['proxy']:.2f} ms"
    )
    print(
        "proxy RSS: "
        + ", ".join(f"{moment:g} s {kib / 1024:.1f} MiB" for moment, kib in proxied.rss)
    )
    print(
        f"bulk: {STUDENTS}-student pages through the proxy, {bulk[2] / 1e6:.1f} MB each in "
        f"{bulk[3]:.2f} s; proxy RSS {bulk[0] / 1024:.1f} MiB before, "
        f"{bulk[1] / 1024:.1f} MiB peak while streaming"
    )
    print(f"audit log entries: {entries} (proxy requests incl. warm-up and bulk: "
          f"{len(proxied.latencies) + proxied.errors + 20 + 5})")  # fmt: skip
    if args.keep:
        print(f"kept {work}")
    else:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0 if direct.errors == proxied.errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
