"""``gatekeeper policy test``: ``opa test`` and the decision-table cases on both engines.

    >>> from gatekeeper.policy.testing import run_policy_tests
    >>> report = run_policy_tests("policies", ["tests/cases/public.jsonl"])   # doctest: +SKIP
    >>> report.ok, report.render().splitlines()[-1]                            # doctest: +SKIP
    (True, 'policy test: PASS')

Three checks, all run even when one fails:

1. ``opa test`` on the pack directory (the ``*_test.rego`` unit tests);
2. every case on the embedded engine (regopy) and on a real OPA server
   (``opa run --server --bundle DIR`` started on loopback for the run),
   each through a :class:`~gatekeeper.guard.Gatekeeper` without an audit
   log, exactly as the test suite does;
3. the two engines must give identical decisions (decision, rules,
   obligations, allowed and denied fields, guidance) on every case.

A failing case is shown as a diff per key: expected vs actual decision,
deciding rule, missing and unexpected rules, obligations and fields.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gatekeeper.engines import EmbeddedEngine, OpaServerEngine, PolicyEngine, load_pack
from gatekeeper.errors import GatekeeperError
from gatekeeper.guard import Gatekeeper
from gatekeeper.policy.cases import Case, check_decision, load_cases
from gatekeeper.policy.opa_process import OpaProcess, require_opa, run_opa

__all__ = ["CaseFailure", "PolicyTestReport", "default_case_files", "run_policy_tests"]

#: The keys on which the two engines must agree.
AGREEMENT_KEYS = (
    "decision",
    "rules",
    "obligations",
    "allowed_fields",
    "denied_fields",
    "guidance",
)


def default_case_files(policy_dir: str | Path | None = None) -> list[Path]:
    """The project's decision-table cases: ``tests/cases/*.jsonl`` of the checkout
    that holds the policy directory (or gatekeeper itself); [] when there is none."""
    roots = []
    if policy_dir is not None:
        roots.append(Path(policy_dir).resolve().parent)
    roots.append(Path(__file__).resolve().parents[2])
    for root in roots:
        cases = sorted((root / "tests" / "cases").glob("*.jsonl"))
        if cases:
            return cases
    return []


@dataclass(frozen=True, slots=True)
class CaseFailure:
    """One case that one engine got wrong (or on which the engines disagree)."""

    case: Case
    engine: str
    problems: tuple[str, ...]

    def render(self) -> str:
        title = f" {self.case.title}" if self.case.title else ""
        lines = [f"FAIL {self.case.id} ({self.case.where}) [{self.engine}]{title}"]
        lines.extend(f"    {p}" for p in self.problems)
        return "\n".join(lines)


@dataclass(slots=True)
class PolicyTestReport:
    """What ``policy test`` found; ``ok`` when everything passed."""

    policy_dir: Path
    opa_test_ok: bool = True
    opa_test_output: str = ""
    cases: int = 0
    passed: dict[str, int] = field(default_factory=dict)
    failures: list[CaseFailure] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.opa_test_ok and not self.failures and not self.errors

    def render(self) -> str:
        lines = [f"policy test: {self.policy_dir}"]
        summary = self.opa_test_output.strip().splitlines()
        if self.opa_test_ok:
            lines.append(f"  opa test: {summary[-1] if summary else 'ok'}")
        else:
            lines.append("  opa test: FAIL")
            lines.extend(f"    {line}" for line in summary)
        for engine, count in self.passed.items():
            lines.append(f"  cases on {engine}: {count}/{self.cases} pass")
        for error in self.errors:
            lines.append(f"  ERROR {error}")
        for failure in self.failures:
            lines.append("  " + failure.render().replace("\n", "\n  "))
        lines.append("policy test: PASS" if self.ok else "policy test: FAIL")
        return "\n".join(lines)


def _run_cases(
    engine: PolicyEngine, cases: Sequence[Case], report: PolicyTestReport
) -> list[dict[str, Any] | None]:
    """Decide every case with ``engine``; record failures; the decisions (None on error)."""
    # Cases are scenarios of their own day (as_of): decided as of it, no skew check.
    gk = Gatekeeper(engine=engine, allow_unaudited=True, max_as_of_skew=None)
    decisions: list[dict[str, Any] | None] = []
    passed = 0
    for case in cases:
        try:
            got = gk.decide(dict(case.request)).to_dict()
        except Exception as exc:  # a bug in the tool must show, not stop the run
            report.failures.append(CaseFailure(case, engine.name, (f"error: {exc!r}",)))
            decisions.append(None)
            continue
        problems = check_decision(case, got)
        if problems:
            report.failures.append(CaseFailure(case, engine.name, tuple(problems)))
        else:
            passed += 1
        decisions.append(got)
    report.passed[engine.name] = passed
    return decisions


def _compare_engines(
    cases: Sequence[Case],
    first: tuple[str, Sequence[dict[str, Any] | None]],
    other: tuple[str, Sequence[dict[str, Any] | None]],
    report: PolicyTestReport,
) -> None:
    (name_a, decided_a), (name_b, decided_b) = first, other
    for case, a, b in zip(cases, decided_a, decided_b, strict=True):
        if a is None or b is None:
            continue
        problems = [
            f"{key}: {name_a} {a.get(key)!r}, {name_b} {b.get(key)!r}"
            for key in AGREEMENT_KEYS
            if a.get(key) != b.get(key)
        ]
        if problems:
            report.failures.append(CaseFailure(case, f"{name_a} vs {name_b}", tuple(problems)))


def run_policy_tests(
    policy_dir: str | Path,
    case_files: Iterable[str | Path],
    *,
    opa_bin: str | Path | None = None,
    engines: Sequence[str] = ("embedded", "opa"),
    opa_timeout: float = 5.0,
) -> PolicyTestReport:
    """Run ``opa test`` and the cases; never raises for what it finds (see the report).

    Raises PolicyError when the pack or the cases cannot be loaded, or when
    ``opa`` is needed and missing.
    """
    directory = Path(policy_dir)
    report = PolicyTestReport(policy_dir=directory)
    cases = load_cases(case_files)
    report.cases = len(cases)
    pack = load_pack(directory)
    opa = require_opa(opa_bin)

    result = run_opa(opa, "test", "--fail-on-empty", str(directory))
    report.opa_test_ok = result.returncode == 0
    report.opa_test_output = (result.stdout + result.stderr).strip()

    decided: dict[str, list[dict[str, Any] | None]] = {}

    def in_process(name: str, make: Callable[[], Any]) -> None:
        try:
            engine = make()
        except (GatekeeperError, ImportError) as exc:
            report.errors.append(f"{name} engine: {exc}")
            return
        try:
            decided[name] = _run_cases(engine, cases, report)
        finally:
            engine.close()

    if "embedded" in engines:
        in_process("embedded", lambda: EmbeddedEngine(pack))
    if "opa" in engines:
        try:
            with OpaProcess(directory, opa_bin=opa) as server:
                remote = OpaServerEngine(pack, url=server.url, timeout=opa_timeout)
                try:
                    decided["opa"] = _run_cases(remote, cases, report)
                finally:
                    remote.close()
        except GatekeeperError as exc:
            report.errors.append(f"opa server: {exc}")
    if "wasm" in engines:

        def wasm() -> Any:
            from gatekeeper.engines.wasm import WasmEngine

            return WasmEngine(pack, opa_bin=opa, timeout=opa_timeout)

        in_process("wasm", wasm)
    # Every engine must agree with the first one that ran.
    names = [name for name in ("embedded", "opa", "wasm") if name in decided]
    for name in names[1:]:
        _compare_engines(cases, (names[0], decided[names[0]]), (name, decided[name]), report)
    return report
