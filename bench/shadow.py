"""Benchmark: what shadow mode costs the live decision.

    python3 bench/shadow.py                  # 10 blocks of 96 decisions per mode
    python3 bench/shadow.py --blocks 2 --per-block 32

Three Gatekeepers on the same embedded pack, without an audit log: no
shadow (the baseline), a ShadowEngine with the candidate in a child
process, and one with the candidate in a thread. The candidate is the
same pack (every comparison runs, none differs). Decisions are made back to
back, so the candidate is always busy: the worst case for the live side.
Blocks of the three modes alternate (A, B, C, A, B, C...) so that machine
noise hits all alike; after each block the shadow queue is drained outside
the timing. Prints the median and p95 latency of ``decide`` per mode and
the median ratio against the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

# The public cases are scenarios of their own day (as_of 2026-04-02): replayed
# as such, without the live as_of check (max_as_of_skew; subprocesses inherit it).
os.environ.setdefault("GATEKEEPER_MAX_AS_OF_SKEW", "off")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gatekeeper import Gatekeeper  # noqa: E402
from gatekeeper.engines import EmbeddedEngine, ShadowEngine, load_pack  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--per-block", type=int, default=96)
    args = parser.parse_args()
    requests = [json.loads(line)["request"] for line in (REPO / "tests/cases/public.jsonl").open()]
    pack = load_pack(REPO / "policies")
    modes: dict[str, Gatekeeper] = {
        "none": Gatekeeper(engine=EmbeddedEngine(pack), allow_unaudited=True),
        "process": Gatekeeper(
            engine=ShadowEngine(EmbeddedEngine(pack), EmbeddedEngine(pack), isolation="process"),
            allow_unaudited=True,
        ),
        "thread": Gatekeeper(
            engine=ShadowEngine(EmbeddedEngine(pack), EmbeddedEngine(pack), isolation="thread"),
            allow_unaudited=True,
        ),
    }
    samples: dict[str, list[float]] = {name: [] for name in modes}

    def drain(gk: Gatekeeper) -> None:
        if isinstance(gk.engine, ShadowEngine):
            gk.engine.drain(120)

    for gk in modes.values():  # warm up: compile, start the child
        for request in requests:
            gk.decide(request)
        drain(gk)
    for _ in range(args.blocks):
        for name, gk in modes.items():
            for i in range(args.per_block):
                request = requests[i % len(requests)]
                started = time.perf_counter()
                gk.decide(request)
                samples[name].append((time.perf_counter() - started) * 1e6)
            drain(gk)
    base = statistics.median(samples["none"])
    for name, values in samples.items():
        ordered = sorted(values)
        median = statistics.median(ordered)
        p95 = ordered[int(len(ordered) * 0.95)]
        print(f"{name:8} median {median:8.0f} us  p95 {p95:8.0f} us  ratio {median / base:.2f}")
    for name, gk in modes.items():
        if isinstance(gk.engine, ShadowEngine):
            print(f"{name:8} {gk.engine.stats}")
        gk.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
