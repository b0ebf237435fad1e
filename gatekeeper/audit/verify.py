"""Verifying a log: every entry, every signature, the tree and every checkpoint.

    >>> from gatekeeper.audit.verify import verify_log
    >>> report = verify_log(log.store, log.keys)      # doctest: +SKIP
    >>> report.ok, report.summary()                   # doctest: +SKIP
    (True, '1000/1000 entries valid')

What is checked, in one streaming pass (memory O(log n)):

- entries are numbered 0..size-1 with no gap;
- each entry's Ed25519 signature (all, a sample, or none: ``signatures``);
- each entry is canonical JSON (RFC 8785) as written;
- each stored tree hash equals the hash recomputed from the entries
  (an edited, reordered or replaced entry shows here, at its index);
- each stored checkpoint: a valid signature by a key of the keyring, the
  log's origin, and a root equal to the root recomputed at its size; sizes
  never shrink, and each checkpoint is consistent with the next (RFC 9162
  consistency proof from the stored hashes, checked);
- optionally, a checkpoint kept outside the store (``trusted``): the log
  must contain it, which detects a truncated or rewritten tail.

Tree and checkpoint checks are not bound by signature checks: those run in
a process pool (``workers``) or on a sample.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gatekeeper.audit import merkle
from gatekeeper.audit.entry import canonical
from gatekeeper.audit.keys import KeyStore
from gatekeeper.audit.note import Checkpoint, Verifier, open_checkpoint, parse_verifier_key
from gatekeeper.audit.store import AuditStore, StoredEntry
from gatekeeper.errors import GatekeeperError

__all__ = ["Problem", "VerifyReport", "verify_log"]

CHUNK = 4096


@dataclass(frozen=True, slots=True)
class Problem:
    index: int | None
    message: str

    def __str__(self) -> str:
        where = "log" if self.index is None else f"entry {self.index}"
        return f"{where}: {self.message}"


@dataclass(slots=True)
class VerifyReport:
    size: int = 0
    valid_entries: int = 0
    checkpoints: int = 0
    signatures_checked: int = 0
    signature_mode: str = "all"
    root: bytes = b""
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        return f"{self.valid_entries}/{self.size} entries valid"

    def raise_for_problems(self) -> None:
        """The raising twin: GatekeeperError naming the first problems."""
        if self.problems:
            shown = "; ".join(str(p) for p in self.problems[:5])
            raise GatekeeperError(f"audit log does not verify: {shown}", reason="audit_invalid")


class _Frontier:
    """The right edge of the tree: complete subtrees, largest first."""

    __slots__ = ("n", "stack")

    def __init__(self) -> None:
        self.stack: list[bytes] = []
        self.n = 0

    def append(self, leaf: bytes) -> list[bytes]:
        """Add a leaf hash; return the stored hashes it adds (Go tlog order)."""
        h = leaf
        out = [h]
        n = self.n
        while n & 1:
            h = merkle.node_hash(self.stack.pop(), h)
            out.append(h)
            n >>= 1
        self.stack.append(h)
        self.n += 1
        return out

    def root(self) -> bytes:
        if not self.stack:
            return merkle.EMPTY_ROOT
        h = self.stack[-1]
        for left in reversed(self.stack[:-1]):
            h = merkle.node_hash(left, h)
        return h


def _check_signatures(
    args: tuple[list[tuple[int, bytes, bytes]], list[bytes]],
) -> list[int]:
    """Indexes whose signature no keyring key accepts (runs in a worker)."""
    items, public_keys = args
    keys = [Ed25519PublicKey.from_public_bytes(k) for k in public_keys]
    bad = []
    for index, data, signature in items:
        for key in keys:
            try:
                key.verify(signature, data)
                break
            except InvalidSignature:
                continue
        else:
            bad.append(index)
    return bad


def _chunks(store: AuditStore, size: int) -> Iterator[list[StoredEntry]]:
    for start in range(0, size, CHUNK):
        yield store.read_entries(start, min(size, start + CHUNK))


def verify_log(
    store: AuditStore,
    keys: KeyStore | Sequence[Verifier],
    *,
    signatures: str = "all",
    workers: int = 1,
    trusted: str | None = None,
    sample_rate: float = 0.01,
) -> VerifyReport:
    """Verify the whole log; never raises for what it finds (see ``report.problems``).

    ``signatures``: "all" (every entry), "sample" (``sample_rate`` of them,
    at random, plus the last), or "none".
    """
    verifiers = keys.verifiers() if isinstance(keys, KeyStore) else list(keys)
    origin = keys.origin if isinstance(keys, KeyStore) else None
    public_keys = [parse_verifier_key(v.vkey)[2] for v in verifiers]
    report = VerifyReport(signature_mode=signatures)
    problems = report.problems
    size = store.size()
    report.size = size

    checkpoints = store.checkpoints()
    report.checkpoints = len(checkpoints)
    wanted_roots = {s for s, _ in checkpoints}
    trusted_cp: Checkpoint | None = None
    if trusted is not None:
        try:
            trusted_cp = open_checkpoint(trusted, verifiers)
            wanted_roots.add(trusted_cp.size)
        except GatekeeperError as exc:
            problems.append(Problem(None, f"the trusted checkpoint does not open: {exc}"))
    roots: dict[int, bytes] = {}
    if 0 in wanted_roots:
        roots[0] = merkle.EMPTY_ROOT

    frontier = _Frontier()
    bad_entries: set[int] = set()
    pool = ProcessPoolExecutor(max_workers=workers) if workers > 1 and signatures == "all" else None
    futures = []
    rng = random.Random(size)  # noqa: S311 - sampling, not security
    expected = 0
    try:
        for chunk in _chunks(store, size):
            to_check: list[tuple[int, bytes, bytes]] = []
            first = expected
            computed: list[bytes] = []
            for entry in chunk:
                while expected < entry.index:
                    problems.append(Problem(expected, "missing (gap in the entry numbers)"))
                    bad_entries.add(expected)
                    computed.extend(frontier.append(_stored_leaf(store, expected)))
                    expected += 1
                    if expected in wanted_roots:
                        roots[expected] = frontier.root()
                if entry.index != expected:
                    problems.append(Problem(entry.index, "out of order or duplicated"))
                    bad_entries.add(entry.index)
                    continue
                try:
                    if canonical(json.loads(entry.data)) != entry.data:
                        problems.append(Problem(entry.index, "not canonical JSON (RFC 8785)"))
                        bad_entries.add(entry.index)
                except (ValueError, GatekeeperError):
                    problems.append(Problem(entry.index, "not JSON"))
                    bad_entries.add(entry.index)
                added = frontier.append(merkle.leaf_hash(entry.data))
                computed.extend(added)
                if signatures == "all" or (
                    signatures == "sample"
                    and (rng.random() < sample_rate or entry.index == size - 1)
                ):
                    to_check.append((entry.index, entry.data, entry.signature))
                expected += 1
                if expected in wanted_roots:
                    roots[expected] = frontier.root()
            # Compare the stored hashes of this chunk with the recomputed ones.
            if expected > first:
                lo = merkle.stored_hash_index(0, first)
                hi = merkle.stored_hash_index(0, expected)
                try:
                    stored = store.read_hashes(list(range(lo, hi)))
                except GatekeeperError as exc:
                    problems.append(Problem(None, f"tree hashes unreadable: {exc}"))
                    stored = [b""] * (hi - lo)
                _compare_hashes(first, expected, computed, stored, problems, bad_entries)
            if to_check:
                report.signatures_checked += len(to_check)
                if pool is not None:
                    futures.append(pool.submit(_check_signatures, (to_check, public_keys)))
                else:
                    for index in _check_signatures((to_check, public_keys)):
                        problems.append(Problem(index, "signature does not verify"))
                        bad_entries.add(index)
        for future in futures:
            for index in future.result():
                problems.append(Problem(index, "signature does not verify"))
                bad_entries.add(index)
    finally:
        if pool is not None:
            pool.shutdown()
    while expected < size:
        problems.append(Problem(expected, "missing (the log head says it exists)"))
        bad_entries.add(expected)
        expected += 1
    report.root = frontier.root()
    report.valid_entries = size - len({i for i in bad_entries if i < size})
    _check_checkpoints(store, checkpoints, verifiers, origin, roots, size, problems)
    if trusted_cp is not None:
        got = roots.get(trusted_cp.size)
        if trusted_cp.size > size:
            problems.append(
                Problem(
                    None,
                    f"the log has {size} entries but a trusted checkpoint "
                    f"shows {trusted_cp.size}: the tail was truncated",
                )
            )
        elif got != trusted_cp.root:
            problems.append(
                Problem(
                    None,
                    f"the log at size {trusted_cp.size} does not match the "
                    "trusted checkpoint: history was rewritten",
                )
            )
    problems.sort(key=lambda p: -1 if p.index is None else p.index)
    return report


def _stored_leaf(store: AuditStore, index: int) -> bytes:
    """The stored leaf hash of a missing entry, so the rest of the tree still checks."""
    try:
        return store.read_hashes([merkle.stored_hash_index(0, index)])[0]
    except GatekeeperError:
        return hashlib.sha256(b"missing entry").digest()


def _compare_hashes(
    first: int,
    end: int,
    computed: list[bytes],
    stored: list[bytes],
    problems: list[Problem],
    bad_entries: set[int],
) -> None:
    if computed == stored:
        return
    # Find which entries the differing stored hashes belong to.
    position = 0
    for n in range(first, end):
        count = merkle.stored_hash_index(0, n + 1) - merkle.stored_hash_index(0, n)
        if computed[position : position + count] != stored[position : position + count]:
            if computed[position] and computed[position] != stored[position]:
                problems.append(
                    Problem(n, "entry does not match the tree (edited, replaced or moved)")
                )
            elif computed[position]:
                problems.append(Problem(n, "a stored tree hash above this entry was altered"))
            bad_entries.add(n)
        position += count


def _check_checkpoints(
    store: AuditStore,
    checkpoints: list[tuple[int, str]],
    verifiers: Sequence[Verifier],
    origin: str | None,
    roots: dict[int, bytes],
    size: int,
    problems: list[Problem],
) -> None:
    previous: Checkpoint | None = None
    for number, (stored_size, note) in enumerate(checkpoints):
        label = f"checkpoint #{number} (size {stored_size})"
        try:
            cp = open_checkpoint(note, verifiers)
        except GatekeeperError as exc:
            problems.append(Problem(None, f"{label}: signature or format invalid: {exc}"))
            continue
        if origin is not None and cp.origin != origin:
            problems.append(Problem(None, f"{label}: origin {cp.origin!r} is not this log's"))
        if cp.size != stored_size or cp.size > size:
            problems.append(Problem(None, f"{label}: size {cp.size} does not fit the log"))
            continue
        if roots.get(cp.size) != cp.root:
            problems.append(Problem(None, f"{label}: root does not match the entries"))
        if previous is not None:
            if cp.size < previous.size:
                problems.append(Problem(None, f"{label}: smaller than the checkpoint before it"))
            else:
                try:
                    proof = merkle.prove_tree(cp.size, previous.size, store.read_hashes)
                    merkle.check_tree(proof, cp.size, cp.root, previous.size, previous.root)
                except GatekeeperError as exc:
                    problems.append(
                        Problem(
                            None, f"{label}: not consistent with the previous checkpoint: {exc}"
                        )
                    )
        previous = cp
