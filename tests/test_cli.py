"""`gatekeeper decide`: output and exit statuses of CONTRACT.md, run as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.opa_server import OpaServer, free_port

EXAMPLES = REPO_ROOT / "examples"


def run(
    *args: str, stdin: bytes | None = None, data_dir: Path
) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.run(
        [sys.executable, "-m", "gatekeeper.cli", "--data-dir", str(data_dir), *args],
        input=stdin,
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_decide_file_prints_the_decision(tmp_path: Path) -> None:
    result = run("decide", str(EXAMPLES / "ice-admin-warrant.json"), data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    decision = json.loads(result.stdout)
    assert decision["decision"] == "deny"
    assert decision["rules"][:2] == ["IMM-03", "IMM-01"]
    assert set(decision) == {
        "decision_id",
        "request_id",
        "decision",
        "rules",
        "obligations",
        "allowed_fields",
        "denied_fields",
        "guidance",
        "policy_revision",
        "engine",
        "audit",
    }
    assert decision["engine"] == "embedded"


def test_decide_stdin(tmp_path: Path) -> None:
    body = (EXAMPLES / "teacher-grades.json").read_bytes()
    result = run("decide", "-", stdin=body, data_dir=tmp_path)
    assert result.returncode == 0
    assert json.loads(result.stdout)["allowed_fields"] == ["grades", "attendance"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"channel": "internal"', "JSON"),
        (b"[]", "object"),
        (json.dumps({"nondisclosure_ordr": True}).encode(), "nondisclosure_ordr"),
        (b"{" + b'"a": "' + b"x" * 70000 + b'"}', "64"),
    ],
    ids=["truncated", "not-an-object", "unknown-key", "oversized"],
)
def test_invalid_request_exits_2_and_names_the_problem(
    tmp_path: Path, body: bytes, message: str
) -> None:
    result = run("decide", "-", stdin=body, data_dir=tmp_path)
    assert result.returncode == 2
    err = result.stderr.decode()
    assert err.startswith("gatekeeper: invalid request:") and message in err, err
    denial = json.loads(result.stdout)
    assert denial["decision"] == "deny" and denial["allowed_fields"] == []


def test_unknown_nested_key_is_named(tmp_path: Path) -> None:
    request = json.loads((EXAMPLES / "hsi-judicial-warrant.json").read_text())
    request["legal_basis"]["nondisclosure_ordr"] = False
    result = run("decide", "-", stdin=json.dumps(request).encode(), data_dir=tmp_path)
    assert result.returncode == 2
    assert "legal_basis.nondisclosure_ordr" in result.stderr.decode()
    assert "nondisclosure_order" in result.stderr.decode()  # the suggestion


def generous_opa_timeout(tmp_path: Path) -> str:
    """A configuration file giving the OPA engine 5 s: these tests are about what
    the server answers (or that it refuses), not how fast. The first decision of
    a new process also checks the server's revision, which a loaded CI machine
    can push past the default 0.25 s; a refusal is reported at once either way.
    The deadline has tests of its own."""
    config = tmp_path / "gatekeeper.toml"
    config.write_text("[gatekeeper]\nopa_timeout = 5.0\n")
    return str(config)


@pytest.mark.opa
def test_engine_down_exits_1_with_a_deny(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = run(
        "--config",
        generous_opa_timeout(tmp_path),
        "decide",
        str(EXAMPLES / "teacher-grades.json"),
        "--engine",
        "opa",
        "--opa-url",
        url,
        data_dir=tmp_path,
    )
    assert result.returncode == 1
    decision = json.loads(result.stdout)
    assert decision["decision"] == "deny" and decision["reason"] == "engine_unreachable"
    assert decision["allowed_fields"] == []
    assert "engine_unreachable" in result.stderr.decode()


@pytest.mark.opa
def test_decide_with_opa_engine(tmp_path: Path, opa_server: OpaServer) -> None:
    result = run(
        "--config",
        generous_opa_timeout(tmp_path),
        "decide",
        str(EXAMPLES / "hsi-judicial-warrant.json"),
        "--engine",
        "opa",
        "--opa-url",
        opa_server.url,
        data_dir=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    decision = json.loads(result.stdout)
    assert decision["engine"] == "opa" and decision["decision"] == "permit"
    assert decision["rules"][0] == "IMM-10"


def test_missing_file_exits_1(tmp_path: Path) -> None:
    result = run("decide", str(tmp_path / "nope.json"), data_dir=tmp_path)
    assert result.returncode == 1
    assert "cannot read" in result.stderr.decode()


def test_a_pack_that_cannot_load_prints_a_deny_and_exits_1(tmp_path: Path) -> None:
    """The README: on exit 1 the printed decision is a deny with a reason. A pack
    rego-cpp cannot compile (a module copied beside itself): standard output
    holds only that decision (rego-cpp's own messages go to stderr)."""
    from tests.conftest import uncompilable_pack

    pack = uncompilable_pack(tmp_path)
    result = run(
        "--policy-dir",
        str(pack),
        "decide",
        str(EXAMPLES / "teacher-grades.json"),
        data_dir=tmp_path / "data",
    )
    assert result.returncode == 1
    decision = json.loads(result.stdout)  # nothing else on stdout
    assert decision["decision"] == "deny" and decision["reason"] == "policy_error"
    assert decision["allowed_fields"] == [] and decision["audit"] is None
    assert b"cannot compile the pack" in result.stderr
