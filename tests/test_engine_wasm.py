"""The wasm engine: the pack compiled by the real opa binary, run in-process by wasmtime.

Its agreement with the other engines is tested with the decision table
(tests/test_cases.py) and on generated requests (tests/test_differential.py);
here: what is particular to it — load-time refusals, the timeout, traps,
threads, memory, and opening it through the public API and the CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import gatekeeper
from gatekeeper.engines import EmbeddedEngine, WasmEngine, load_pack
from gatekeeper.errors import EngineError, PolicyError
from gatekeeper.request import parse_request
from tests.conftest import POLICIES_DIR, REPO_ROOT

pytestmark = pytest.mark.opa

CASES = [
    json.loads(line)
    for line in (REPO_ROOT / "tests" / "cases" / "public.jsonl").read_text().splitlines()
    if line.strip()
]


def policy_inputs() -> list[dict[str, Any]]:
    return [parse_request(c["request"]).to_policy_input() for c in CASES]


def write_pack(root: Path, source: str) -> Path:
    (root / "gatekeeper").mkdir(parents=True)
    (root / "gatekeeper" / "p.rego").write_text(source, encoding="utf-8")
    return root


def test_decides_like_the_embedded_engine(wasm_engine: WasmEngine) -> None:
    pack = load_pack(POLICIES_DIR)
    assert wasm_engine.name == "wasm"
    assert wasm_engine.revision == pack.revision
    embedded = EmbeddedEngine(pack)
    try:
        for value in policy_inputs():
            assert wasm_engine.evaluate(value) == embedded.evaluate(value)
    finally:
        embedded.close()


def test_the_raw_call_is_used_and_answers_like_the_checked_call(wasm_engine: WasmEngine) -> None:
    """opa_eval goes through wasmtime_func_call_unchecked (about 100 us less per
    decision) on the wasmtime this project installs; its answers are the
    checked Func.__call__'s, byte for byte."""
    instance = wasm_engine._instance()
    raw = instance._raw_eval
    assert raw is not None, "the installed wasmtime no longer offers the raw call"
    inputs = policy_inputs()
    fast = [wasm_engine.evaluate_raw(value) for value in inputs]
    instance._raw_eval = None
    try:
        checked = [wasm_engine.evaluate_raw(value) for value in inputs]
    finally:
        instance._raw_eval = raw
    assert fast == checked


def test_a_host_builtin_is_refused_at_load(tmp_path: Path, opa_bin: Path) -> None:
    pack = load_pack(
        write_pack(
            tmp_path,
            "package gatekeeper\n\nimport rego.v1\n\n"
            'decision := json.patch({"a": 1}, [{"op": "add", "path": "/b", "value": 2}])\n',
        )
    )
    with pytest.raises(PolicyError, match=r"json\.patch"):
        WasmEngine(pack, opa_bin=opa_bin)


def test_a_pack_opa_cannot_compile_is_refused(tmp_path: Path, opa_bin: Path) -> None:
    pack = load_pack(
        write_pack(tmp_path, "package gatekeeper\n\nimport rego.v1\n\ndecision := undefined_ref\n")
    )
    with pytest.raises(PolicyError, match="opa build -t wasm failed"):
        WasmEngine(pack, opa_bin=opa_bin)


def test_no_opa_binary_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="no opa binary"):
        WasmEngine(load_pack(POLICIES_DIR), opa_bin=tmp_path / "missing-opa")


SLOW = """package gatekeeper

import rego.v1

# Cost grows with input.n: a decision that can be made to run long.
decision := {"n": count([x | some x in numbers.range(1, input.n); x % 7 == 0])}

# Two values for one complete rule: OPA's Wasm aborts (a trap).
conflict := 1 if input.a

conflict := 2 if input.b
"""


def test_a_slow_decision_is_interrupted_and_the_engine_recovers(
    tmp_path: Path, opa_bin: Path
) -> None:
    engine = WasmEngine(load_pack(write_pack(tmp_path, SLOW)), opa_bin=opa_bin, timeout=0.2)
    try:
        assert engine.evaluate_raw({"n": 70}) == {"n": 10}
        started = time.perf_counter()
        with pytest.raises(EngineError) as caught:
            engine.evaluate_raw({"n": 10**12})
        elapsed = time.perf_counter() - started
        assert caught.value.reason == "engine_timeout"
        assert 0.2 <= elapsed < 1.5, elapsed
        # The interrupted instance is discarded; the next decision is normal.
        assert engine.evaluate_raw({"n": 700}) == {"n": 100}
    finally:
        engine.close()
    with pytest.raises(EngineError, match="closed"):
        engine.evaluate_raw({"n": 7})


