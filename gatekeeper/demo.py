"""``gatekeeper demo``: the main job, on the embedded defaults.

Starts the demo SIS (a OneRoster 1.2 API over synthetic students) and the
OneRoster proxy on loopback, then replays realistic requests drawn from the
public decision cases through the two ways gatekeeper sits in front of
student data:

- API clients through the proxy (a teacher's app, a transportation vendor's
  nightly sync, a board-flagged analytics vendor, an enforcement-linked data
  broker, an immigration agency's client, a principal asking for country of
  birth);
- the front office, where staff record a visitor's request and its papers and
  the guard API (``gk.access`` / ``gk.release``) decides before the SIS lookup
  (a parent, paramedics, ICE with an I-200, HSI's "welfare check", a phone
  call asking whether a child is enrolled, a judicial warrant before and after
  the legal office's review).

Every decision is audited (embedded regopy engine, SQLite log, a key made on
first use); the demo prints a table of decisions with the deciding rule and
the staff guidance, verifies the log, writes the activity and enforcement
reports, and says where everything is.

Needs the ``demo`` extra (the proxy's Starlette, httpx, uvicorn and ijson;
the reports' matplotlib and jinja2).
"""

from __future__ import annotations

import copy
import json
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from importlib import resources
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

import gatekeeper
from gatekeeper.config import Settings, load_settings
from gatekeeper.errors import GatekeeperError
from gatekeeper.guard import AccessDenied, ReleaseHeld

__all__ = ["Outcome", "run_demo"]

# The demo SIS's own credential (the demo proxy config's upstream token), public on purpose.
SIS_TOKEN = "demo-sis-token"  # noqa: S105
TEACHER_CLASS = "cls-01-01-home-1"  # Ms. Rivera's homeroom in the demo proxy config
#: The demo moves each case to today (its documents by as many days as lie
#: between the case's own as_of and today) instead of deciding "as of" that
#: day: a live gatekeeper sets a backdated as_of aside (max_as_of_skew).
_BASIS_DATES = ("issued", "execute_by", "return_date")
_CONSENT_DATES = ("dated", "revoked_on")


@dataclass
class Outcome:
    """One replayed request: what was asked, what was decided, what left."""

    number: int
    who: str
    path: str  # "proxy" or "front office"
    case: str  # the public case it is drawn from
    decision: str
    rules: list[str]
    guidance: str
    decision_id: str | None
    released: str  # what left, in words
    http_status: int | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "who": self.who,
            "path": self.path,
            "case": self.case,
            "decision": self.decision,
            "rules": self.rules,
            "guidance": self.guidance,
            "decision_id": self.decision_id,
            "released": self.released,
            "http_status": self.http_status,
            "notes": self.notes,
        }


class _Progress:
    """Step lines on stderr, with the time each took (anything over a second shows)."""

    def __init__(self, out: TextIO, total: int) -> None:
        self.out = out
        self.total = total
        self.step = 0

    @contextmanager
    def __call__(self, what: str) -> Iterator[None]:
        self.step += 1
        self.out.write(f"[{self.step}/{self.total}] {what} ...")
        self.out.flush()
        started = time.monotonic()
        try:
            yield
        except BaseException:
            self.out.write(" failed\n")
            raise
        self.out.write(f" done ({time.monotonic() - started:.1f} s)\n")
        self.out.flush()


def _cases() -> dict[str, dict[str, Any]]:
    text = resources.files("gatekeeper.sis").joinpath("demo-cases.jsonl").read_text("utf-8")
    cases = [json.loads(line) for line in text.splitlines() if line.strip()]
    return {c["id"]: c for c in cases}


def _front_office_request(
    case: Mapping[str, Any], student: Mapping[str, Any], request_id: str, zone: ZoneInfo
) -> dict[str, Any]:
    """A public case's request, about a demo SIS student instead of the case's."""
    request = copy.deepcopy(dict(case["request"]))
    request["request_id"] = request_id
    _move_to_today(request, zone)
    subject = request["student"]
    subject["id"] = student["sourcedId"]
    if "name" in subject:
        subject["name"] = f"{student['givenName']} {student['familyName']}"
    if "dob" in subject:
        subject["dob"] = student["birthDate"]
        subject.pop("age", None)  # the SIS's date of birth says it (the case's age was its own)
    basis = request.get("legal_basis")
    if basis and basis.get("named_students"):
        basis["named_students"] = [
            {"name": f"{student['givenName']} {student['familyName']}", "dob": student["birthDate"]}
        ]
    return request


