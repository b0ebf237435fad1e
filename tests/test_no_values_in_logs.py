"""No request or record values in the operational log, nor in invalid-request entries.

A canary string is planted in every value a caller controls — names, dates,
purpose text, enum values, unknown keys, broken JSON — and the test reads
every line the ``gatekeeper`` loggers wrote (DEBUG and up) and every audit
entry of a request that failed validation. The caller still gets the full
message (which names the value) from the parser; the logs get it redacted.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import gatekeeper
from gatekeeper.errors import RequestError
from gatekeeper.request import parse_request
from tests.conftest import REPO_ROOT

CANARY = "Oaxaca-CANARY-7731"

BASE = json.loads((REPO_ROOT / "tests" / "cases" / "public.jsonl").read_text().splitlines()[0])[
    "request"
]


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def captured() -> Iterator[_Lines]:
    handler = _Lines()
    logger = logging.getLogger("gatekeeper")
    before = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before)


def variant(path: list[str], value: Any) -> dict[str, Any]:
    request = copy.deepcopy(BASE)
    node = request
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return request


INVALID: list[Any] = [
    variant(["student", "dob"], f"born 2013-02-30 in {CANARY}"),
    variant(["channel"], f"{CANARY}_channel"),
    variant(["requester", "kind"], CANARY),
    variant(["student", CANARY], "x"),
    variant(["as_of"], f"{CANARY}T00:00:00Z"),
    variant(["fields"], [f"grades {CANARY}"]),
    f'{{"request_id": "{CANARY}", oops',
    json.dumps(variant(["legal_basis"], {"type": CANARY})).encode(),
]


def test_invalid_requests_leave_no_values_in_logs_or_entries(
    tmp_path: Path, captured: _Lines
) -> None:
    for request in INVALID:
        # The caller is told what is wrong, value included.
        with pytest.raises(RequestError) as caught:
            parse_request(request)
        assert caught.value.loggable.count("<value>") >= (CANARY in str(caught.value))
    with gatekeeper.open(data_dir=tmp_path / "gk") as gk:
        for request in INVALID:
            decision = gk.decide(request)
            assert decision.decision == "deny" and decision.reason == "invalid_request"
            assert decision.audit is not None
        entries = gk.audit.store.read_entries(0, gk.audit.size())
    assert len(entries) == len(INVALID)
    for entry in entries:
        value = json.loads(entry.data)
        assert value["kind"] == "invalid_request"
        assert CANARY not in entry.data.decode("utf-8"), value
    assert any("request_invalid" in line for line in captured.lines)
    leaked = [line for line in captured.lines if CANARY in line]
    assert leaked == []


def test_decisions_log_no_request_values(tmp_path: Path, captured: _Lines) -> None:
    request = copy.deepcopy(BASE)
    request["purpose_text"] = f"checking on {CANARY}"
    request["student"] = dict(request["student"], name=f"{CANARY} Lopez")
    with gatekeeper.open(data_dir=tmp_path / "gk") as gk:
        decision = gk.decide(request)
    assert decision.reason is None
    assert any("decided" in line for line in captured.lines)
    assert [line for line in captured.lines if CANARY in line] == []


def test_an_internal_error_is_logged_without_its_message(tmp_path: Path, captured: _Lines) -> None:
    """A bug that raises with a value in its message: a deny, and the log names the
    type and the place only."""

    class Leaky:
        name = "leaky"
        revision = "sha256:00"

        def evaluate(self, policy_input: Any) -> dict[str, Any]:
            raise ValueError(f"cannot handle {policy_input['student']}")

        def close(self) -> None:
            return None

    request = copy.deepcopy(BASE)
    request["student"] = dict(request["student"], name=f"{CANARY} Lopez")
    gk = gatekeeper.Gatekeeper(engine=Leaky(), allow_unaudited=True)
    decision = gk.decide(request)
    assert decision.decision == "deny" and decision.reason == "internal_error"
    lines = [line for line in captured.lines if "internal_error" in line]
    assert lines and "ValueError at test_no_values_in_logs.py:" in lines[0]
    assert [line for line in captured.lines if CANARY in line] == []


def test_least_data_entries_keep_no_student_facts(tmp_path: Path) -> None:
    """audit_policy_input = false: the entry keeps ids, names of fields, the decision
    and the document summaries, but none of the student's facts (name, birth date,
    flags) that the policy input would carry for replay."""
    config = tmp_path / "gatekeeper.toml"
    config.write_text("[gatekeeper]\naudit_policy_input = false\n", encoding="utf-8")
    request = copy.deepcopy(BASE)
    request["student"] = {"id": "S001", "name": f"{CANARY} Lopez", "dob": "2016-05-04"}
    with gatekeeper.open(data_dir=tmp_path / "lean", config=config) as gk:
        assert gk.decide(request).reason is None
        lean = json.loads(gk.audit.store.read_entries(0, 1)[0].data)
    with gatekeeper.open(data_dir=tmp_path / "full") as gk:
        assert gk.decide(request).reason is None
        full = json.loads(gk.audit.store.read_entries(0, 1)[0].data)
    assert lean["policy_input"] is None and full["policy_input"] is not None
    assert CANARY.lower() in json.dumps(full).lower()  # the replay input has the name key
    assert CANARY.lower() not in json.dumps(lean).lower()
    assert "2016-05-04" not in json.dumps(lean)
    assert lean["decision"] == full["decision"] and lean["student"] == full["student"]
