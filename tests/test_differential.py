"""Differential and safety properties of the policy pack on generated requests.

- The embedded engine (regopy) and a real OPA server must return identical raw
  decisions for the same policy input (``pytest.mark.opa``).
- Safety properties of RULES.md hold for every generated request on the
  embedded engine: no permit in an immigration context except IMM-10 on an
  approved judicial document or IMM-07 on a verified written consent; no
  status field ever released; only requested fields released, and only by a
  permit; allowed and denied fields partition the request; an unverified
  external requester is never permitted. Beyond these: every immigration
  context of RULES.md is flagged; a permit by a court document (IMM-10,
  FERPA-9, FERPA-9N) or a consent (IMM-07, CONS-01) meets the rest of its
  rule's conditions; the embedded engine decides every contract-valid request.
- The generator reaches enough of the rule space for the above to mean something.

The properties look at the *unchecked* engine output (``evaluate_raw``), so a
pack bug shows up here with the rule that produced it, not as an EngineError
from the engines' own last-line checks.

Every test is derandomized (same examples on every run, no example database):
a failure in CI reproduces locally.
"""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatekeeper.engines import EmbeddedEngine, OpaServerEngine, WasmEngine, load_pack
from gatekeeper.errors import EngineError
from gatekeeper.request import parse_request
from tests.conftest import POLICIES_DIR
from tests.opa_server import OpaServer
from tests.strategies import (
    AS_OF_DATE,
    IMMIGRATION_AGENCIES,
    IMMIGRATION_DOCUMENTS,
    JUDICIAL_BASIS_TYPES,
    STATUS_FIELDS,
    access_requests,
    consent_requests,
    court_document_requests,
    immigration_requests,
    status_field_requests,
)

Request = dict[str, Any]
Decision = dict[str, Any]


def _settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# --------------------------------------------------------------------------- engines


@pytest.fixture(scope="module")
def embedded() -> Iterator[EmbeddedEngine]:
    engine = EmbeddedEngine(load_pack(POLICIES_DIR))
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def opa_engine(opa_server: OpaServer) -> Iterator[OpaServerEngine]:
    # A generous timeout: this compares answers, it does not test latency.
    engine = OpaServerEngine(load_pack(POLICIES_DIR), url=opa_server.url, timeout=10.0)
    engine.check_revision(force=True)
    yield engine
    engine.close()


def policy_input(request: Request) -> dict[str, Any]:
    """The policy input of a generated request (which must be contract-valid)."""
    return parse_request(request).to_policy_input()


def outcome(engine: EmbeddedEngine | OpaServerEngine | WasmEngine, request: Request) -> Decision:
    """The raw decision, or ``{"engine_error": ...}`` when the engine fails (fail closed)."""
    try:
        raw = engine.evaluate_raw(policy_input(request))
    except EngineError as exc:
        return {"engine_error": f"{type(exc).__name__}: {exc}"}
    if not isinstance(raw, dict):
        return {"engine_error": f"undefined or malformed decision: {raw!r}"}
    return raw


def decide(engine: EmbeddedEngine, request: Request) -> Decision | None:
    """The raw decision, or None when the engine failed: the Gatekeeper then denies
    (fail closed), which no safety property forbids. Failures are the concern of
    test_embedded_engine_decides_every_request."""
    out = outcome(engine, request)
    return None if "engine_error" in out else out


def show(request: Request, **outputs: Any) -> str:
    parts = ["request:", json.dumps(request, indent=2, ensure_ascii=False)]
    for name, output in outputs.items():
        parts += [f"{name}:", json.dumps(output, indent=2, sort_keys=True, ensure_ascii=False)]
    return "\n".join(parts)


# ----------------------------------------------------------------- RULES.md, independently


def requested_fields(request: Request) -> list[str]:
    return list(dict.fromkeys(request["fields"]))


