"""``gatekeeper policy check``: formatting, ``opa check --strict``, and only agreed built-ins.

    >>> from gatekeeper.policy.check import check_policies
    >>> report = check_policies("policies")              # doctest: +SKIP
    >>> report.ok, report.render().splitlines()[-1]      # doctest: +SKIP
    (True, 'policy check: PASS')

Four checks, all run even when one fails:

1. **format**: ``opa fmt --list`` names the files ``opa fmt`` would change;
   ``opa fmt --diff`` shows how;
2. **opa check --strict** on every module, tests included;
3. **built-ins**: the pack's modules (not its ``*_test.rego``: tests run on
   OPA only) are type-checked again with a capabilities file that holds
   only :data:`gatekeeper.policy.builtins.ALLOWED_BUILTINS`; OPA's checker
   then names every other call ``undefined function`` with its line;
4. **embedded engine**: the pack loads and compiles in regopy (rego-cpp
   rejects some syntax OPA accepts, and its own load-time check refuses
   built-ins it does not implement).
"""

from __future__ import annotations

import difflib
import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from gatekeeper.engines._pack import package_of
from gatekeeper.errors import GatekeeperError
from gatekeeper.policy.builtins import capabilities
from gatekeeper.policy.opa_process import require_opa, run_opa

__all__ = ["CheckProblem", "CheckReport", "check_policies"]

_UNDEFINED = re.compile(
    r"^(?P<file>[^\n]*?):(?P<line>\d+): rego_type_error: undefined function (?P<name>[\w.]+)",
    re.MULTILINE,
)


@dataclass(frozen=True, slots=True)
class CheckProblem:
    """One problem: ``check`` is format, opa-check, builtins or embedded."""

    check: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


@dataclass(slots=True)
class CheckReport:
    policy_dir: Path
    problems: list[CheckProblem] = field(default_factory=list)
    format_diffs: dict[str, str] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def of(self, check: str) -> list[CheckProblem]:
        return [p for p in self.problems if p.check == check]

    def render(self) -> str:
        titles = {
            "format": "format (opa fmt)",
            "opa-check": "opa check --strict",
            "builtins": "built-ins (allow-list: docs/policy-builtins.md)",
            "embedded": "embedded engine (regopy)",
        }
        lines = [f"policy check: {self.policy_dir}"]
        for check in self.checks:
            found = self.of(check)
            lines.append(f"  {titles[check]}: {'ok' if not found else f'{len(found)} problem(s)'}")
            for problem in found:
                lines.append(f"    {problem}")
                diff = self.format_diffs.get(problem.where) if check == "format" else None
                if diff:
                    lines.extend(f"      {line}" for line in diff.rstrip().splitlines())
        lines.append("policy check: PASS" if self.ok else "policy check: FAIL")
        return "\n".join(lines)


def _rego_files(directory: Path) -> tuple[list[Path], list[Path]]:
    """(pack modules, test modules) under ``directory``."""
    pack: list[Path] = []
    tests: list[Path] = []
    for path in sorted(directory.rglob("*.rego")):
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            pack.append(path)  # opa check reports it
            continue
        (tests if package_of(source).endswith("_test") else pack).append(path)
    return pack, tests


def _format_diff(opa: Path, path: Path) -> str:
    """A unified diff from ``path`` to what ``opa fmt`` makes of it."""
    formatted = run_opa(opa, "fmt", str(path))
    if formatted.returncode != 0:
        return formatted.stderr.strip()
    try:
        original = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return str(exc)
    return "".join(
        difflib.unified_diff(
            original.splitlines(keepends=True),
            formatted.stdout.splitlines(keepends=True),
            fromfile=f"{path.name} (as written)",
            tofile=f"{path.name} (opa fmt)",
        )
    )


def check_policies(policy_dir: str | Path, *, opa_bin: str | Path | None = None) -> CheckReport:
    """Run the four checks on ``policy_dir``; never raises for what it finds."""
    directory = Path(policy_dir)
    report = CheckReport(policy_dir=directory)
    if not directory.is_dir():
        raise GatekeeperError(f"policy directory not found: {directory}", reason="policy_error")
    opa = require_opa(opa_bin)
    pack_files, _tests = _rego_files(directory)

    report.checks.append("format")
    listed = run_opa(opa, "fmt", "--list", str(directory))
    if listed.returncode != 0 and not listed.stdout.strip():
        report.problems.append(CheckProblem("format", "", listed.stderr.strip()))
    for name in listed.stdout.splitlines():
        if not name.strip():
            continue
        report.format_diffs[name] = _format_diff(opa, Path(name))
        report.problems.append(CheckProblem("format", name, "not formatted: run `opa fmt -w`"))

    report.checks.append("opa-check")
    strict = run_opa(opa, "check", "--strict", "--max-errors", "-1", str(directory))
    if strict.returncode != 0:
        for line in (strict.stdout + strict.stderr).strip().splitlines():
            if line.strip() and not re.match(r"^\d+ errors? occurred:?$", line.strip()):
                report.problems.append(CheckProblem("opa-check", "", line.strip()))

    report.checks.append("builtins")
    if pack_files:
        current = run_opa(opa, "capabilities", "--current")
        if current.returncode != 0:
            raise GatekeeperError(f"opa capabilities failed: {current.stderr.strip()}")
        caps = capabilities(json.loads(current.stdout))
        with tempfile.TemporaryDirectory(prefix="gatekeeper-caps-") as tmp:
            caps_file = Path(tmp) / "capabilities.json"
            caps_file.write_text(json.dumps(caps), encoding="utf-8")
            typed = run_opa(
                opa,
                "check",
                "--strict",
                "--max-errors",
                "-1",
                "--capabilities",
                str(caps_file),
                *map(str, pack_files),
            )
        seen: set[tuple[str, str, str]] = set()
        for match in _UNDEFINED.finditer(typed.stdout + typed.stderr):
            key = (match["file"], match["line"], match["name"])
            if key in seen:
                continue
            seen.add(key)
            report.problems.append(
                CheckProblem(
                    "builtins",
                    f"{match['file']}:{match['line']}",
                    f"{match['name']} is not on the list of built-ins both engines agree on",
                )
            )

    report.checks.append("embedded")
    try:
        from gatekeeper.engines import EmbeddedEngine, load_pack

        EmbeddedEngine(load_pack(directory)).close()
    except GatekeeperError as exc:
        report.problems.append(CheckProblem("embedded", "", str(exc)))
    return report
