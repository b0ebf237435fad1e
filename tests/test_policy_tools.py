"""The policy author's tools, for real: `gatekeeper policy test | check | replay`, shadow mode.

`policy test` runs the real `opa test` and starts a real `opa run --server`
(.tools/bin/opa; scripts/build-opa builds it). Replay reads a real audit log
built from the public cases. Shadow mode runs the candidate in a real child
process (and in a thread). The built-in allow-list is proven by evaluating
samples of every allowed built-in in regopy and in `opa eval`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import regopy

import gatekeeper
from gatekeeper import Gatekeeper
from gatekeeper.cli import main
from gatekeeper.engines import EmbeddedEngine, ShadowEngine, load_pack
from gatekeeper.errors import EngineError
from gatekeeper.policy.builtins import ALLOWED_BUILTINS, KNOWN_DIVERGENT
from gatekeeper.policy.opa_process import OpaProcessError, find_opa, require_opa
from tests.conftest import POLICIES_DIR, REPO_ROOT

CASES_FILE = REPO_ROOT / "tests" / "cases" / "public.jsonl"
CASES = [json.loads(line) for line in CASES_FILE.read_text().splitlines() if line.strip()]


@pytest.fixture(autouse=True)
def _opa_env(opa_bin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test here uses the pinned OPA (skips, or fails in CI, without it)."""
    monkeypatch.setenv("GATEKEEPER_OPA", str(opa_bin))


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def copy_pack(tmp_path: Path, name: str = "candidate") -> Path:
    target = tmp_path / name
    shutil.copytree(POLICIES_DIR, target)
    return target


def set_effect(pack: Path, rule: str, effect: str) -> None:
    """Change one rule's effect in the catalog (data, not Rego)."""
    path = pack / "catalog" / "data.json"
    data = json.loads(path.read_text())
    assert data["rules"][rule]["effect"] != effect
    data["rules"][rule]["effect"] = effect
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False))


# -- policy test -----------------------------------------------------------------------------


def test_policy_test_passes_on_the_real_pack(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "--policy-dir", str(POLICIES_DIR), "policy", "test")
    assert status == 0, out
    assert "opa test: PASS" in out
    assert f"cases on embedded: {len(CASES)}/{len(CASES)} pass" in out
    assert f"cases on opa: {len(CASES)}/{len(CASES)} pass" in out
    assert out.rstrip().endswith("policy test: PASS")


def test_policy_test_on_all_three_engines(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "policy", "test", "--engine", "all")
    assert status == 0, out
    for engine in ("embedded", "opa", "wasm"):
        assert f"cases on {engine}: {len(CASES)}/{len(CASES)} pass" in out
    assert out.rstrip().endswith("policy test: PASS")