def immigration_context(request: Request) -> bool:
    """RULES.md's "immigration context", computed from the request itself."""
    requester = request["requester"]
    codes = {requester.get("agency"), request.get("on_behalf_of"), *request.get("task_force", ())}
    authority_involved = requester["kind"] == "immigration_authority" or bool(
        codes & set(IMMIGRATION_AGENCIES)
    )
    return (
        authority_involved
        or request["purpose"] == "immigration_enforcement"
        or (request["purpose"] == "welfare_check" and authority_involved)
        or (request.get("vendor") or {}).get("enforcement_linked") is True
        or (request.get("legal_basis") or {}).get("type") in IMMIGRATION_DOCUMENTS
    )


def external(request: Request) -> bool:
    return bool(request["requester"]["kind"] != "district_staff")


def verified_written_consent(request: Request) -> bool:
    consent = request.get("consent") or {}
    return (
        consent.get("signed") is True
        and consent.get("received_via") != "verbal_claim"
        and (
            consent.get("received_via") == "district_direct"
            or consent.get("verified_with_rightholder") is True
        )
    )


def _name_key(name: str | None) -> str:
    return " ".join(unicodedata.normalize("NFKC", name or "").casefold().split())


def names_the_student(request: Request) -> bool:
    """PROC-04: the document names this student by id, or by name and date of birth."""
    student = request.get("student")
    if student is None:
        return False
    for named in (request.get("legal_basis") or {}).get("named_students", ()):
        if named.get("id") and named.get("id") == student.get("id"):
            return True
        if (
            named.get("name")
            and _name_key(named.get("name")) == _name_key(student.get("name"))
            and named.get("dob") is not None
            and named.get("dob") == student.get("dob")
        ):
            return True
    return False


def _as_date(value: str | None) -> date | None:
    return None if value is None else date.fromisoformat(value)


def student_age(request: Request) -> int | None:
    student = request.get("student") or {}
    if "age" in student:
        return int(student["age"])
    dob = _as_date(student.get("dob"))
    if dob is None:
        return None
    today = AS_OF_DATE
    return today.year - dob.year - ((today.month, today.day) < (dob.month, dob.day))


# --------------------------------------------------------------------------- (a) differential


@pytest.mark.opa
@_settings(500)
@given(request=access_requests())
def test_embedded_and_opa_server_decide_identically(
    request: Request, embedded: EmbeddedEngine, opa_engine: OpaServerEngine
) -> None:
    ours = outcome(embedded, request)
    theirs = outcome(opa_engine, request)
    assert ours == theirs, "engines disagree\n" + show(request, embedded=ours, opa=theirs)


@pytest.mark.opa
@_settings(1000)
@given(request=access_requests())
def test_embedded_and_wasm_decide_identically(
    request: Request, embedded: EmbeddedEngine, wasm_engine: WasmEngine
) -> None:
    """The OPA-compiled Wasm module agrees with rego-cpp (and so with the OPA server)."""
    ours = outcome(embedded, request)
    theirs = outcome(wasm_engine, request)
    assert ours == theirs, "engines disagree\n" + show(request, embedded=ours, wasm=theirs)


# --------------------------------------------------------------------------- (b) safety


@_settings(500)
@given(request=st.one_of(immigration_requests(), court_document_requests(), consent_requests()))
def test_no_permit_in_an_immigration_context_but_imm10_or_imm07(
    request: Request, embedded: EmbeddedEngine
) -> None:
    out = decide(embedded, request)
    if out is None or out["decision"] != "permit":
        return
    if not (out["immigration_context"] or immigration_context(request)):
        return
    deciding = out["rules"][0]
    basis = request.get("legal_basis") or {}
    if deciding == "IMM-10":
        grounded = (
            request.get("legal_review") == "approved" and basis.get("type") in JUDICIAL_BASIS_TYPES
        )
    elif deciding == "IMM-07":
        grounded = verified_written_consent(request)
    else:
        grounded = False
    assert grounded, f"permit in an immigration context by {deciding}\n" + show(request, out=out)


