"""`gatekeeper demo`, the README's first command, run for real: the demo SIS and
the proxy on loopback, the guard API, the audit log, the reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from gatekeeper.audit.note import Verifier, open_checkpoint

REPO_ROOT = Path(__file__).resolve().parent.parent

# (deciding rule, decision, released anything?) per scenario, in the order the demo runs them.
EXPECTED = [
    ("A01", "proxy", "permit", "FERPA-1"),
    ("A01", "proxy", "permit", "FERPA-1"),
    ("A23", "proxy", "permit", "FERPA-1V"),
    ("A24", "proxy", "escalate", "IMM-14R"),
    ("A24", "proxy", "deny", "IMM-14"),
    ("A04", "proxy", "deny", "IMM-01"),
    ("A31", "proxy", "deny", "IMM-02"),
    ("A03", "front office", "permit", "FERPA-12"),
    ("A20", "front office", "permit", "FERPA-10"),
    ("A05", "front office", "deny", "IMM-03"),
    ("A26", "front office", "deny", "IMM-13"),
    ("A29", "front office", "deny", "IMM-01"),
    ("A11", "front office", "escalate", "IMM-11"),
    ("A10", "front office", "permit", "IMM-10"),
]


def run_demo(data_dir: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "gatekeeper", "--data-dir", str(data_dir), "demo"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    return result, time.monotonic() - started


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    result, took = run_demo(data)
    assert result.returncode == 0, result.stdout + result.stderr
    assert took < 60, f"the demo took {took:.1f} s"
    # Progress on stderr, the table and the summary on stdout.
    assert "[6/6] writing the activity and enforcement reports ... done" in result.stderr
    out = result.stdout
    assert "Audit log: 16/16 entries valid" in out and "- OK" in out
    assert "Make a reasonable effort to notify the parent" in out  # the staff guidance

    outcomes = json.loads((data / "demo-decisions.json").read_text())
    got = [(o["case"], o["path"], o["decision"], o["rules"][0]) for o in outcomes]
    assert got == EXPECTED
    for o in outcomes:
        assert o["decision_id"], o
        if o["decision"] != "permit":
            assert o["released"].startswith("nothing"), o
            assert o["guidance"], o
    # Refused API calls never reached the SIS; the vendor got its contracted fields only.
    assert all(o["http_status"] == 403 for o in outcomes[3:7])
    assert "metadata.busRoute" in outcomes[2]["released"]
    assert "homePhone" not in outcomes[2]["released"]
    # The warrant's release waited for the parent notice, then released its scope only.
    warrant = outcomes[-1]
    assert warrant["released"] == "nothing yet: held for NOTIFY_PARENT_PRE"
    assert warrant["notes"] == [
        "after the legal office acknowledged NOTIFY_PARENT_PRE: released metadata.attendance"
    ]

    # The log it names verifies with the CLI, and its checkpoint opens with its key.
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    cli = [sys.executable, "-m", "gatekeeper", "--data-dir", str(data)]
    verify = subprocess.run(
        [*cli, "audit", "verify"], capture_output=True, text=True, env=env, check=False
    )
    assert verify.returncode == 0 and "16/16 entries valid" in verify.stdout, verify
    vkey = subprocess.run(
        [*cli, "audit", "vkey"], capture_output=True, text=True, env=env, check=True
    ).stdout.strip()
    note = subprocess.run(
        [*cli, "audit", "checkpoint"], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert open_checkpoint(note, [Verifier(vkey)]).size == 16
    assert vkey in out
    for name in ("activity.html", "enforcement.html", "activity.csv", "enforcement.json"):
        assert (data / "reports" / name).stat().st_size > 0, name
    enforcement = json.loads((data / "reports" / "enforcement.json").read_text())
    assert enforcement["checkpoint"]["size"] == 16 and enforcement["checkpoint"]["verified"]
    # TrackLink, the ICE client, the I-200, the "welfare check", the phone call, the
    # warrant: 6 immigration-related requests. The warrant was decided twice (escalated,
    # then approved by legal: one request_id), so it counts once, complied with, and no
    # escalation is left open.
    summary = enforcement["summary"]
    assert (summary["received"], summary["refused"], summary["escalated"], summary["complied"]) == (
        6,
        5,
        0,
        1,
    )

    # Run again on the same data directory: the log grows and still verifies.
    again, _ = run_demo(data)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Audit log: 32/32 entries valid" in again.stdout