def _move_to_today(request: dict[str, Any], zone: ZoneInfo) -> None:
    """Decide the case now: ``as_of`` left out (the gatekeeper's clock), and the
    dates of its legal document and consent moved by the days from the case's
    own as_of (its calendar day in ``zone``, the district's) to today, so a
    warrant valid then is valid now, an expired one still expired."""
    as_of = request.pop("as_of", None)
    if not isinstance(as_of, str):
        return  # already decided as of now: nothing to move
    day = datetime.fromisoformat(as_of).astimezone(zone).date()
    shift = datetime.now(zone).date() - day
    for part, keys in (("legal_basis", _BASIS_DATES), ("consent", _CONSENT_DATES)):
        section = request.get(part)
        if not isinstance(section, dict):
            continue
        for key in keys:
            if isinstance(section.get(key), str):
                section[key] = (date.fromisoformat(section[key]) + shift).isoformat()


def _fields_released(record: Mapping[str, Any]) -> str:
    keys = [k for k in record if k != "metadata"]
    keys += [f"metadata.{k}" for k in record.get("metadata", {}) or {}]
    return ", ".join(keys) if keys else "nothing"


def run_demo(
    data_dir: str | Path,
    *,
    students: int = 3000,
    out: TextIO = sys.stdout,
    progress: TextIO = sys.stderr,
    settings: Settings | None = None,
) -> int:
    """Run the demo; return the exit status (0: every step worked, the log verified)."""
    try:
        import httpx

        from gatekeeper.oneroster import load_proxy_config, start_proxy
        from gatekeeper.reports import (
            Period,
            Snapshot,
            activity_report,
            enforcement_report,
            write_report,
        )
        from gatekeeper.sis import start_demo_sis
    except ImportError as exc:
        raise GatekeeperError(
            f"gatekeeper demo needs the demo extra ({exc.name} is missing): "
            "python3 -m pip install 'gatekeeper[demo]'"
        ) from None

    data = Path(data_dir)
    data.mkdir(parents=True, exist_ok=True)
    step = _Progress(progress, 6)
    cases = _cases()
    config_path = resources.files("gatekeeper.sis").joinpath("demo-proxy.toml")
    with resources.as_file(config_path) as path:
        config = load_proxy_config(path)
    outcomes: list[Outcome] = []

    with step(f"building the demo SIS database ({students:,} synthetic students)"):
        from gatekeeper.sis.data import open_database

        db = open_database(data / "demo-sis.sqlite", students=students)
    gk = gatekeeper.open_with(settings or load_settings(None, data_dir=data))
    try:
        with step("starting the demo SIS and the OneRoster proxy on loopback"):
            sis = start_demo_sis(db=db, students=students, token=SIS_TOKEN)
            proxy = start_proxy(config, upstream=sis.url, gatekeeper=gk)
        try:
            with (
                httpx.Client(base_url=proxy.base_url, timeout=30.0, trust_env=False) as api,
                httpx.Client(
                    base_url=sis.base_url,
                    timeout=30.0,
                    trust_env=False,
                    headers={"Authorization": f"Bearer {SIS_TOKEN}"},
                ) as district_sis,
            ):
                with step("replaying API requests through the proxy"):
                    roster = _replay_proxy(gk, api, outcomes)
                # The front office identifies the student in the SIS (name, date of birth).
                student = dict(district_sis.get(f"/students/{roster[0]}").json()["user"])
                born = district_sis.get(f"/demographics/{roster[0]}").json()["demographics"]
                student["birthDate"] = born["birthDate"]
                with step("replaying front-office requests through the guard API"):
                    _replay_front_office(
                        gk,
                        cases,
                        district_sis,
                        config,
                        outcomes,
                        student,
                    )
        finally:
            proxy.stop()
            sis.stop()

        assert gk.audit is not None
        with step("verifying the audit log (every signature, the tree, every checkpoint)"):
            # The reports below are produced from this verified checkpoint.
            snapshot = Snapshot.take(gk.audit, signatures="all")
        with step("writing the activity and enforcement reports"):
            reports_dir = data / "reports"
            written: list[Path] = []
            for made in (
                activity_report(snapshot, period=Period()),
                enforcement_report(snapshot, period=Period()),
            ):
                written += write_report(made, "all", reports_dir)
        vkey = gk.audit.keys.vkey()
    finally:
        gk.close()

    (data / "demo-decisions.json").write_text(
        json.dumps([o.to_json() for o in outcomes], indent=2) + "\n", encoding="utf-8"
    )
    _print_table(outcomes, out)
    verified = snapshot.provenance
    problems = "\n".join(f"  {p}" for p in verified.problems[:10])
    out.write(
        f"\nAudit log: {verified.verification}"
        f"{' - OK' if verified.verified else ' - PROBLEMS:'}\n{problems}"
    )
    out.write(
        f"\nLog:       {data / 'audit.sqlite'} (origin {gk.audit.origin})\n"
        f"Checkpoint (latest, signed):\n{textwrap.indent(verified.checkpoint, '    ')}"
        f"Verifier key: {vkey}\n"
        f"Decisions: {data / 'demo-decisions.json'}\n"
        f"Reports:   {', '.join(str(p) for p in written if p.suffix == '.html')}\n"
        f"Next:      gatekeeper --data-dir {data} audit verify\n"
        f"           gatekeeper --data-dir {data} audit show --decision deny\n"
        f"           gatekeeper --data-dir {data} obligations list --pending\n"
    )
    out.flush()
    return 0 if verified.verified else 1


