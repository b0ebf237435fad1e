"""Benchmark: where a full decision's time goes, and the least each engine can take.

    python3 bench/engine_cost.py                # 20 rounds over the 32 public cases
    python3 bench/engine_cost.py --no-wasm      # without the opa binary / wasmtime

Issue 3 asks for a median full decision (engine + durable audit entry) of at
most 1.5 ms. This splits that time into parts no caller-side code can avoid,
each measured in this run, medians over the public cases' policy inputs:

- the audit floor, paid whatever the engine: two Ed25519 signatures of a
  2 KB entry (the entry's and the checkpoint's) and one SQLite WAL commit
  with ``synchronous=FULL`` (its fsync) of a 2 KB row;
- regopy (the embedded engine), called directly on its compiled bundle:
  ``set_input_term`` (rego-cpp reading the policy input's JSON), a query of
  a one-line rule compiled alone and the same rule compiled beside the pack
  (rego-cpp's fixed cost per query, and what the pack's size adds to it),
  and ``set_input_term`` + the decision entrypoint (the evaluation is the
  difference);
- wasm: the raw ``opa_eval`` of the pack compiled by OPA.

It prints, per engine, the lower bound of a full decision (reading the
input + evaluating + the audit floor) and its ratio to the 1.5 ms target;
``bench/audit.py`` measures the full decision itself.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import regopy  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from bench._stats import loadavg  # noqa: E402
from gatekeeper.engines import ENTRYPOINT, load_pack  # noqa: E402
from gatekeeper.request import parse_request  # noqa: E402

TARGET_US = 1500.0
PROBE = "package gatekeeper_probe\n\nimport rego.v1\n\nanswer := 42\n"


def median_us(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        fn()
        times.append((time.perf_counter_ns() - start) / 1000)
    return statistics.median(times)


def over_inputs(fn: Callable[[str], object], texts: list[str], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        for text in texts:
            start = time.perf_counter_ns()
            fn(text)
            times.append((time.perf_counter_ns() - start) / 1000)
    return statistics.median(times)


def audit_floor(rounds: int) -> tuple[float, float]:
    """(two Ed25519 signatures of a 2 KB entry, one durable SQLite commit), medians in us."""
    key = Ed25519PrivateKey.generate()
    entry = b"x" * 2048
    sign = median_us(lambda: (key.sign(entry), key.sign(entry[:300])), rounds * 10)
    with tempfile.TemporaryDirectory(dir=REPO) as tmp:
        db = sqlite3.connect(os.path.join(tmp, "floor.sqlite"), isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE t (i INTEGER PRIMARY KEY, b BLOB)")

        def commit() -> None:
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t (b) VALUES (?)", (entry,))
            db.execute("COMMIT")

        for _ in range(50):
            commit()
        durable = median_us(commit, rounds * 10)
        db.close()
    return sign, durable


def regopy_parts(texts: list[str], rounds: int) -> dict[str, float]:
    pack = load_pack(REPO / "policies")

    def interpreter(with_pack: bool) -> regopy.Interpreter:
        it = regopy.Interpreter()
        it.strict_built_in_errors = True
        if with_pack:
            for rel, source in pack.modules.items():
                it.add_module(rel, source)
            it.add_data_json(json.dumps(pack.data))
        it.add_module("probe.rego", PROBE)
        return it

    alone = interpreter(False)
    alone_bundle = alone.build(None, ["gatekeeper_probe/answer"])
    full = interpreter(True)
    bundle = full.build(None, [ENTRYPOINT, "gatekeeper_probe/answer"])
    full.set_input_term(texts[0])
    alone.set_input_term(texts[0])

    def decide(text: str) -> str:
        full.set_input_term(text)
        return str(full.query_bundle_entrypoint(bundle, ENTRYPOINT))

    parts = {
        "set_input_term": over_inputs(full.set_input_term, texts, rounds),
        "probe_alone": median_us(
            lambda: str(alone.query_bundle_entrypoint(alone_bundle, "gatekeeper_probe/answer")),
            rounds * 10,
        ),
        "probe_beside_pack": median_us(
            lambda: str(full.query_bundle_entrypoint(bundle, "gatekeeper_probe/answer")),
            rounds * 10,
        ),
        "set_input_and_decide": over_inputs(decide, texts, rounds),
    }
    return parts


def wasm_eval(texts: list[str], rounds: int) -> float:
    from gatekeeper.engines import WasmEngine

    engine = WasmEngine(load_pack(REPO / "policies"))
    try:
        instance = engine._instance()  # this thread's instance, as decide uses it
        payloads = {text: text.encode() for text in texts}
        return over_inputs(lambda t: instance.evaluate(payloads[t], 1 << 40), texts, rounds)
    finally:
        engine.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--no-wasm", action="store_true")
    args = parser.parse_args()
    cases = [json.loads(line) for line in (REPO / "tests/cases/public.jsonl").open()]
    texts = [
        json.dumps(
            parse_request(c["request"]).to_policy_input(), separators=(",", ":"), ensure_ascii=False
        )
        for c in cases
    ]
    size = statistics.median(len(t.encode()) for t in texts)
    print(f"engine_cost: load {loadavg()}, {len(texts)} inputs, median input {size:.0f} bytes")

    sign, durable = audit_floor(args.rounds)
    floor = sign + durable
    print(f"audit floor: two Ed25519 signatures {sign:8.1f} us")
    print(f"audit floor: SQLite commit + fsync  {durable:8.1f} us")
    print(f"audit floor: together               {floor:8.1f} us")

    parts = regopy_parts(texts, args.rounds)
    print(f"regopy: set_input_term (read the input)      {parts['set_input_term']:8.1f} us")
    print(f"regopy: one-line rule, compiled alone        {parts['probe_alone']:8.1f} us")
    print(f"regopy: one-line rule, beside the pack       {parts['probe_beside_pack']:8.1f} us")
    evaluation = parts["set_input_and_decide"] - parts["set_input_term"]
    print(f"regopy: input + decision entrypoint          {parts['set_input_and_decide']:8.1f} us")
    print(f"regopy: the evaluation (the difference)      {evaluation:8.1f} us")
    bound = parts["set_input_and_decide"] + floor
    print(
        f"regopy: lower bound of a full decision       {bound:8.1f} us"
        f"  = {bound / TARGET_US:.2f} x the {TARGET_US:.0f} us target"
    )
    if not args.no_wasm:
        evaluation = wasm_eval(texts, args.rounds)
        bound = evaluation + floor
        print(f"wasm: raw opa_eval (input + evaluation)      {evaluation:8.1f} us")
        print(
            f"wasm: lower bound of a full decision         {bound:8.1f} us"
            f"  = {bound / TARGET_US:.2f} x the {TARGET_US:.0f} us target"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