def test_policy_test_shows_a_readable_diff_for_an_altered_case(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case = next(c for c in CASES if c["id"] == "A01")
    assert case["expect"]["decision"] == "permit" and case["expect"]["rules"] == ["FERPA-1"]
    altered = {
        **case,
        "expect": {
            "decision": "deny",
            "rules": ["FERPA-1N"],
            "obligations": ["REDACT_OUT_OF_SCOPE", "NOTIFY_LEGAL"],
            "allowed_fields": ["grades"],
        },
    }
    cases = tmp_path / "altered.jsonl"
    cases.write_text(json.dumps(altered) + "\n")
    status, out, _ = run(
        capsys, "--policy-dir", str(POLICIES_DIR), "policy", "test", "--cases", str(cases)
    )
    assert status == 1
    for engine in ("embedded", "opa"):
        block = out.split(f"FAIL A01 (altered.jsonl:1) [{engine}]")[1].split("FAIL")[0]
        assert "decision: expected deny, got permit" in block
        assert "deciding rule: expected FERPA-1N, got FERPA-1" in block
        assert "rules: missing FERPA-1N; unexpected FERPA-1" in block
        assert "obligations: missing NOTIFY_LEGAL" in block
        assert "allowed_fields: unexpected attendance" in block
    # The project's own cases still pass beside it, and the run says FAIL.
    assert f"cases on embedded: {len(CASES)}/{len(CASES) + 1} pass" in out
    assert out.rstrip().endswith("policy test: FAIL")


def test_policy_test_catches_an_engine_disagreement_the_cases_miss(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Iterating a set: rego-cpp keeps insertion order, OPA sorts. No case checks the
    order of denied_fields, but the engines must give identical decisions."""
    pack = copy_pack(tmp_path)
    rego = pack / "gatekeeper" / "decision.rego"
    source = rego.read_text()
    old = "denied_fields := [f | some f in input.fields; not f in allowed_fields]"
    assert old in source
    rego.write_text(
        source.replace(
            old,
            "denied_fields := [f | some f in {x | some x in input.fields}; "
            "not f in allowed_fields]",
        )
    )
    status, out, _ = run(capsys, "--policy-dir", str(pack), "policy", "test", "--engine", "all")
    assert status == 1
    assert f"cases on embedded: {len(CASES)}/{len(CASES)} pass" in out
    assert "FAIL A04 (public.jsonl:4) [embedded vs opa]" in out
    assert "denied_fields: embedded ['home_address', 'dismissal_time'], opa" in out
    # OPA's Wasm compiler sorts the set as the OPA server does.
    assert "FAIL A04 (public.jsonl:4) [embedded vs wasm]" in out


def test_policy_test_reports_a_failing_opa_test(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pack = copy_pack(tmp_path)
    (pack / "gatekeeper" / "broken_test.rego").write_text(
        "package gatekeeper_test\n\nimport rego.v1\n\ntest_always_fails if {\n\t1 == 2\n}\n"
    )
    status, out, _ = run(capsys, "--policy-dir", str(pack), "policy", "test")
    assert status == 1
    assert "opa test: FAIL" in out and "test_always_fails" in out


# -- policy check ----------------------------------------------------------------------------


def test_policy_check_passes_on_the_real_pack(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "--policy-dir", str(POLICIES_DIR), "policy", "check")
    assert status == 0, out
    assert out.count(": ok") == 4 and out.rstrip().endswith("policy check: PASS")


def test_policy_check_flags_formatting_and_disallowed_builtins(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pack = copy_pack(tmp_path)
    (pack / "gatekeeper" / "extra.rego").write_text(
        "package gatekeeper\n\nimport rego.v1\n\n"
        "decided_at := time.now_ns()\n"  # a time built-in: differs in rego-cpp
        '  merged := object.union({"a": {"b": 1}}, {"a": {"c": 2}})\n'  # misindented
        'first_l := indexof("hello", "l")\n'
    )
    status, out, _ = run(capsys, "--policy-dir", str(pack), "policy", "check")
    assert status == 1
    extra = str(pack / "gatekeeper" / "extra.rego")
    # Formatting: the file and how opa fmt would change it.
    assert f"{extra}: not formatted: run `opa fmt -w`" in out
    assert "-  merged := object.union" in out and "+merged := object.union" in out
    # Built-ins: each call outside the allow-list, with its line; regopy implements
    # object.union and indexof, but they disagree with OPA (docs/policy-builtins.md).
    assert f"{extra}:5: time.now_ns is not on the list" in out
    assert f"{extra}:6: object.union is not on the list" in out
    assert f"{extra}:7: indexof is not on the list" in out
    # The embedded engine's own load-time check refuses time.* as well.
    assert "embedded engine (regopy): 1 problem(s)" in out and "time.now_ns" in out
    assert "opa check --strict: ok" in out


def test_policy_check_reports_syntax_rego_cpp_rejects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pack = copy_pack(tmp_path)
    (pack / "gatekeeper" / "pairs.rego").write_text(
        "package gatekeeper\n\nimport rego.v1\n\n"
        'index_pairs := [[i, x] | some i, x in ["a", "b"]]\n'
    )
    status, out, _ = run(capsys, "--policy-dir", str(pack), "policy", "check")
    assert status == 1
    assert "opa check --strict: ok" in out and "format (opa fmt): ok" in out
    assert "embedded engine (regopy): 1 problem(s)" in out


# -- the allow-list is true ------------------------------------------------------------------

#: Samples per allowed built-in: each is the value of one rule, evaluated by both engines.
SAMPLES: dict[str, list[str]] = {
    "and": ["{1, 2, 3} & {2, 3, 4}", '{"a"} & set()'],
    "array.concat": ["array.concat([1, 2], [3])", 'array.concat([], ["é"])'],
    "array.slice": [
        "array.slice([1, 2, 3, 4], 1, 3)",
        "array.slice([1, 2, 3], 2, 10)",
        "array.slice([1, 2, 3], -1, 2)",
        "array.slice([1, 2], 3, 1)",
    ],
    "assign": ["x if { x := 5 }"],
    "concat": ['concat(", ", ["b", "a", "ü"])', 'concat("", [])'],
    "count": ["count([1, 2])", 'count({"a", "b", "c"})', 'count({"k": 1})', 'count("héllo")'],
    "endswith": [
        'endswith("records.csv", ".csv")',
        'endswith("élan", "an")',
        'endswith("a", "ab")',
    ],
    "eq": ["x if { [x, 2] = [1, 2] }", "true if { 1 = 1 }"],
    "equal": ["1 == 1", '"a" == "b"', '[1, {"a": 2}] == [1, {"a": 2}]', "{1, 2} == {2, 1}"],
    "gt": ["2 > 1", '"b" > "a"', "1 > 1", '"é" > "z"'],
    "gte": ["2 >= 2", '"a" >= "b"'],
    "internal.member_2": ["2 in [1, 2]", '"x" in {"y"}', '1 in {"a": 1}'],
    "internal.member_3": [
        '[k, v] if { some k, v in {"a": 1} }',
        '0, "a" in ["a"]',
        '[i, x] if { some i, x in ["p", "q"]; x == "q" }',
    ],
    "is_array": ["is_array([1])", "is_array({1})"],
    "is_boolean": ["is_boolean(false)", "is_boolean(0)"],
    "is_null": ["is_null(null)", "is_null(false)"],
    "is_number": ["is_number(1)", 'is_number("1")'],
    "is_object": ["is_object({})", "is_object([])"],
    "is_set": ["is_set(set())", "is_set([])"],
    "is_string": ['is_string("")', "is_string(1)"],
    "lt": ["1 < 2", '"B" < "a"', "-1 < 0"],
    "lte": ["2 <= 2", "3 <= 2"],
    "max": ["max([3, 1, 2])", "max({5, 7})", "max([])"],
    "min": ["min([3, 1, 2])", "min({5, 7})", "min(set())"],
    "minus": ["10 - 3", "{1, 2, 3} - {2}", "-5 - 5"],
    "mul": ["6 * 7", "-3 * 3"],
    "neq": ["1 != 2", '"a" != "a"'],
    "object.get": [
        'object.get({"a": 1}, "a", 0)',
        'object.get({"a": 1}, "b", 0)',
        'object.get({"a": {"b": 2}}, ["a", "b"], 0)',
        'object.get({"a": {"b": 2}}, ["a", "c"], "d")',
    ],
    "object.keys": ['object.keys({"b": 1, "a": 2})', "object.keys({})"],
    "object.remove": [
        'object.remove({"a": 1, "b": 2}, ["a"])',
        'object.remove({"a": 1, "b": 2}, {"b", "c"})',
    ],
    "or": ["{1, 2} | {2, 3}", 'set() | {"a"}'],
    "plus": ["1 + 2", "-7 + 7", "9007199254740991 + 0"],
    "regex.match": [
        'regex.match("^(ICE|CBP)$", "ICE")',
        'regex.match("(^|-)(ICE|ERO)(-|$)", "US-ICE-ERO")',
        'regex.match("^[A-Z0-9-]+$", "abc")',
        'regex.match("^a.c$", "abc")',
    ],
    "sort": ["sort([3, 1, 2])", 'sort(["b", "a", "C"])', 'sort({"z", "y"})', "sort([])"],
    "split": ['split("a,b,,c", ",")', 'split("é-ü", "-")', 'split("", ",")'],
    "startswith": [
        'startswith("ICE-ERO", "ICE")',
        'startswith("école", "éc")',
        'startswith("a", "ab")',
    ],
    "substring": ['substring("héllo", 1, 3)', 'substring("abc", 1, -1)', 'substring("abc", 5, 1)'],
    "sum": ["sum([1, 2, 3])", "sum({4, 5})", "sum([])"],
}

#: Uses known to differ (KNOWN_DIVERGENT): if one starts to agree, update the docs.
DIVERGENT_SAMPLES = {
    "object.union": 'object.union({"a": {"b": 1}}, {"a": {"c": 2}})',
    "indexof": 'indexof("", "")',
    "concat on a set": 'concat("-", {"b", "a"})',
    "array comprehension over a set": '[x | some x in {"b", "a"}]',
}


def _module(samples: Mapping[str, list[str]]) -> tuple[str, dict[str, str]]:
    lines = ["package samples", "", "import rego.v1", ""]
    names: dict[str, str] = {}
    for name, exprs in samples.items():
        for i, expr in enumerate(exprs):
            rule = f"{name.replace('.', '_').replace(' ', '_')}_{i}"
            names[rule] = f"{name}: {expr}"
            lines.append(f"{rule} := {expr}")
    return "\n".join(lines) + "\n", names


def _both_engines(
    opa_bin: Path, tmp_path: Path, samples: Mapping[str, list[str]]
) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
    source, names = _module(samples)
    interpreter = regopy.Interpreter()
    interpreter.strict_built_in_errors = True
    interpreter.add_module("samples.rego", source)
    embedded = json.loads(str(interpreter.query("x := data.samples")))["bindings"]["x"]
    (tmp_path / "samples.rego").write_text(source)
    result = subprocess.run(
        [str(opa_bin), "eval", "-f", "json", "-d", str(tmp_path / "samples.rego"), "data.samples"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    opa = json.loads(result.stdout)["result"][0]["expressions"][0]["value"]
    return names, embedded, opa


def test_every_allowed_builtin_agrees_on_both_engines(opa_bin: Path, tmp_path: Path) -> None:
    assert set(SAMPLES) == set(ALLOWED_BUILTINS), "give samples for every allowed built-in"
    names, embedded, opa = _both_engines(opa_bin, tmp_path, SAMPLES)
    differ = [
        f"{names[rule]}: regopy {embedded.get(rule, '<undefined>')!r}, "
        f"opa {opa.get(rule, '<undefined>')!r}"
        for rule in names
        if embedded.get(rule, "<undefined>") != opa.get(rule, "<undefined>")
    ]
    assert not differ, differ
    # Every name is a real OPA built-in (else the capabilities file would drop it).
    caps = json.loads(
        subprocess.run(
            [str(opa_bin), "capabilities", "--current"], capture_output=True, text=True, check=True
        ).stdout
    )
    assert set(ALLOWED_BUILTINS) <= {b["name"] for b in caps["builtins"]}


def test_the_known_divergences_still_diverge(opa_bin: Path, tmp_path: Path) -> None:
    assert set(DIVERGENT_SAMPLES) <= set(KNOWN_DIVERGENT)
    samples = {name: [expr] for name, expr in DIVERGENT_SAMPLES.items()}
    names, embedded, opa = _both_engines(opa_bin, tmp_path, samples)
    for rule, label in names.items():
        assert embedded.get(rule, "<undefined>") != opa.get(rule, "<undefined>"), label


def test_find_opa(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, opa_bin: Path) -> None:
    monkeypatch.setenv("GATEKEEPER_OPA", str(opa_bin))
    assert find_opa() == opa_bin
    monkeypatch.setenv("GATEKEEPER_OPA", str(tmp_path / "no-opa"))
    assert find_opa() is None
    with pytest.raises(OpaProcessError, match="scripts/build-opa"):
        require_opa()


# -- replay ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def case_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory whose log holds a decision for every public case, an invalid
    request, and a decision entry whose policy input was not kept."""
    from gatekeeper.audit.entry import canonical

    data_dir = tmp_path_factory.mktemp("case-log")
    with gatekeeper.open(data_dir=data_dir) as gk:
        for case in CASES:
            decision = gk.decide(case["request"])
            assert decision.audit is not None and decision.reason is None
        gk.decide(b'{"channel": "internal"}')  # invalid: an invalid_request entry
        assert gk.audit is not None
        last = json.loads(gk.audit.store.read_entries(0, 1)[0].data)
        gk.audit.append(
            canonical(
                {**last, "decision_id": "f" * 32, "request_id": "TRUNC", "policy_input": None,
                 "truncated": True}
            )
        )  # fmt: skip
    return data_dir


def replay_json(capsys: pytest.CaptureFixture[str], data_dir: Path, *args: str) -> Any:
    status, out, err = run(capsys, "--data-dir", str(data_dir), "policy", "replay", "--json", *args)
    assert status == 0, err
    return json.loads(out)


def test_replay_with_the_live_pack_changes_nothing(
    case_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = replay_json(capsys, case_log, "--candidate", str(POLICIES_DIR))
    assert report["groups"] == []
    assert report["totals"] == {
        "entries": len(CASES) + 2,
        "decisions": len(CASES) + 1,
        "replayed": len(CASES),
        "unchanged": len(CASES),
        "changed": 0,
        "not_replayable": 1,
        "recorded_fail_closed": 0,
        "before_since": 0,
        "other_entries": 1,
    }
    assert report["other_kinds"] == {"invalid_request": 1}
    assert report["recorded_revisions"] == {load_pack(POLICIES_DIR).revision: len(CASES) + 1}


def test_replay_reports_exactly_the_decisions_one_rule_changes(
    case_log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    candidate = copy_pack(tmp_path)
    set_effect(candidate, "CONS-01", "deny")
    # Independently of any engine: the cases whose expected rules name CONS-01.
    expected = {c["id"] for c in CASES if "CONS-01" in c["expect"]["rules"]}
    assert len(expected) == 3

    report = replay_json(capsys, case_log, "--candidate", str(candidate))
    changed = {
        change["request_id"]: change for group in report["groups"] for change in group["changes"]
    }
    assert set(changed) == expected
    assert [(g["from"], g["to"], g["count"]) for g in report["groups"]] == [
        ("CONS-01", "CONS-01", 3)
    ]
    for change in changed.values():
        assert change["old"]["decision"] == "permit" and change["new"]["decision"] == "deny"
        assert change["new"]["allowed_fields"] == [] and change["old"]["allowed_fields"]
        assert "decision" in change["changed"] and len(change["decision_id"]) == 32
    assert report["totals"]["changed"] == 3
    assert report["totals"]["unchanged"] == len(CASES) - 3
    assert report["candidate_revision"] == load_pack(candidate).revision

    status, out, _ = run(
        capsys, "--data-dir", str(case_log), "policy", "replay", "--candidate", str(candidate)
    )
    assert status == 0
    assert "CONS-01 → CONS-01: 3 decision(s)" in out
    assert "request A16): permit → deny" in out
    assert "3 changed" in out and "1 not replayable (no policy_input)" in out
    status, _, _ = run(
        capsys, "--data-dir", str(case_log), "policy", "replay", "--candidate", str(candidate),
        "--fail-on-change",
    )  # fmt: skip
    assert status == 1


def test_replay_after_editing_one_rule_body(
    case_log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """DIR-01 (directory information to media, colleges, employers) loses the media."""
    candidate = copy_pack(tmp_path)
    rules = candidate / "gatekeeper" / "rules.rego"
    old = '\trequester.kind in cat.kinds.directory_recipients\n\tnot "dir_optout" in student.flags'
    source = rules.read_text()
    assert source.count(old) == 1
    rules.write_text(source.replace(old, old.replace(
        "cat.kinds.directory_recipients", '{"college", "employer"}')))  # fmt: skip
    expected = {
        c["id"]
        for c in CASES
        if "DIR-01" in c["expect"]["rules"] and c["request"]["requester"]["kind"] == "media"
    }
    assert expected == {"A21"}
    report = replay_json(capsys, case_log, "--candidate", str(candidate))
    changed = {
        c["request_id"]: (g["from"], g["to"]) for g in report["groups"] for c in g["changes"]
    }
    assert set(changed) == expected
    assert changed["A21"][0] == "DIR-01" and changed["A21"][1] != "DIR-01"


def test_replay_since(case_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = replay_json(
        capsys, case_log, "--candidate", str(POLICIES_DIR), "--since", "2999-01-01"
    )
    assert report["totals"]["decisions"] == 0
    assert report["totals"]["before_since"] == len(CASES) + 1
    report = replay_json(
        capsys, case_log, "--candidate", str(POLICIES_DIR), "--since", "2000-01-01"
    )
    assert report["totals"]["replayed"] == len(CASES)
    status, _, err = run(
        capsys, "--data-dir", str(case_log), "policy", "replay", "--candidate",
        str(POLICIES_DIR), "--since", "yesterday",
    )  # fmt: skip
    assert status == 1 and "--since 'yesterday'" in err


# -- shadow mode -----------------------------------------------------------------------------


def shadow_lines(caplog: pytest.LogCaptureFixture, event: str) -> list[dict[str, Any]]:
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "gatekeeper.shadow"]
    return [line for line in lines if line["event"] == event]


#: What a shadow_difference line may carry: codes and ids, never values or field names.
DIFFERENCE_KEYS = {
    "event", "level", "timestamp", "request_id", "live_revision", "candidate_revision",
    "changed", "live_decision", "candidate_decision", "live_rules", "candidate_rules",
    "live_obligations", "candidate_obligations", "live_allowed_count", "candidate_allowed_count",
}  # fmt: skip


def decisions_of(gk: Gatekeeper) -> list[dict[str, Any]]:
    out = []
    for case in CASES:
        got = gk.decide(case["request"]).to_dict()
        out.append({k: v for k, v in got.items() if k not in ("decision_id", "audit")})
    return out


@pytest.fixture(scope="module")
def live_decisions() -> list[dict[str, Any]]:
    with Gatekeeper(engine=EmbeddedEngine(load_pack(POLICIES_DIR)), allow_unaudited=True) as gk:
        return decisions_of(gk)


@pytest.mark.parametrize("isolation", ["process", "thread"])
def test_shadow_logs_a_difference_and_never_changes_the_decision(
    isolation: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    live_decisions: list[dict[str, Any]],
) -> None:
    candidate = copy_pack(tmp_path)
    set_effect(candidate, "CONS-01", "deny")
    expected = {c["id"] for c in CASES if "CONS-01" in c["expect"]["rules"]}
    live = EmbeddedEngine(load_pack(POLICIES_DIR))
    engine = ShadowEngine(live, EmbeddedEngine(load_pack(candidate)), isolation=isolation)
    caplog.set_level(logging.WARNING, logger="gatekeeper.shadow")
    with Gatekeeper(engine=engine, allow_unaudited=True) as gk:
        assert decisions_of(gk) == live_decisions  # identical, engine name and revision too
        assert engine.drain(120)
        assert engine.stats.compared == len(CASES) and engine.stats.differences == 3
        assert engine.stats.dropped == 0 and engine.stats.candidate_errors == 0
    lines = shadow_lines(caplog, "shadow_difference")
    assert {line["request_id"] for line in lines} == expected
    for line in lines:
        assert set(line) == DIFFERENCE_KEYS
        assert (line["live_decision"], line["candidate_decision"]) == ("permit", "deny")
        assert line["live_rules"] == line["candidate_rules"] == ["CONS-01"]
        assert line["live_revision"] == live.revision != line["candidate_revision"]
    # Nothing of the requests but their ids: no student ids, names or field names.
    logged = " ".join(r.getMessage() for r in caplog.records)
    for case in CASES:
        if case["id"] in expected:
            assert case["request"]["student"]["id"] not in logged
            for field in case["request"]["fields"]:
                assert f'"{field}"' not in logged


class FailingEngine:
    name = "embedded"
    revision = "sha256:candidate-that-fails"

    def evaluate(self, policy_input: Mapping[str, Any]) -> dict[str, Any]:
        raise EngineError("candidate exploded", reason="engine_error")

    def close(self) -> None:
        pass


class SlowEngine(FailingEngine):
    """A candidate that answers nothing until ``release`` is set (at most 10 s)."""

    revision = "sha256:slow-candidate"

    def __init__(self) -> None:
        self.release = threading.Event()

    def evaluate(self, policy_input: Mapping[str, Any]) -> dict[str, Any]:
        self.release.wait(10)
        raise EngineError("too late anyway", reason="engine_error")


def test_a_failing_candidate_is_logged_and_ignored(
    caplog: pytest.LogCaptureFixture, live_decisions: list[dict[str, Any]]
) -> None:
    engine = ShadowEngine(
        EmbeddedEngine(load_pack(POLICIES_DIR)), FailingEngine(), isolation="thread"
    )
    caplog.set_level(logging.WARNING, logger="gatekeeper.shadow")
    with Gatekeeper(engine=engine, allow_unaudited=True) as gk:
        assert decisions_of(gk) == live_decisions
        assert engine.drain(30)
    assert engine.stats.candidate_errors == len(CASES)
    errors = shadow_lines(caplog, "shadow_candidate_error")
    assert len(errors) == len(CASES) and {e["reason"] for e in errors} == {"engine_error"}


def test_a_slow_candidate_never_delays_the_live_decision(
    caplog: pytest.LogCaptureFixture, live_decisions: list[dict[str, Any]]
) -> None:
    slow = SlowEngine()
    engine = ShadowEngine(
        EmbeddedEngine(load_pack(POLICIES_DIR)), slow, isolation="thread", max_pending=2
    )
    caplog.set_level(logging.WARNING, logger="gatekeeper.shadow")
    with Gatekeeper(engine=engine, allow_unaudited=True) as gk:
        try:
            started = time.monotonic()
            assert decisions_of(gk) == live_decisions
            elapsed = time.monotonic() - started
            # The candidate answers nothing while the live side decides all 32
            # (it would hold each for 10 s): the live side does not wait for it.
            assert elapsed < 4.0, elapsed
            # One candidate evaluation in flight and two queued; the rest dropped.
            assert engine.stats.dropped >= len(CASES) - 3, engine.stats
        finally:
            slow.release.set()
    assert shadow_lines(caplog, "shadow_dropped")


def test_shadowing_stops_when_the_child_dies(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, live_decisions: list[dict[str, Any]]
) -> None:
    candidate = copy_pack(tmp_path)
    engine = ShadowEngine(
        EmbeddedEngine(load_pack(POLICIES_DIR)), EmbeddedEngine(load_pack(candidate))
    )
    caplog.set_level(logging.WARNING, logger="gatekeeper.shadow")
    with Gatekeeper(engine=engine, allow_unaudited=True) as gk:
        gk.decide(CASES[0]["request"])
        assert engine.drain(120) and engine.stats.compared == 1
        child = engine._child
        assert child is not None
        os.kill(child._proc.pid, signal.SIGKILL)  # the child this test's engine started
        child._proc.wait(timeout=10)
        assert decisions_of(gk) == live_decisions
        assert engine.drain(30)
    assert shadow_lines(caplog, "shadow_stopped")
    assert engine.stats.compared == 1


def test_shadow_policy_dir_from_the_configuration(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    candidate = copy_pack(tmp_path)
    set_effect(candidate, "CONS-01", "deny")
    config = tmp_path / "gatekeeper.toml"
    config.write_text(f'[gatekeeper]\nshadow_policy_dir = "{candidate}"\n')
    caplog.set_level(logging.WARNING, logger="gatekeeper.shadow")
    case = next(c for c in CASES if c["id"] == "A16")
    with gatekeeper.open(data_dir=tmp_path / "data", config=config) as gk:
        assert isinstance(gk.engine, ShadowEngine)
        decision = gk.decide(case["request"])
        assert decision.decision == "permit" and decision.engine == "embedded"
        assert decision.policy_revision == load_pack(POLICIES_DIR).revision
        assert decision.audit is not None  # audited as usual, by the live decision
        assert gk.engine.drain(120)
    (line,) = shadow_lines(caplog, "shadow_difference")
    assert line["request_id"] == "A16" and line["candidate_decision"] == "deny"


@pytest.mark.parametrize(
    "module",
    [
        "gatekeeper.policy",
        "gatekeeper.policy.builtins",
        "gatekeeper.policy.cases",
        "gatekeeper.policy.check",
        "gatekeeper.policy.opa_process",
        "gatekeeper.policy.replay",
        "gatekeeper.policy.testing",
        "gatekeeper.engines.shadow",
        "gatekeeper.audit.readonly",
        "gatekeeper.audit.serve",
        "gatekeeper.audit.witness",
    ],
)
def test_all_is_sorted_and_complete(module: str) -> None:
    mod = __import__(module, fromlist=["__all__"])

    def key(name: str) -> tuple[int, str]:  # ruff's RUF022 order
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert list(mod.__all__) == sorted(mod.__all__, key=key)
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.{name} is in __all__ but missing"


def test_shadow_bench_runs() -> None:
    """bench/shadow.py still runs (tiny sizes): the figures in ADR 0006 come from it."""
    import sys

    result = subprocess.run(
        [sys.executable, "bench/shadow.py", "--blocks", "1", "--per-block", "8"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "process  median" in result.stdout and "thread   median" in result.stdout