@_settings(300)
@given(request=st.one_of(immigration_requests(), access_requests()))
def test_every_immigration_context_of_rules_md_is_flagged(
    request: Request, embedded: EmbeddedEngine
) -> None:
    """The pack may flag more than RULES.md does (it normalizes agency names and
    treats names with an enforcement word, such as DHS-OIG, as immigration
    authorities): that errs on the safe side and is not asserted here. Missing
    one of RULES.md's contexts is not."""
    out = decide(embedded, request)
    if out is None or not immigration_context(request):
        return
    assert out["immigration_context"] is True, show(request, out=out)


COURT_PERMITS = ("IMM-10", "FERPA-9", "FERPA-9N")
CONSENT_PERMITS = ("IMM-07", "CONS-01")
SUBPOENAS = ("judicial_subpoena", "grand_jury_subpoena")


def court_document_problems(request: Request, out: Decision) -> list[str]:
    """What the document of an IMM-10, FERPA-9 or FERPA-9N permit fails of its
    rule and of PROC-01..06 (RULES.md, rule table and date rules)."""
    rule = out["rules"][0]
    basis = request.get("legal_basis") or {}
    doc_type = basis.get("type")
    problems: list[str] = []
    if doc_type not in JUDICIAL_BASIS_TYPES:
        problems.append(f"{doc_type} is not a judicial basis")
    if request.get("legal_review") != "approved":
        problems.append("legal review not approved")
    if rule == "IMM-10" and basis.get("directs_lea") is not True:
        problems.append("does not direct the LEA")
    if not names_the_student(request):
        problems.append("does not name this student")
    if not basis.get("issuing_court") or not basis.get("jurisdiction"):
        problems.append("no issuing court or jurisdiction")
    signer = basis.get("signed_by")
    if doc_type in ("judicial_search_warrant", "court_order") and signer not in (
        "judge",
        "magistrate",
    ):
        problems.append(f"warrant or order signed by {signer}")
    if doc_type in SUBPOENAS and (
        signer not in ("clerk", "attorney") or basis.get("seal") is not True
    ):
        problems.append("subpoena without a seal or a clerk's or attorney's signature")
    issued, execute_by, returns = (
        _as_date(basis.get(key)) for key in ("issued", "execute_by", "return_date")
    )
    if issued is not None and issued > AS_OF_DATE:
        problems.append("issued after as_of")
    if execute_by is not None and AS_OF_DATE > execute_by:
        problems.append("past execute_by")
    if doc_type in SUBPOENAS and (returns is None or AS_OF_DATE >= returns):
        problems.append("subpoena without a future return date")
    parent_notice_owed = rule == "FERPA-9" or (
        rule == "IMM-10" and basis.get("nondisclosure_order") is not True
    )
    if doc_type in SUBPOENAS and returns is not None and parent_notice_owed:
        if (returns - AS_OF_DATE).days < 10:
            problems.append("return date leaves under 10 days for the parent notice")
    if doc_type == "judicial_search_warrant":
        if basis.get("jurisdiction") == "CA":
            if issued is None or (AS_OF_DATE - issued).days > 10:
                problems.append("California search warrant older than 10 days")
        elif execute_by is None:
            problems.append("federal search warrant without execute_by")
    if not set(out["allowed_fields"]) <= set(basis.get("fields_in_scope") or ()):
        problems.append("releases fields outside fields_in_scope")
    return problems


def consent_problems(request: Request, out: Decision) -> list[str]:
    """What the consent of an IMM-07 or CONS-01 permit fails of CONS-01's tests
    (IMM-07 matches as CONS-01 does) and of IMM-07's own."""
    consent = request.get("consent") or {}
    requester = request["requester"]
    problems: list[str] = []
    if not verified_written_consent(request):
        problems.append("not a signed writing received directly or verified")
    if "bulk" in request:
        problems.append("a bulk request")
    revoked = _as_date(consent.get("revoked_on"))
    dated = _as_date(consent.get("dated"))
    if revoked is not None and revoked <= AS_OF_DATE:
        problems.append("revoked")
    if dated is None or dated > AS_OF_DATE:
        problems.append("undated or dated after as_of")
    if consent.get("recipient") not in (requester.get("agency"), requester["id"]):
        problems.append("names another recipient")
    if consent.get("purpose") != request["purpose"]:
        problems.append("for another purpose")
    records = consent.get("records") or []
    if "all" not in records and not set(request["fields"]) <= set(records):
        problems.append("does not cover the records")
    if out["rules"][0] == "IMM-07" and consent.get("signer_in_custody") is True:
        problems.append("signer in custody")
    age = student_age(request)
    role = consent.get("signed_by_role")
    parent_role = role in ("parent", "guardian", "sponsor_acting_as_parent")
    if not (
        (age is not None and age < 18 and parent_role)
        or (age is not None and age >= 18 and role == "eligible_student")
    ):
        problems.append("signer is not the right-holder")
    return problems