# --------------------------------------------------------------------------- through the proxy


def _decision_header(response: Any) -> tuple[str, str | None]:
    header = response.headers.get("X-Gatekeeper-Decision", "")
    effect, _, rest = header.partition(";")
    decision_id = rest.strip().removeprefix("id=") or None
    return effect.strip() or "none", decision_id


def _replay_proxy(gk: Any, api: Any, outcomes: list[Outcome]) -> list[str]:
    """The API clients of the demo proxy config; returns the teacher's class roster ids."""
    roster: list[str] = []

    def call(
        who: str,
        case: str,
        token: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        released: Callable[[Any], str] | None = None,
    ) -> Any:
        response = api.get(path, params=params, headers={"Authorization": f"Bearer {token}"})
        effect, decision_id = _decision_header(response)
        body = (
            response.json()
            if response.headers.get("content-type", "").startswith("application/json")
            else {}
        )
        if response.status_code == 200:
            rules: list[str] = []
            guidance = ""
            if decision_id is not None:
                rules, guidance = _entry_summary(gk, decision_id)
            what = released(body) if released else "the allowed fields"
        else:
            rules = list(body.get("rules") or [])
            guidance = str(body.get("guidance") or body.get("error") or "")
            what = f"nothing (HTTP {response.status_code}; the SIS was not called)"
        outcomes.append(
            Outcome(
                len(outcomes) + 1,
                who,
                "proxy",
                case,
                effect,
                rules,
                guidance,
                decision_id,
                what,
                response.status_code,
            )
        )
        return body

    body = call(
        "Teacher's gradebook app: her homeroom roster",
        "A01",
        "demo-teacher-token",
        f"/classes/{TEACHER_CLASS}/students",
        released=lambda b: (
            f"{len(b.get('users', []))} students, fields: "
            f"{_fields_released(b['users'][0]) if b.get('users') else 'none'}"
        ),
    )
    roster = [u["sourcedId"] for u in body.get("users", [])]
    if not roster:
        raise GatekeeperError("the demo could not read the teacher's roster through the proxy")
    call(
        "Teacher opens one student's record",
        "A01",
        "demo-teacher-token",
        f"/students/{roster[0]}",
        released=lambda b: _fields_released(b.get("user", {})),
    )
    call(
        "BusCo nightly rider sync (contracted vendor)",
        "A23",
        "demo-busco-token",
        "/students",
        {"limit": 100},
        released=lambda b: (
            f"{len(b.get('users', []))} students, fields: "
            f"{_fields_released(b['users'][0]) if b.get('users') else 'none'}"
        ),
    )
    call(
        "EdInsight roster pull (board-flagged vendor)",
        "A24",
        "demo-edinsight-token",
        "/students",
        {"limit": 100},
    )
    call(
        "TrackLink lookup (enforcement-linked broker)",
        "A24",
        "demo-tracklink-token",
        f"/students/{roster[0]}",
    )
    call("ICE-ERO API client looks a student up", "A04", "demo-ice-token", f"/students/{roster[0]}")
    call(
        "Principal asks for country of birth",
        "A31",
        "demo-principal-token",
        f"/demographics/{roster[0]}",
        {"fields": "sourcedId,countryOfBirthCode"},
    )
    return roster


