"""Coverage-guided fuzzing of request parsing (atheris / libFuzzer).

    python3 fuzz/fuzz_request.py -dict=fuzz/request.dict -runs=100000 fuzz/corpus/request

Input: any bytes, handed to ``parse_request`` as the CLI, the guard API and
``Gatekeeper.decide`` hand untrusted JSON over. Invariants (a violation is
an uncaught exception: libFuzzer reports a crash and saves the input):

- the result is an :class:`AccessRequest`, or a :class:`RequestError` (a
  ``GatekeeperError``) with a ``path`` string and a message, reason
  ``invalid_request``; nothing else is raised;
- a parsed request round-trips: ``parse_request(r.to_dict()) == r``, also
  through compact JSON text;
- ``to_policy_input()`` works and holds only JSON types, no floats.

See fuzz/README.md for long runs.
"""

from __future__ import annotations

import dataclasses
import json
import random
import sys
from datetime import UTC, datetime
from typing import Any

import atheris

atheris.enabled_hooks.add("str")  # str.startswith/endswith etc. guide the fuzzer
with atheris.instrument_imports(include=["gatekeeper"]):
    from gatekeeper import request as spec
    from gatekeeper.errors import GatekeeperError, RequestError
    from gatekeeper.request import AccessRequest, parse_request

NOW = datetime(2026, 4, 2, 17, 0, tzinfo=UTC)  # no clock: every run is reproducible


def check_policy_value(value: Any, where: str = "input") -> None:
    """Only JSON types the policy reads: no floats, str keys, no tuples or dates."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise AssertionError(f"{where}: non-string key {key!r}")
            check_policy_value(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_policy_value(item, f"{where}[{index}]")
    elif value is not None and not isinstance(value, str | bool | int):
        raise AssertionError(f"{where}: {type(value).__name__} in the policy input")


def check_one(data: bytes) -> AccessRequest | None:
    """Parse ``data`` and check every invariant; None when it is rightly refused."""
    try:
        request = parse_request(data, now=NOW)
    except RequestError as exc:
        if not (isinstance(exc, GatekeeperError) and exc.reason == "invalid_request"):
            raise AssertionError(f"RequestError with reason {exc.reason!r}") from exc
        if not isinstance(exc.path, str) or not str(exc).strip():
            raise AssertionError(f"RequestError without a path or message: {exc!r}") from exc
        return None
    if not isinstance(request, AccessRequest):
        raise AssertionError(f"parse_request returned {type(request).__name__}")
    as_dict = request.to_dict()
    again = parse_request(as_dict, now=NOW)
    if again != request:
        raise AssertionError(f"round trip through to_dict changed the request:\n{request}\n{again}")
    text = json.dumps(as_dict, ensure_ascii=False, separators=(",", ":"))
    if parse_request(text.encode("utf-8"), now=NOW) != request:
        raise AssertionError("round trip through JSON text changed the request")
    policy_input = request.to_policy_input()
    check_policy_value(policy_input)
    json.dumps(policy_input, allow_nan=False)
    return request


def TestOneInput(data: bytes) -> None:
    check_one(data)


# --------------------------------------------------------------------------- a JSON-aware mutator
# Byte mutations of JSON text mostly break its syntax; half the time this one
# edits the parsed document instead (replace, drop or add a value somewhere)
# so the fuzzer gets past json.loads into the typed checks.

VALUES: list[Any] = [
    None, True, False, 0, -1, 12, 2**63, 1.5, "", " ", "x", "S001", "E1001", "P003", "ICE-ERO",
    "I\u200bCE", "\u0406CE", "DHS-SEVP", "2026-04-02", "2026-02-30", "2026-04-02T10:00:00Z",
    "2026-04-02T10:00:00", "K", "all", "federal", "CA", "a\u0000b", "\u202eevil", "e\u0301",
    [], {}, ["grades"], [{"id": "S001"}], {"id": "x"},
]  # fmt: skip


def _containers(value: Any, out: list[Any]) -> list[Any]:
    if isinstance(value, dict | list):
        out.append(value)
        for item in value.values() if isinstance(value, dict) else value:
            _containers(item, out)
    return out


POOLS: list[list[Any]] = [
    VALUES,
    *(sorted(values) for values in (spec.REQUESTER_KINDS, spec.LEGAL_BASIS_TYPES)),
    *(sorted(values) for values in (spec.WELL_KNOWN_PURPOSES, spec.SIGNERS, spec.CHANNELS)),
]
CLASSES = [
    spec.AccessRequest, spec.Requester, spec.Student, spec.LegalBasis,
    spec.Consent, spec.Vendor, spec.Emergency, spec.Bulk,
]  # fmt: skip
KEYS = sorted({f.name for cls in CLASSES for f in dataclasses.fields(cls)})


def CustomMutator(data: bytes, max_size: int, seed: int) -> bytes:
    rng = random.Random(seed)  # noqa: S311 (mutation, not cryptography)
    if rng.random() < 0.5:
        return bytes(atheris.Mutate(data, max_size))
    try:
        document = json.loads(data)
        target = rng.choice(_containers(document, []) or [None])
    except (ValueError, RecursionError):
        return bytes(atheris.Mutate(data, max_size))
    if target is None:
        return bytes(atheris.Mutate(data, max_size))
    action = rng.random()
    if isinstance(target, dict):
        key = rng.choice(sorted(target)) if target and action < 0.7 else rng.choice(KEYS)
        if action < 0.15 and key in target:
            del target[key]
        else:
            target[key] = rng.choice(rng.choice(POOLS))
    elif target and action < 0.5:
        target[rng.randrange(len(target))] = rng.choice(rng.choice(POOLS))
    else:
        target.append(rng.choice(rng.choice(POOLS)))
    text = json.dumps(document, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")
    return text[:max_size]


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput, custom_mutator=CustomMutator)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