@_settings(1500)
@given(request=court_document_requests())
def test_court_document_permits_rest_on_a_valid_document(
    request: Request, embedded: EmbeddedEngine
) -> None:
    out = decide(embedded, request)
    if out is None or out["decision"] != "permit" or out["rules"][0] not in COURT_PERMITS:
        return
    problems = court_document_problems(request, out)
    assert not problems, f"{out['rules'][0]} permit, but: {problems}\n" + show(request, out=out)


@_settings(400)
@given(request=consent_requests())
def test_consent_permits_rest_on_a_matching_consent(
    request: Request, embedded: EmbeddedEngine
) -> None:
    out = decide(embedded, request)
    if out is None or out["decision"] != "permit" or out["rules"][0] not in CONSENT_PERMITS:
        return
    problems = consent_problems(request, out)
    assert not problems, f"{out['rules'][0]} permit, but: {problems}\n" + show(request, out=out)


@_settings(500)
@given(request=st.one_of(access_requests(), status_field_requests()))
def test_released_fields_are_requested_and_never_status(
    request: Request, embedded: EmbeddedEngine
) -> None:
    out = decide(embedded, request)
    if out is None:
        return
    allowed, denied = out["allowed_fields"], out["denied_fields"]
    requested = requested_fields(request)
    context = show(request, out=out)
    assert not set(allowed) & set(STATUS_FIELDS), "status field released\n" + context
    assert set(allowed) <= set(requested), "unrequested field released\n" + context
    if out["decision"] != "permit":
        assert allowed == [], "fields allowed without a permit\n" + context
    assert Counter(allowed) + Counter(denied) == Counter(requested), (
        "allowed + denied is not the requested fields\n" + context
    )


@_settings(300)
@given(request=access_requests(), flag_absent=st.booleans())
def test_unverified_external_requester_is_never_permitted(
    request: Request, flag_absent: bool, embedded: EmbeddedEngine
) -> None:
    requester = dict(request["requester"])
    if flag_absent:  # absent means unverified
        requester.pop("identity_verified", None)
    else:
        requester["identity_verified"] = False
    request = {**request, "requester": requester}
    out = decide(embedded, request)
    if out is not None and external(request):
        assert out["decision"] != "permit", show(request, out=out)


@_settings(300)
@given(request=access_requests())
def test_embedded_engine_decides_every_request(request: Request, embedded: EmbeddedEngine) -> None:
    """A contract-valid request gets a decision, not an engine error (which would
    deny it for the wrong reason and hide what the rules say)."""
    out = outcome(embedded, request)
    assert "engine_error" not in out, show(request, out=out)


# --------------------------------------------------------------------------- (c) reach


def test_generator_reaches_the_rule_space(embedded: EmbeddedEngine) -> None:
    outcomes: list[tuple[str, str]] = []

    @_settings(400)
    @given(request=access_requests())
    def collect(request: Request) -> None:
        out = outcome(embedded, request)
        if "engine_error" not in out:
            outcomes.append((out["decision"], out["rules"][0]))

    collect()
    decisions = Counter(decision for decision, _ in outcomes)
    rules = Counter(rule for _, rule in outcomes)
    summary = f"{len(outcomes)} requests; decisions {dict(decisions)}; deciding rules {dict(rules)}"
    assert len(outcomes) >= 350, summary
    assert set(decisions) == {"permit", "deny", "escalate"}, summary
    assert len(rules) >= 25, summary