def _entry_summary(gk: Any, decision_id: str) -> tuple[list[str], str]:
    """Rules and guidance of a permitted proxy decision, read back from its audit entry."""
    size = gk.audit.size()
    for entry in gk.audit.store.read_entries(max(0, size - 50), size):
        value = json.loads(entry.data)
        if value.get("decision_id") == decision_id:
            return list(value.get("rules") or []), str(value.get("guidance") or "")
    return [], ""


# --------------------------------------------------------------------------- front office


def _replay_front_office(
    gk: Any,
    cases: Mapping[str, Mapping[str, Any]],
    district_sis: Any,
    config: Any,
    outcomes: list[Outcome],
    student: Mapping[str, Any],
) -> None:
    redactor = config.mapping.redactor("user")
    sid = student["sourcedId"]
    zone = ZoneInfo(gk.timezone)  # the district's calendar, as the gatekeeper's

    def lookup() -> dict[str, Any]:
        response = district_sis.get(f"/students/{sid}")
        response.raise_for_status()
        record: dict[str, Any] = response.json()["user"]
        return record

    def visit(who: str, case_id: str, request_id: str) -> Outcome:
        request = _front_office_request(cases[case_id], student, request_id, zone)
        outcome = Outcome(
            len(outcomes) + 1, who, "front office", case_id, "", [], "", None, "nothing"
        )
        outcomes.append(outcome)
        try:
            with gk.access(request, redactor=redactor) as grant:
                released = grant.redact(lookup())
            decision = grant.decision
            outcome.released = _fields_released(released)
        except ReleaseHeld as held:
            decision = held.decision
            pending = ", ".join(held.pending)
            outcome.released = f"nothing yet: held for {pending}"
        except AccessDenied as denied:
            decision = denied.decision
        outcome.decision = decision.decision.value
        outcome.rules = list(decision.rules)
        outcome.guidance = decision.guidance
        outcome.decision_id = decision.decision_id
        if decision.reason:
            outcome.notes.append(f"reason: {decision.reason}")
        return outcome

    visit("Parent asks for her child's attendance", "A03", "demo-parent")
    visit("Paramedics during an allergic reaction", "A20", "demo-paramedics")
    visit("ICE-ERO officer with an I-200 warrant", "A05", "demo-i200")
    visit("HSI agent asks for a 'welfare check'", "A26", "demo-welfare-check")
    visit("Caller claiming ICE: is she enrolled?", "A29", "demo-phone")
    # One request, decided twice: escalated to the legal office, then decided
    # again once it approved (the same request_id: one request in the reports).
    visit("HSI judicial warrant, legal review pending", "A11", "demo-warrant")
    held = visit("HSI judicial warrant, approved by legal", "A10", "demo-warrant")

    # The legal office notifies the parent and acknowledges; then the release.
    if held.decision == "permit" and held.decision_id and held.released.startswith("nothing"):
        for row in gk.obligations.list(pending=True, decision_id=held.decision_id):
            if row.blocking:
                gk.obligations.ack(
                    row.id, by="legal-office (demo)", note="parent notified by phone (demo)"
                )
        grant = gk.release(held.decision_id, redactor=redactor)
        released = grant.redact(lookup())
        held.notes.append(
            "after the legal office acknowledged NOTIFY_PARENT_PRE: released "
            + _fields_released(released)
        )


# --------------------------------------------------------------------------- output


def _print_table(outcomes: list[Outcome], out: TextIO) -> None:
    width = 100
    out.write(f"\n{'#':>2}  {'request':44} {'via':12} {'decision':9} rules\n")
    out.write("-" * width + "\n")
    for o in outcomes:
        rules = ", ".join(o.rules[:3]) + (" ..." if len(o.rules) > 3 else "")
        out.write(f"{o.number:>2}  {o.who[:44]:44} {o.path:12} {o.decision.upper():9} {rules}\n")
        for label, text in (
            ("released", o.released),
            *(("then", n) for n in o.notes),
            ("staff", o.guidance),
        ):
            if text:
                out.write(
                    textwrap.fill(
                        text,
                        width,
                        initial_indent=f"    {label + ':':10}",
                        subsequent_indent=" " * 14,
                    )
                    + "\n"
                )
    out.write("-" * width + "\n")