def test_a_trap_is_an_engine_error_and_the_next_decision_works(
    tmp_path: Path, opa_bin: Path
) -> None:
    source = SLOW.replace("decision := {", 'decision := {"c": conflict, ')
    engine = WasmEngine(load_pack(write_pack(tmp_path, source)), opa_bin=opa_bin)
    try:
        with pytest.raises(EngineError) as caught:
            engine.evaluate_raw({"n": 7, "a": True, "b": True})
        assert caught.value.reason == "engine_error"
        assert engine.evaluate_raw({"n": 7, "a": True}) == {"c": 1, "n": 1}
        # Undefined is not an error of the engine: the caller decides (undefined_decision).
        assert engine.evaluate_raw({"n": 7}) is None
        with pytest.raises(EngineError) as undefined:
            engine.evaluate({"n": 7})
        assert undefined.value.reason == "undefined_decision"
    finally:
        engine.close()


def test_threads_each_decide_correctly(wasm_engine: WasmEngine) -> None:
    inputs = policy_inputs()
    expected = [wasm_engine.evaluate(v) for v in inputs]
    problems: list[str] = []

    def worker(offset: int) -> None:
        for i in range(200):
            k = (i + offset) % len(inputs)
            got = wasm_engine.evaluate(inputs[k])
            if got != expected[k]:
                problems.append(f"thread {offset}: case {k}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert problems == []


def test_memory_does_not_grow_with_decisions(wasm_engine: WasmEngine) -> None:
    inputs = policy_inputs()
    for value in inputs:
        wasm_engine.evaluate(value)
    instance = wasm_engine._instance()
    before = instance.memory.data_len(instance.store)
    for i in range(3000):
        wasm_engine.evaluate(inputs[i % len(inputs)])
    assert instance.memory.data_len(instance.store) == before


def test_a_large_input_grows_memory_and_decides(wasm_engine: WasmEngine) -> None:
    value = policy_inputs()[0]
    big = dict(value, purpose_text="x" * (3 << 20))
    assert wasm_engine.evaluate(big)["decision"] == wasm_engine.evaluate(value)["decision"]


def test_open_and_cli_with_the_wasm_engine(
    tmp_path: Path, opa_bin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEKEEPER_OPA", str(opa_bin))
    with gatekeeper.open(data_dir=tmp_path / "gk", engine="wasm") as gk:
        decision = gk.decide(CASES[0]["request"])
        assert decision.engine == "wasm"
        assert decision.audit is not None
        entry = json.loads(gk.audit.store.read_entries(0, 1)[0].data)
        assert entry["engine"] == "wasm"
    request = tmp_path / "request.json"
    request.write_text(json.dumps(CASES[0]["request"]), encoding="utf-8")
    done = subprocess.run(
        [
            *(sys.executable, "-m", "gatekeeper", "--data-dir", str(tmp_path / "cli")),
            *("decide", "--engine", "wasm", str(request)),
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO_ROOT), GATEKEEPER_OPA=str(opa_bin)),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["engine"] == "wasm"
    assert out["decision"] == CASES[0]["expect"]["decision"]


def test_a_module_that_needs_more_memory_pages_loads(tmp_path: Path, opa_bin: Path) -> None:
    """The memory given to the module has at least the pages its import asks for
    (an optimized build, -O=1, asks for 3 where the default asks for 2)."""
    import tarfile

    out = tmp_path / "bundle.tar.gz"
    done = subprocess.run(
        [
            *(str(opa_bin), "build", "-t", "wasm", "-O=1", "-e", "gatekeeper/decision"),
            *("-o", str(out), str(POLICIES_DIR)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    with tarfile.open(out, "r:gz") as bundle:
        member = next(m for m in bundle.getmembers() if m.name.lstrip("/") == "policy.wasm")
        extracted = bundle.extractfile(member)
        assert extracted is not None
        code = extracted.read()
    pack = load_pack(POLICIES_DIR)
    engine = WasmEngine(pack, wasm=code)
    try:
        value = policy_inputs()[0]
        assert engine.evaluate(value) == EmbeddedEngine(pack).evaluate(value)
    finally:
        engine.close()
