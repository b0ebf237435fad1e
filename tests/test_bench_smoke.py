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
        "bench/audit.py", "--seconds", "0.5", "--threads", "4", "--verify-entries", "3000",
        "--rounds", "20",
    )
    assert "appends: ratio" in out and "verify: 3,000 entries" in out and "decision: ratio" in out


def test_decide_bench_runs_on_the_embedded_engine() -> None:
    out = run("bench/decide.py", "--rounds", "20", "--engine", "embedded")
    assert "embedded: ratio" in out


def test_guarded_lookup_bench_runs() -> None:
    out = run("bench/guarded.py", "--rounds", "10", "--rosters", "1", "--students", "40")
    assert out.count("ratio (median guarded / median unguarded)") == 3
