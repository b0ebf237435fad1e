"""Reading the fields of a decision entry defensively, and words for codes.

Entries are signed by us but their strings come from requesters (agency
names, ``purpose_text``): nothing here interprets them, and every renderer
escapes them. An entry too large for 64 KiB keeps some lists only as
``{"count": n, "sha256": ...}``; :func:`field_names` says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "DECISIONS",
    "LABELS",
    "deciding_rule",
    "field_names",
    "label",
    "obligations",
    "rules",
    "sub",
    "subject_key",
    "text",
]

DECISIONS = ("permit", "deny", "escalate")

#: Words for the codes a parent or a board member reads (codes stay in CSV and JSON).
LABELS: dict[str, str] = {
    # decisions
    "permit": "permitted",
    "deny": "refused",
    "escalate": "escalated to the legal office",
    # requester kinds
    "district_staff": "district staff",
    "parent": "parent",
    "eligible_student": "eligible student",
    "other_school": "another school or district",
    "court": "court",
    "law_enforcement": "law enforcement",
    "school_police": "school police",
    "immigration_authority": "immigration authority",
    "child_welfare": "child welfare agency",
    "vendor": "vendor",
    "health_provider": "health provider",
    "emergency_responder": "emergency responder",
    "media": "news media",
    "employer": "employer",
    "college": "college",
    "military_recruiter": "military recruiter",
    "attorney": "attorney",
    "social_services": "social services",
    "federal_compliance": "federal compliance office",
    "other": "other",
    # legal basis types
    "none": "no document",
    "judicial_search_warrant": "judicial search warrant",
    "judicial_arrest_warrant": "judicial arrest warrant",
    "court_order": "court order",
    "judicial_subpoena": "judicial subpoena",
    "grand_jury_subpoena": "grand-jury subpoena",
    "admin_warrant_I200": "administrative warrant (I-200)",
    "admin_warrant_I205": "administrative warrant (I-205)",
    "detainer_I247A": "immigration detainer (I-247A)",
    "admin_subpoena_I138": "administrative subpoena (I-138)",
    "eoir_order": "immigration court (EOIR) order",
    "agency_letter": "agency letter",
    # channels
    "in_person": "in person",
    "email": "e-mail",
    "fax": "fax",
    "phone": "phone",
    "portal": "portal",
    "api": "system interface (API)",
    "internal": "internal",
    # purposes
    "educational": "educational",
    "parent_access": "parent access",
    "enrollment_transfer": "enrollment in another school",
    "court_proceeding": "court proceeding",
    "criminal_investigation": "criminal investigation",
    "immigration_enforcement": "immigration enforcement",
    "welfare_check": "welfare check",
    "emergency": "health or safety emergency",
    "child_welfare_investigation": "child-welfare investigation",
    "news": "news",
    "recruiting": "recruiting",
    "admission": "admission",
    "employment": "employment",
    "treatment": "treatment",
    "post_release_services": "post-release services",
    "sevis_compliance": "student-visa (SEVIS) compliance",
    "legal_representation": "legal representation",
    "unspecified": "not stated",
    # rules a parent-visible record can cite (RULES.md)
    "GEN-01": "no consent and no legal exception",
    "GEN-02": "requester's identity not verified",
    "FERPA-2": "transfer to a school where the student enrolls (34 CFR 99.31(a)(2))",
    "FERPA-9": "court order or lawfully issued subpoena (34 CFR 99.31(a)(9))",
    "FERPA-9P": "court document awaiting legal review",
    "FERPA-9T": "subpoena leaves too little time to notify the family",
    "FERPA-10": "health or safety emergency determined by the district (34 CFR 99.36)",
    "FERPA-10X": "emergency claimed, not determined by the district",
    "CONS-01X": "consent incomplete or not covering the request",
    "IMM-01": "immigration-related request without legal compulsion (Ed. Code 234.7)",
    "IMM-03": "administrative warrant is not a court order",
    "IMM-04": "immigration detainer is not a court order",
    "IMM-05": "administrative subpoena is not judicial process",
    "IMM-06": "claimed parental agreement without signed consent",
    "IMM-09": "immigration agency's emergency claim",
    "IMM-10": "judicial warrant or order reviewed by the legal office",
    "IMM-12": "judicial document not valid for these records",
    "IMM-13": "welfare check by an immigration agency",
    "IMM-15": "police relaying immigration enforcement",
    # every other rule of the pack (RULES.md), so that no line shows a bare id
    "GEN-03": "only the records the basis covers",
    "FERPA-1": "school official with a legitimate educational interest",
    "FERPA-1N": "school official without an educational interest in these records",
    "FERPA-1V": "contracted vendor within its contract (Ed. Code 49073.1)",
    "FERPA-1VX": "vendor request outside its contract",
    "FERPA-9N": "sealed court process (no parent-visible record)",
    "FERPA-12": "the parent or the eligible student",
    "FERPA-12R": "a court restricts this parent's access",
    "CONS-01": "written consent of the parent or eligible student",
    "CONS-02": "consent not signed by the person who holds the right",
    "CONS-03": "consent revoked",
    "CONS-04": "written consent not yet verified with the family",
    "DIR-01": "directory information, no opt-out",
    "DIR-02": "directory information: the family opted out",
    "DIR-03": "directory information of a student experiencing homelessness",
    "DIR-04": "directory information for a commercial party",
    "DIR-05": "military recruiter: directory information of a secondary student",
    "CWS-01": "child-welfare agency without a court order or consent",
    "IMM-02": "citizenship or immigration-status information is never released",
    "IMM-07": "written consent naming the immigration agency, verified with the family",
    "IMM-07U": "written consent for an immigration agency, not yet verified",
    "IMM-08": "directory information asked by or for an immigration agency",
    "IMM-08F": "directory information of a former student for an immigration agency",
    "IMM-11": "judicial warrant or order awaiting the legal office",
    "IMM-12A": "unclear whether the court document names this student",
    "IMM-14": "vendor linked to immigration enforcement, or outside its contract",
    "IMM-14R": "vendor flagged by the board's vendor review",
    "IMM-15T": "police on a task force with an immigration agency",
    "IMM-17": "roster-wide request by or for an immigration agency, or by national origin",
    "IMM-18": "student-visa (SEVP) reporting federal law may require",
    "PROC-01": "court-issued document",
    "PROC-02": "signed by a judge or magistrate",
    "PROC-03": "document in date",
    "PROC-04": "names this student and these records",
    "PROC-05": "subpoena with a court seal and a proper signature",
    "PROC-06": "reviewed by the district's legal office",
    # purposes not listed above
    "identity_verification": "identity verification",
}


def label(code: object) -> str:
    """The words for a code; the code itself when there are none."""
    value = text(code)
    return LABELS.get(value, value)


def text(value: object) -> str:
    """A string value as is; anything else (None, numbers, objects) as ''."""
    return value if isinstance(value, str) else ""


def sub(entry: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """A nested object of the entry, or an empty one."""
    value = entry.get(key)
    return value if isinstance(value, Mapping) else {}


def _strings(value: object) -> list[str]:
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, str)]


def rules(entry: Mapping[str, Any]) -> list[str]:
    return _strings(entry.get("rules"))


def deciding_rule(entry: Mapping[str, Any]) -> str:
    found = rules(entry)
    return found[0] if found else "(none)"


def obligations(entry: Mapping[str, Any]) -> list[str]:
    return _strings(entry.get("obligations"))


def field_names(entry: Mapping[str, Any], key: str) -> tuple[list[str], int | None]:
    """(names, None), or ([], count) when the entry kept only a count and digest."""
    value = entry.get(key)
    if isinstance(value, Mapping):
        count = value.get("count")
        return [], count if isinstance(count, int) else 0
    return _strings(value), None


def subject_key(entry: Mapping[str, Any]) -> str:
    """Whom a request is about: ``student:<id>``, ``bulk:<scope>`` or ''."""
    student = sub(entry, "student")
    if student:
        return "student:" + text(student.get("id"))
    bulk = sub(entry, "bulk")
    if bulk:
        return "bulk:" + text(bulk.get("scope"))
    return ""
