"""Benchmark: Gatekeeper.decide against the raw engine call, in one run.

    python3 bench/decide.py                 # embedded and opa, 2000 rounds each
    python3 bench/decide.py --rounds 200 --engine embedded
    python3 bench/decide.py --engine all    # also the wasm engine

Baselines, measured interleaved with the thing they are a baseline for (the
same policy input, alternating A, B, A, B so machine noise hits both alike):

- embedded: the raw regopy evaluation of the policy input
  (``set_input_term`` + ``query_bundle_entrypoint`` + the result text) on
  the pack compiled the same way, in the calling thread, against
  ``decide(request dict)``: parsing and validating the request, normalizing
  it, handing it to the engine's worker thread (the deadline), evaluating,
  checking the output.
- opa: one raw HTTP POST of the same input to the same OPA server
  (``requests``, keep-alive), against ``decide`` through the OPA engine.
- wasm: the raw evaluation in the compiled module (JSON text of the input
  copied into its memory, ``opa_eval``, the result text read back) on the
  same instance, against ``decide`` through the wasm engine. The evaluation
  is so short that the fixed Python cost of ``decide`` weighs more here; the
  1.25 target of --check is for the embedded and opa engines only.

Prints medians and p99 in microseconds and the median ratio; with --check,
exits 1 when a ratio exceeds its target (1.25).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

# The public cases are scenarios of their own day (as_of 2026-04-02): replayed
# as such, without the live as_of check (max_as_of_skew; subprocesses inherit it).
os.environ.setdefault("GATEKEEPER_MAX_AS_OF_SKEW", "off")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import requests  # noqa: E402

from gatekeeper import Gatekeeper  # noqa: E402
from gatekeeper.engines import (  # noqa: E402
    ENTRYPOINT,
    EmbeddedEngine,
    OpaServerEngine,
    WasmEngine,
    load_pack,
)
from gatekeeper.engines.embedded import _Compiled  # noqa: E402
from gatekeeper.request import parse_request  # noqa: E402
from tests.opa_server import OpaServer  # noqa: E402

TARGET = 1.25
CASE_IDS = ("A01", "A10", "A26", "A23")  # staff permit, IMM-10 permit, IMM-13 deny, vendor bulk


def load_requests() -> list[dict[str, object]]:
    cases = [json.loads(line) for line in (REPO / "tests/cases/public.jsonl").open()]
    return [c["request"] for c in cases if c["id"] in CASE_IDS]


def p99(xs: list[float]) -> float:
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def interleaved(
    a: Callable[[], object], b: Callable[[], object], rounds: int
) -> tuple[list[float], list[float]]:
    for _ in range(min(50, rounds)):  # warm-up
        a()
        b()
    ta: list[float] = []
    tb: list[float] = []
    clock = time.perf_counter_ns
    for _ in range(rounds):
        s = clock()
        a()
        ta.append((clock() - s) / 1000)
        s = clock()
        b()
        tb.append((clock() - s) / 1000)
    return ta, tb


def report(
    label: str,
    base_name: str,
    base: list[float],
    name: str,
    guarded: list[float],
    target: float | None = TARGET,
) -> float:
    ratio = statistics.median(guarded) / statistics.median(base)

    def line(what: str, xs: list[float]) -> str:
        return f"{label}: {what:<34} median {statistics.median(xs):9.1f} us  p99 {p99(xs):9.1f} us"

    print(line(f"baseline {base_name}:", base))
    print(line(name, guarded))
    goal = f"  (target <= {target})" if target is not None else ""
    print(f"{label}: ratio (median {name} / median {base_name}) = {ratio:.3f}{goal}")
    return ratio


def bench_embedded(rounds: int) -> float:
    pack = load_pack(REPO / "policies")
    engine = EmbeddedEngine(pack)
    gk = Gatekeeper(engine=engine, allow_unaudited=True)
    # The same pack compiled the same way, called in this thread: decide also
    # pays the hand-off to the engine's worker thread (its deadline).
    compiled = _Compiled(pack)
    reqs = load_requests()
    inputs = [parse_request(r).to_policy_input() for r in reqs]
    state = {"i": 0}

    def raw() -> object:
        policy_input = inputs[state["i"] % len(inputs)]
        return compiled.run(json.dumps(policy_input, separators=(",", ":"), ensure_ascii=False))

    def decide() -> object:
        decision = gk.decide(reqs[state["i"] % len(reqs)])
        state["i"] += 1
        return decision

    base, guarded = interleaved(raw, decide, rounds)
    return report("embedded", "raw regopy eval", base, "decide (no audit)", guarded)


def bench_opa(rounds: int) -> float:
    pack = load_pack(REPO / "policies")
    with OpaServer(REPO / "policies") as server:
        engine = OpaServerEngine(pack, url=server.url, timeout=2.0)
        gk = Gatekeeper(engine=engine, allow_unaudited=True)
        reqs = load_requests()
        bodies = [json.dumps({"input": parse_request(r).to_policy_input()}).encode() for r in reqs]
        session = requests.Session()
        url = f"{server.url}/v1/data/{ENTRYPOINT}"
        state = {"i": 0}

        def raw() -> object:
            response = session.post(
                url,
                data=bodies[state["i"] % len(bodies)],
                headers={"Content-Type": "application/json"},
                timeout=2.0,
            )
            response.raise_for_status()
            return response.content

        def decide() -> object:
            decision = gk.decide(reqs[state["i"] % len(reqs)])
            state["i"] += 1
            assert decision.reason is None, decision.reason
            return decision

        base, guarded = interleaved(raw, decide, rounds)
        return report("opa", "raw HTTP POST", base, "decide (no audit)", guarded)


def bench_wasm(rounds: int) -> float:
    pack = load_pack(REPO / "policies")
    engine = WasmEngine(pack)
    gk = Gatekeeper(engine=engine, allow_unaudited=True)
    instance = engine._instance()  # the same instance decide uses (this thread's)
    reqs = load_requests()
    payloads = [
        json.dumps(parse_request(r).to_policy_input(), separators=(",", ":")).encode() for r in reqs
    ]
    state = {"i": 0}

    def raw() -> object:
        return instance.evaluate(payloads[state["i"] % len(payloads)], 1 << 40)

    def decide() -> object:
        decision = gk.decide(reqs[state["i"] % len(reqs)])
        state["i"] += 1
        assert decision.reason is None, decision.reason
        return decision

    try:
        base, guarded = interleaved(raw, decide, rounds)
        return report("wasm", "raw wasm opa_eval", base, "decide (no audit)", guarded, None)
    finally:
        engine.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument(
        "--engine", choices=("embedded", "opa", "wasm", "both", "all"), default="both"
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when a ratio misses its target"
    )
    args = parser.parse_args()
    ratios = []
    if args.engine in ("embedded", "both", "all"):
        ratios.append(bench_embedded(args.rounds))
    if args.engine in ("opa", "both", "all"):
        ratios.append(bench_opa(args.rounds))
    if args.engine in ("wasm", "all"):
        bench_wasm(args.rounds)  # no target: see the module docstring
    if args.check and any(r > TARGET for r in ratios):
        print("bench/decide.py: a ratio is above its target", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
