"""The public surface: __all__, open(), enforce(), thread safety of the embedded engine."""

from __future__ import annotations

import datetime as dt
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import gatekeeper
from gatekeeper import AccessDenied, Gatekeeper
from gatekeeper.engines import EmbeddedEngine, load_pack
from tests.conftest import POLICIES_DIR

CASES = [
    json.loads(line)
    for line in (Path(__file__).parent / "cases" / "public.jsonl").read_text().splitlines()
    if line.strip()
]


@pytest.mark.parametrize("module", ["gatekeeper", "gatekeeper.engines", "gatekeeper.request"])
def test_all_is_sorted_and_complete(module: str) -> None:
    mod = __import__(module, fromlist=["__all__"])

    # ruff's RUF022 order: CONSTANTS, then Classes, then functions.
    def key(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert list(mod.__all__) == sorted(mod.__all__, key=key)
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.{name} is in __all__ but missing"


def test_enforce_raises_with_the_decision(tmp_path: Path) -> None:
    gk = gatekeeper.open(data_dir=tmp_path)
    ice = next(c["request"] for c in CASES if c["id"] == "A04")
    with pytest.raises(AccessDenied) as info:
        gk.enforce(ice)
    assert info.value.decision.rules[0] == "IMM-01"
    teacher = next(c["request"] for c in CASES if c["id"] == "A01")
    assert gk.enforce(teacher).allowed_fields == ("grades", "attendance")


def test_enforce_raises_on_escalate(tmp_path: Path) -> None:
    gk = gatekeeper.open(data_dir=tmp_path)
    pending = next(c["request"] for c in CASES if c["id"] == "A11")
    with pytest.raises(AccessDenied) as info:
        gk.enforce(pending)
    assert info.value.decision.decision == "escalate"


def test_embedded_engine_is_safe_from_many_threads() -> None:
    gk = Gatekeeper(engine=EmbeddedEngine(load_pack(POLICIES_DIR)), allow_unaudited=True)
    expected = {c["id"]: gk.decide(c["request"]).to_dict() for c in CASES}
    work = [c for _ in range(6) for c in CASES]

    def decide(case: dict[str, object]) -> tuple[str, dict[str, object]]:
        return str(case["id"]), gk.decide(case["request"]).to_dict()  # type: ignore[arg-type]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(decide, work))
    assert len(results) == len(work)
    for case_id, got in results:
        want = expected[case_id]
        for key in ("decision", "rules", "obligations", "allowed_fields", "guidance"):
            assert got[key] == want[key], (case_id, key)


def test_config_file(tmp_path: Path) -> None:
    config = tmp_path / "gatekeeper.toml"
    config.write_text('[gatekeeper]\nengine = "embedded"\ntimezone = "America/New_York"\n')
    gk = gatekeeper.open(data_dir=tmp_path / "d", config=config)
    assert gk.timezone == "America/New_York"
    config.write_text('[gatekeeper]\nengin = "opa"\n')
    with pytest.raises(gatekeeper.GatekeeperError, match="engin"):
        gatekeeper.open(data_dir=tmp_path / "d", config=config)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('engine = "rego"', "engine must be one of"),
        ("wasm_timeout = 0", "wasm_timeout must be between"),
        ("wasm_timeout = 61", "wasm_timeout must be between"),
        ("embedded_timeout = 0", "embedded_timeout must be between"),
        ('embedded_timeout = "soon"', "embedded_timeout must be a number of seconds"),
        ("embedded_workers = 0", "embedded_workers must be a whole number from 1 to 256"),
        ("embedded_workers = 2.5", "embedded_workers must be a whole number"),
        ('embedded_workers = "4"', "embedded_workers must be a whole number"),
        ("embedded_workers = true", "embedded_workers must be a whole number"),
        ('audit_policy_input = "no"', "audit_policy_input must be true or false"),
        ("max_as_of_skew = 0", "max_as_of_skew must be between"),
        ("max_as_of_skew = true", "max_as_of_skew must be a number of seconds"),
        ('max_as_of_skew = "soon"', "max_as_of_skew must be a number of seconds"),
    ],
)
def test_bad_settings_are_refused(tmp_path: Path, line: str, message: str) -> None:
    config = tmp_path / "gatekeeper.toml"
    config.write_text(f"[gatekeeper]\n{line}\n")
    with pytest.raises(gatekeeper.GatekeeperError, match=message):
        gatekeeper.load_settings(config)


def test_timezone_changes_the_calendar_date(tmp_path: Path) -> None:
    # 2026-04-15T05:30Z is still April 14 in Los Angeles: a federal warrant
    # executable through April 14 is in date there, not in New York.
    request = json.loads(json.dumps(next(c["request"] for c in CASES if c["id"] == "A10")))
    request["as_of"] = "2026-04-15T05:30:00Z"
    la = gatekeeper.open(data_dir=tmp_path).decide(request)
    ny = gatekeeper.open(data_dir=tmp_path, timezone="America/New_York").decide(request)
    assert la.decision == "permit" and la.rules[0] == "IMM-10"
    assert ny.decision == "deny" and ny.rules[:2] == ("IMM-12", "PROC-03")


