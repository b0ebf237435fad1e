"""The benchmarks still run (tiny sizes): a benchmark that rots is found in CI,
not on the day its figures are needed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_audit_bench_runs() -> None:
    out = run(
        "bench/audit.py",
        "--seconds",
        "0.5",
        "--threads",
        "4",
        "--verify-entries",
        "3000",
        "--rounds",
        "20",
    )
    assert "appends: ratio" in out and "verify: 3,000 entries" in out
    assert "decision [embedded]: ratio" in out and "decision [wasm]: ratio" in out


def test_decide_bench_runs_on_the_embedded_engine() -> None:
    out = run("bench/decide.py", "--rounds", "20", "--engine", "embedded")
    assert "embedded: ratio" in out


def test_decide_bench_runs_on_the_wasm_engine() -> None:
    out = run("bench/decide.py", "--rounds", "20", "--engine", "wasm")
    assert "wasm: ratio" in out


def test_guarded_lookup_bench_runs() -> None:
    out = run("bench/guarded.py", "--rounds", "10", "--rosters", "1", "--students", "40")
    assert out.count("ratio (median guarded / median unguarded)") == 3


def test_scale_bench_runs(tmp_path: Path) -> None:
    out = run(
        "bench/scale.py", "--entries", "5000", "--dir", str(tmp_path / "scale"),
        "--progress", "2500", "--samples", "50",
    )  # fmt: skip
    assert "append: baseline" in out and "storage by dbstat" in out
    assert "inclusion proof at size 5,000" in out and "checkpoint verify" in out
    assert out.count("5000/5000 entries valid") == 2, out
    # Resumable: a second run over the same directory continues from 5,000.
    out = run(
        "bench/scale.py", "--entries", "6000", "--dir", str(tmp_path / "scale"),
        "--samples", "20", "--verify", "sample", "--no-dbstat",
    )  # fmt: skip
    assert "the log holds 5,000 entries; appending to 6,000" in out
    assert "32 templates" in out and "6000/6000 entries valid" in out


def test_soak_bench_runs() -> None:
    out = run(
        "bench/soak.py", "--duration", "3", "--baseline-duration", "2", "--rate", "10",
        "--threads", "2", "--students", "40", "--sample-every", "1",
    )  # fmt: skip
    assert "ratio proxy/direct" in out and "ratio guarded/unguarded" in out, out
    assert "proxy RSS: start" in out and out.count("entries valid") == 2, out
    assert "FAILED" not in out, out


def test_pg_writers_bench_runs() -> None:
    from tests.conftest import skip_or_fail
    from tests.pg_server import find_pg_bin

    if find_pg_bin() is None:
        skip_or_fail("no PostgreSQL binaries: run scripts/ensure-postgres")
    out = run("bench/pg_writers.py", "--seconds", "1", "--writers", "2", "--threads", "2")
    assert "ratio 2 processes / 1" in out and out.count("): OK") == 2, out
