"""The decision table: every case of tests/cases/*.jsonl on both engines.

tests/cases/public.jsonl is a copy of shared/cases/public.jsonl. A case names
the expected decision, the deciding rule (the first of ``rules``), the other
rules, the obligations and the allowed fields; the embedded engine and a real
OPA server must both produce it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import gatekeeper
from gatekeeper import Gatekeeper
from gatekeeper.engines import EmbeddedEngine, OpaServerEngine, WasmEngine, load_pack
from gatekeeper.policy.testing import AGREEMENT_KEYS
from tests.conftest import POLICIES_DIR, copy_pack
from tests.opa_server import OpaServer

CASES_DIR = Path(__file__).parent / "cases"
SHARED_CASES = Path(__file__).resolve().parents[2] / "shared" / "cases" / "public.jsonl"


def load_cases() -> list[dict[str, Any]]:
    cases = []
    for path in sorted(CASES_DIR.glob("*.jsonl")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                case = json.loads(line)
                case["_where"] = f"{path.name}:{number}"
                cases.append(case)
    return cases


CASES = load_cases()


@pytest.fixture(scope="module")
def embedded_gk() -> Iterator[Gatekeeper]:
    gk = Gatekeeper(engine=EmbeddedEngine(load_pack(POLICIES_DIR)), allow_unaudited=True)
    yield gk
    gk.close()


@pytest.fixture(scope="module")
def opa_gk(opa_server: OpaServer) -> Iterator[Gatekeeper]:
    engine = OpaServerEngine(load_pack(POLICIES_DIR), url=opa_server.url, timeout=5.0)
    gk = Gatekeeper(engine=engine, allow_unaudited=True)
    yield gk
    gk.close()


@pytest.fixture(scope="module")
def wasm_gk(wasm_engine: WasmEngine) -> Iterator[Gatekeeper]:
    gk = Gatekeeper(engine=wasm_engine, allow_unaudited=True)
    yield gk


def check_case(gk: Gatekeeper, case: dict[str, Any]) -> None:
    decision = gk.decide(case["request"])
    expect = case["expect"]
    got = decision.to_dict()
    where = f"{case['id']} ({case['_where']}): {case.get('title', '')}"
    assert decision.reason is None, f"{where}: failed closed: {decision.reason}"
    assert got["decision"] == expect["decision"], f"{where}: {got}"
    assert got["rules"][0] == expect["rules"][0], f"{where}: deciding rule {got['rules']}"
    assert set(got["rules"]) == set(expect["rules"]), f"{where}: rules {got['rules']}"
    assert set(got["obligations"]) == set(expect["obligations"]), (
        f"{where}: obligations {got['obligations']}"
    )
    assert set(got["allowed_fields"]) == set(expect.get("allowed_fields", [])), (
        f"{where}: allowed {got['allowed_fields']}"
    )
    assert len(got["allowed_fields"]) == len(set(got["allowed_fields"]))
    assert got["policy_revision"] == gk.policy_revision
    assert got["guidance"], f"{where}: no staff guidance"


def test_cases_copy_matches_shared() -> None:
    """The project's copy of the public cases is the shared one (when shared/ is beside us)."""
    if not SHARED_CASES.exists():
        pytest.skip("shared/ is not beside the repository")
    assert (CASES_DIR / "public.jsonl").read_bytes() == SHARED_CASES.read_bytes()


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_case_embedded(embedded_gk: Gatekeeper, case: dict[str, Any]) -> None:
    check_case(embedded_gk, case)


@pytest.mark.opa
@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_case_opa(opa_gk: Gatekeeper, case: dict[str, Any]) -> None:
    check_case(opa_gk, case)
    assert opa_gk.decide(case["request"]).engine == "opa"


@pytest.mark.opa
@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_case_wasm(wasm_gk: Gatekeeper, case: dict[str, Any]) -> None:
    check_case(wasm_gk, case)
    assert wasm_gk.decide(case["request"]).engine == "wasm"


@pytest.mark.opa
def test_engines_give_identical_decisions(
    embedded_gk: Gatekeeper, opa_gk: Gatekeeper, wasm_gk: Gatekeeper
) -> None:
    for case in CASES:
        a = embedded_gk.decide(case["request"]).to_dict()
        for other in (opa_gk, wasm_gk):
            b = other.decide(case["request"]).to_dict()
            for key in (*AGREEMENT_KEYS, "policy_revision"):
                assert a[key] == b[key], (
                    f"{case['id']}: {key} differs on {b['engine']}: {a[key]!r} vs {b[key]!r}"
                )


def test_open_defaults_to_embedded(tmp_path: Path) -> None:
    gk = gatekeeper.open(data_dir=tmp_path / "gk")
    assert gk.engine.name == "embedded"
    assert (tmp_path / "gk").is_dir()
    check_case(gk, CASES[0])


@pytest.mark.opa
def test_a_code_added_to_the_agency_catalog_counts_on_both_engines(
    tmp_path: Path, opa_bin: Path
) -> None:
    """A policy author adds an immigration-authority code to the catalog's list
    (catalog/data.json, agencies.immigration): decisions follow without an edit
    of the pattern, on both engines. Before, only the pattern counted and the
    new code was silently outside the immigration context."""
    pack_dir = copy_pack(tmp_path)
    data_file = pack_dir / "catalog" / "data.json"
    catalog = json.loads(data_file.read_text(encoding="utf-8"))
    assert "INS" not in catalog["agencies"]["immigration"]
    catalog["agencies"]["immigration"].append("INS")
    data_file.write_text(json.dumps(catalog), encoding="utf-8")
    request = {
        "request_id": "agency-catalog",
        "as_of": "2026-04-02T10:00:00-07:00",
        "channel": "in_person",
        "requester": {
            "id": "lapd-1",
            "kind": "law_enforcement",
            "agency": "LAPD",
            "role": "officer",
            "identity_verified": True,
        },
        "task_force": ["INS"],
        "purpose": "criminal_investigation",
        "student": {"id": "S001", "age": 12},
        "fields": ["attendance"],
    }
    before = Gatekeeper(engine=EmbeddedEngine(load_pack(POLICIES_DIR)), allow_unaudited=True)
    assert before.decide(request).immigration_context is False  # the shipped list lacks INS
    pack = load_pack(pack_dir)
    with OpaServer(pack_dir, opa_bin=opa_bin) as server:
        for engine in (EmbeddedEngine(pack), OpaServerEngine(pack, url=server.url, timeout=5.0)):
            decision = Gatekeeper(engine=engine, allow_unaudited=True).decide(request)
            assert decision.reason is None, (engine.name, decision.to_dict())
            assert decision.immigration_context is True, engine.name
            assert (decision.decision, decision.rules) == ("escalate", ("IMM-15T",)), engine.name