def test_no_audit_log_means_no_permit() -> None:
    gk = Gatekeeper(engine=EmbeddedEngine(load_pack(POLICIES_DIR)))
    teacher = next(c["request"] for c in CASES if c["id"] == "A01")
    decision = gk.decide(teacher)
    assert decision.decision == "deny" and decision.reason == "audit_unavailable"
    assert decision.allowed_fields == ()


def test_typed_requests_are_validated_again(tmp_path: Path) -> None:
    import dataclasses

    from gatekeeper.request import parse_request

    gk = gatekeeper.open(data_dir=tmp_path)
    media = parse_request(next(c["request"] for c in CASES if c["id"] == "A22"))
    assert media.student is not None
    broken = dataclasses.replace(
        media,
        student=dataclasses.replace(media.student, flags="dir_optout"),  # type: ignore[arg-type]
    )
    decision = gk.decide(broken)
    assert decision.decision == "deny" and decision.reason == "invalid_request"


def test_a_parsed_request_is_not_parsed_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What parse_request returned is valid and frozen all the way down: decide
    and access take it as it is (gk.access used to parse a dict twice). Any
    other AccessRequest, equal or not, is parsed again, and the as_of skew
    check still applies to a parsed one."""
    import dataclasses

    import gatekeeper.guard as guard_module
    from gatekeeper.request import parse_request, was_parsed

    teacher = next(c["request"] for c in CASES if c["id"] == "A01")
    parsed = parse_request(teacher)
    assert was_parsed(parsed)
    copy = dataclasses.replace(parsed)
    assert copy == parsed and not was_parsed(copy)

    calls: list[object] = []

    def counting(data: Any, **kwargs: Any) -> Any:
        calls.append(data)
        return parse_request(data, **kwargs)

    monkeypatch.setattr(guard_module, "parse_request", counting)
    gk = gatekeeper.open(data_dir=tmp_path / "a")
    assert gk.decide(parsed).decision == "permit" and calls == []
    assert gk.decide(copy).decision == "permit" and len(calls) == 1
    calls.clear()
    with gk.access(teacher) as grant:
        assert grant.decision.decision == "permit"
    assert len(calls) == 1

    config = tmp_path / "gatekeeper.toml"
    config.write_text("max_as_of_skew = 300\n")
    strict = gatekeeper.open(data_dir=tmp_path / "b", config=config)
    backdated = strict.decide(parse_request(teacher))  # as_of 2026-04-02: decided as of now
    assert backdated.decision == "permit" and backdated.reason is None
    assert strict.audit is not None
    (entry,) = strict.audit.store.read_entries(0, 1)
    assert json.loads(entry.data)["as_of_claimed"] == "2026-04-02T10:00:00-07:00"


def test_a_backdated_as_of_is_decided_as_of_now_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """By default (max_as_of_skew 300 s) a backdated as_of cannot revive an
    expired warrant: the approved warrant of A10 expired on 2026-04-14, and its
    request says as_of 2026-04-02. The request is decided as of now (IMM-12:
    the document has expired), as an immigration request that counts and
    notifies like any other, and its entry keeps the claimed as_of. Before,
    gatekeeper.open permitted it."""
    monkeypatch.delenv("GATEKEEPER_MAX_AS_OF_SKEW", raising=False)  # conftest's "off"
    assert gatekeeper.load_settings().max_as_of_skew == 300.0
    gk = gatekeeper.open(data_dir=tmp_path / "d")
    warrant = next(c["request"] for c in CASES if c["id"] == "A10")  # as_of 2026-04-02
    decision = gk.decide(warrant)
    assert (decision.decision, decision.rules[0], decision.reason) == ("deny", "IMM-12", None)
    assert decision.immigration_context and decision.request_id == "A10"
    assert "NOTIFY_LEGAL" in decision.obligations and "REPORT_BOARD" in decision.obligations
    assert gk.audit is not None
    (entry,) = gk.audit.store.read_entries(0, 1)
    logged = json.loads(entry.data)
    assert logged["as_of_claimed"] == "2026-04-02T10:00:00-07:00"
    assert dt.datetime.fromisoformat(logged["as_of"]) > dt.datetime.now(dt.UTC) - dt.timedelta(
        seconds=60
    )
    fresh = {k: v for k, v in warrant.items() if k != "as_of"}  # as_of = now: the same
    again = gk.decide(fresh)
    assert (again.decision, again.rules) == (decision.decision, decision.rules)
    soon = dict(warrant, as_of=(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=60)).isoformat())
    gk.decide(soon)  # within the skew: clocks differ a little; its as_of is kept
    (kept,) = gk.audit.store.read_entries(2, 3)
    assert "as_of_claimed" not in json.loads(kept.data)
    gk.close()


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("max_as_of_skew = false", None),
        ("max_as_of_skew = 30", 30.0),
        ("env:off", None),
        ("env:false", None),
        ("env:120", 120.0),
    ],
)
def test_max_as_of_skew_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, expected: float | None
) -> None:
    monkeypatch.delenv("GATEKEEPER_MAX_AS_OF_SKEW", raising=False)
    config = None
    if source.startswith("env:"):
        monkeypatch.setenv("GATEKEEPER_MAX_AS_OF_SKEW", source[4:])
    else:
        config = tmp_path / "gatekeeper.toml"
        config.write_text(source + "\n")
    assert gatekeeper.load_settings(config).max_as_of_skew == expected


def test_access_with_an_invalid_request_says_what_to_fix(tmp_path: Path) -> None:
    """gk.access refuses an invalid request (a deny entry is logged) and the
    AccessDenied says which key is wrong: ``error`` in full for the caller, its
    message without the request's values (it may be logged)."""
    gk = gatekeeper.open(data_dir=tmp_path / "d")
    bad = {"channel": "internal", "purpose": "educational", "fieldz": ["grades"]}
    with pytest.raises(gatekeeper.AccessDenied) as denied, gk.access(bad):
        pytest.fail("the block must not run")
    assert denied.value.decision.reason == "invalid_request"
    assert denied.value.decision.audit is not None
    error = denied.value.error
    assert isinstance(error, gatekeeper.RequestError) and error.path == "fieldz"
    assert "did you mean 'fields'?" in str(error)
    assert "fieldz: unknown key <value>" in str(denied.value)
    # The same through a GuardedSource (the lookup never runs).
    source = gatekeeper.GuardedSource(gk, gatekeeper.InMemorySource({"S1": {"grades": "A"}}))
    with pytest.raises(gatekeeper.AccessDenied) as via_source:
        source.get(bad)
    assert via_source.value.error is not None and via_source.value.error.path == "fieldz"
    gk.close()


