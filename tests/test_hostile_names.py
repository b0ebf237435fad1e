"""Spelling is not a loophole: agency and court names in any form, on both engines.

Found in review: before normalization, "ice-hsi", "ICE HSI", "ICE-HSI\\u200b",
full-width letters or the agency's full name took a request out of the
immigration context, and rego-cpp (which does not decode \\u escapes in its
input) passed court names OPA rejected.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gatekeeper import Gatekeeper
from gatekeeper.engines import EmbeddedEngine, OpaServerEngine, load_pack
from tests.conftest import POLICIES_DIR
from tests.opa_server import OpaServer

A10 = next(
    json.loads(line)["request"]
    for line in (Path(__file__).parent / "cases" / "public.jsonl").read_text().splitlines()
    if json.loads(line)["id"] == "A10"
)

AGENCY_SPELLINGS = [
    "ice-hsi",
    "ICE HSI",
    "ICE_HSI",
    "ICE-HSI\u200b",
    "ICE-HSI\t",
    "\uff29\uff23\uff25-HSI",
    "U.S. Immigration and Customs Enforcement",
    "Homeland Security Investigations",
    "DHS / HSI",
    "Enforcement and Removal Operations",
]
COURT_SPELLINGS = [
    "\u201cICE\u201d Office of the Principal Legal Advisor",
    "\u00abDHS\u00bb Field Office",
    "Field Office\tICE",
    "ERO\nDHS",
    "Homeland Secur\u0131ty Court",
    "Board of Immigration Appeals",
    "Immigration  Court",
    "Immigration and\nCustoms Enforcement",
    "U.S. Citizenship and Immigration Services",
]


@pytest.fixture(scope="module")
def engines(opa_server: OpaServer) -> Iterator[dict[str, Gatekeeper]]:
    pack = load_pack(POLICIES_DIR)
    yield {
        "embedded": Gatekeeper(engine=EmbeddedEngine(pack), allow_unaudited=True),
        "opa": Gatekeeper(
            engine=OpaServerEngine(pack, url=opa_server.url, timeout=5), allow_unaudited=True
        ),
    }


def both(engines: dict[str, Gatekeeper], request: dict[str, Any]) -> dict[str, Any]:
    out = {name: gk.decide(request).to_dict() for name, gk in engines.items()}
    keys = ("decision", "rules", "obligations", "allowed_fields")
    assert {k: out["embedded"][k] for k in keys} == {k: out["opa"][k] for k in keys}, out
    return out["embedded"]


@pytest.mark.opa
@pytest.mark.parametrize("agency", AGENCY_SPELLINGS)
def test_agency_spellings_keep_the_immigration_context(
    engines: dict[str, Gatekeeper], agency: str
) -> None:
    request = copy.deepcopy(A10)
    request["requester"].update({"kind": "law_enforcement", "agency": agency})
    request["legal_basis"]["directs_lea"] = False  # a defect IMM-10 checks, FERPA-9 does not
    decision = both(engines, request)
    assert decision["decision"] == "deny"
    assert decision["rules"][0] == "IMM-12", decision["rules"]


@pytest.mark.opa
@pytest.mark.parametrize("court", COURT_SPELLINGS)
def test_court_spellings_fail_proc_01(engines: dict[str, Gatekeeper], court: str) -> None:
    request = copy.deepcopy(A10)
    request["legal_basis"].update(
        {"type": "court_order", "signed_by": "judge", "issuing_court": court}
    )
    decision = both(engines, request)
    assert decision["decision"] == "deny"
    assert decision["rules"][:2] == ["IMM-03", "PROC-01"], decision["rules"]


@pytest.mark.opa
def test_unicode_names_decide_alike(engines: dict[str, Gatekeeper]) -> None:
    request = copy.deepcopy(A10)
    request["student"]["name"] = "Ána  Ruíz"
    request["legal_basis"]["named_students"] = [{"name": "ána ruíz", "dob": "2011-06-02"}]
    assert both(engines, request)["decision"] == "permit"
    request["legal_basis"]["named_students"] = [{"name": "Ana Ruiz\u200b", "dob": "2011-06-03"}]
    assert both(engines, request)["decision"] != "permit"
