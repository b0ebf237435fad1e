"""The values the web view shows: a verification's status and counts, one entry with
its proof; and :class:`ReadOnlyStore`, the store the view reads through."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gatekeeper.audit import merkle
from gatekeeper.audit.entry import AuditError
from gatekeeper.audit.note import Checkpoint
from gatekeeper.audit.store import AppendedEntry, SignCheckpoint, StoredEntry
from gatekeeper.ui._search import DECISIONS, as_mapping, as_strings, as_text

if TYPE_CHECKING:
    from gatekeeper.audit.readonly import LogReader
    from gatekeeper.reports import Provenance

__all__ = [
    "Counts",
    "EntryCounter",
    "EntryDetail",
    "ProofStep",
    "ReadOnlyStore",
    "Status",
    "audit_path",
]


class ReadOnlyStore:
    """An :class:`~gatekeeper.audit.store.AuditStore` over a read-only reader:
    every read is passed through, ``append_batch`` refuses."""

    def __init__(self, reader: LogReader) -> None:
        self.reader = reader

    def append_batch(
        self, entries: Sequence[tuple[bytes, bytes]], sign_checkpoint: SignCheckpoint
    ) -> tuple[list[AppendedEntry], str]:
        raise AuditError("the web view opens the log read-only", reason="audit_read_only")

    def size(self) -> int:
        return self.reader.size()

    def read_entries(self, start: int, end: int) -> list[StoredEntry]:
        return self.reader.read_entries(start, end)

    def read_hashes(self, indexes: Sequence[int]) -> list[bytes]:
        return self.reader.read_hashes(indexes)

    def checkpoints(self) -> list[tuple[int, str]]:
        return self.reader.checkpoints()

    def latest_checkpoint(self) -> str | None:
        return self.reader.latest_checkpoint()

    def close(self) -> None:
        self.reader.close()


# -- counts and verification -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Counts:
    """What the entries of the verified checkpoint hold, counted once."""

    entries: int
    kinds: tuple[tuple[str, int], ...]
    decisions: tuple[tuple[str, int], ...]
    immigration: int
    rules: tuple[tuple[str, int], ...]
    students: int
    requesters: int
    first: str | None
    last: str | None

    def decision(self, name: str) -> int:
        return dict(self.decisions).get(name, 0)


class EntryCounter:
    """An aggregator (:class:`gatekeeper.reports._source.Aggregator`) for :class:`Counts`."""

    def __init__(self) -> None:
        self.entries = 0
        self.kinds: Counter[str] = Counter()
        self.decisions: Counter[str] = Counter()
        self.rules: Counter[str] = Counter()
        self.immigration = 0
        self.students: set[str] = set()
        self.requesters: set[str] = set()
        self.first: str | None = None
        self.last: str | None = None

    def add(self, index: int, entry: Mapping[str, Any], moment: datetime | None) -> None:
        self.entries += 1
        kind = as_text(entry.get("kind")) or "(unknown)"
        self.kinds[kind] += 1
        stamp = as_text(entry.get("timestamp"))
        if stamp:
            self.first = stamp if self.first is None else min(self.first, stamp)
            self.last = stamp if self.last is None else max(self.last, stamp)
        if kind not in ("decision", "invalid_request"):
            return
        decision = as_text(entry.get("decision"))
        self.decisions[decision if decision in DECISIONS else "deny"] += 1
        for rule in as_strings(entry.get("rules"))[:1]:
            self.rules[rule] += 1
        if entry.get("immigration_context") is True:
            self.immigration += 1
        student = as_text(as_mapping(entry, "student").get("id"))
        if student:
            self.students.add(student)
        requester = as_text(as_mapping(entry, "requester").get("id"))
        if requester:
            self.requesters.add(requester)

    def counts(self) -> Counts:
        return Counts(
            entries=self.entries,
            kinds=tuple(sorted(self.kinds.items(), key=lambda kv: (-kv[1], kv[0]))),
            decisions=tuple((d, self.decisions.get(d, 0)) for d in DECISIONS),
            immigration=self.immigration,
            rules=tuple(sorted(self.rules.items(), key=lambda kv: (-kv[1], kv[0]))[:12]),
            students=len(self.students),
            requesters=len(self.requesters),
            first=self.first,
            last=self.last,
        )


@dataclass(frozen=True, slots=True)
class Status:
    """One run of the verifier over the log, and the counts of the checkpoint it verified."""

    checked_at: datetime
    seconds: float
    #: The log's size when it was verified (the head; normally the checkpoint's size).
    size: int
    valid_entries: int
    checkpoints: int
    signature_mode: str
    signatures_checked: int
    problems: tuple[str, ...]
    #: The verified checkpoint, with the outcome of the re-hash; None when it does not open.
    provenance: Provenance | None
    checkpoint_error: str | None = None
    counts: Counts | None = None
    #: The checkpoint as the verifier left it, before the re-hash: what reports start from.
    verified: Provenance | None = None

    @property
    def ok(self) -> bool:
        return not self.problems and self.provenance is not None and self.provenance.verified

    @property
    def summary(self) -> str:
        return f"{self.valid_entries}/{self.size} entries valid"


# -- one entry -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProofStep:
    """One hash of the audit path: the sibling, its side, and the hash they make."""

    sibling: bytes
    side: str  # "left" | "right": where the sibling sits
    result: bytes


@dataclass(frozen=True, slots=True)
class EntryDetail:
    index: int
    data: bytes
    value: Any
    pretty: str
    leaf_hash: bytes
    signature: bytes
    #: ``name+keyid`` of the keyring key whose signature verifies, or None.
    signed_by: str | None
    checkpoint: Checkpoint | None
    checkpoint_error: str | None = None
    proof: tuple[bytes, ...] = ()
    steps: tuple[ProofStep, ...] = ()
    proof_verified: bool = False
    proof_error: str | None = None


def audit_path(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> list[ProofStep]:
    """The hashes an RFC 9162 (2.1.3.2) inclusion check computes, step by step."""
    fn, sn, r = index, size - 1, leaf
    steps = []
    for sibling in proof:
        if fn & 1 or fn == sn:
            r = merkle.node_hash(sibling, r)
            steps.append(ProofStep(sibling, "left", r))
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = merkle.node_hash(r, sibling)
            steps.append(ProofStep(sibling, "right", r))
        fn >>= 1
        sn >>= 1
    return steps