def test_a_gatekeeper_made_directly_sets_a_backdated_as_of_aside_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Gatekeeper(...) has the same default as gatekeeper.open (300 s, or the
    environment's): before, only the settings had it, and a Gatekeeper built
    by hand (as the shadow-mode docs show) permitted the backdated warrant.
    Bad values are refused when it is made."""
    from gatekeeper import Gatekeeper
    from gatekeeper.engines import EmbeddedEngine, load_pack
    from tests.conftest import POLICIES_DIR

    monkeypatch.delenv("GATEKEEPER_MAX_AS_OF_SKEW", raising=False)
    engine = EmbeddedEngine(load_pack(POLICIES_DIR))
    warrant = next(c["request"] for c in CASES if c["id"] == "A10")  # as_of 2026-04-02
    gk = Gatekeeper(engine=engine, allow_unaudited=True)
    assert gk.max_as_of_skew == 300.0
    assert gk.decide(warrant).rules[0] == "IMM-12"  # decided as of now: expired
    replay = Gatekeeper(engine=engine, allow_unaudited=True, max_as_of_skew=None)
    assert replay.decide(warrant).decision == "permit"  # a past scenario, on purpose
    monkeypatch.setenv("GATEKEEPER_MAX_AS_OF_SKEW", "off")
    assert Gatekeeper(engine=engine, allow_unaudited=True).max_as_of_skew is None
    monkeypatch.setenv("GATEKEEPER_MAX_AS_OF_SKEW", "-5")
    with pytest.raises(gatekeeper.GatekeeperError, match="GATEKEEPER_MAX_AS_OF_SKEW"):
        Gatekeeper(engine=engine, allow_unaudited=True)
    monkeypatch.delenv("GATEKEEPER_MAX_AS_OF_SKEW")
    off = Gatekeeper(engine=engine, allow_unaudited=True, max_as_of_skew=False)
    assert off.max_as_of_skew is None
    for bad in (0, -5, True, "off", float("nan")):
        with pytest.raises(gatekeeper.GatekeeperError, match="max_as_of_skew"):
            Gatekeeper(engine=engine, allow_unaudited=True, max_as_of_skew=bad)  # type: ignore[arg-type]
    engine.close()


def test_embedded_workers_reaches_the_engine(tmp_path: Path) -> None:
    config = tmp_path / "gatekeeper.toml"
    config.write_text("[gatekeeper]\nembedded_workers = 3\n")
    gk = gatekeeper.open(data_dir=tmp_path / "d", config=config)
    assert gk.engine.max_workers == 3  # type: ignore[attr-defined]
    assert gatekeeper.open(data_dir=tmp_path / "e").engine.max_workers >= 2  # type: ignore[attr-defined]
