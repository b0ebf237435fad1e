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
import random
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gatekeeper.audit import merkle
from gatekeeper.audit.entry import parse_canonical
from gatekeeper.audit.keys import KeyStore
from gatekeeper.audit.note import (
    Checkpoint,
    Verifier,
    open_checkpoint,
    open_note,
    parse_verifier_key,
)
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


#: A key's entry range: first_size <= index < last_size (None: no end); None: any index.
_Range = tuple[int, int | None] | None


def _in_range(index: int, ranges: Sequence[_Range]) -> bool:
    return any(r is None or (r[0] <= index and (r[1] is None or index < r[1])) for r in ranges)


def _check_signatures(
    args: tuple[list[tuple[int, bytes, bytes]], list[tuple[bytes, list[_Range]]]],
) -> list[tuple[int, str]]:
    """(index, problem) for each entry not signed by the key active at its index
    (runs in a worker)."""
    items, key_ranges = args
    keys = [(Ed25519PublicKey.from_public_bytes(k), ranges) for k, ranges in key_ranges]
    bad = []
    for index, data, signature in items:
        active = [key for key, ranges in keys if _in_range(index, ranges)]
        others = [key for key, ranges in keys if not _in_range(index, ranges)]
        if _verifies_with(active, data, signature):
            continue
        if _verifies_with(others, data, signature):
            bad.append((index, "signed by a key not active at this index"))
        else:
            bad.append((index, "signature does not verify"))
    return bad


def _verifies_with(keys: Sequence[Ed25519PublicKey], data: bytes, signature: bytes) -> bool:
    for key in keys:
        try:
            key.verify(signature, data)
            return True
        except InvalidSignature:
            continue
    return False


@dataclass(frozen=True, slots=True)
class _TrustedKey:
    verifier: Verifier
    ranges: list[_Range]


def _trusted_keys(
    keys: KeyStore | Sequence[Verifier], vkeys: Sequence[str] | None
) -> list[_TrustedKey]:
    """The keys to trust and where: the keyring's ranges for its keys; with
    pinned ``vkeys``, only those keys (ranges from the keyring if it has them)."""
    records = keys.records() if isinstance(keys, KeyStore) else []
    by_vkey: dict[str, list[_Range]] = {}
    for record in records:
        by_vkey.setdefault(record.vkey, []).append((record.first_size, record.last_size))
    if vkeys is not None:
        chosen = [Verifier(v) for v in vkeys]
    elif isinstance(keys, KeyStore):
        chosen = [Verifier(r.vkey) for r in records]
    else:
        chosen = list(keys)
    out: list[_TrustedKey] = []
    seen: set[str] = set()
    for verifier in chosen:
        if verifier.vkey in seen:
            continue
        seen.add(verifier.vkey)
        out.append(_TrustedKey(verifier, by_vkey.get(verifier.vkey) or [None]))
    return out


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
    vkeys: Sequence[str] | None = None,
) -> VerifyReport:
    """Verify the whole log; never raises for what it finds (see ``report.problems``).

    ``signatures``: "all" (every entry), "sample" (``sample_rate`` of them,
    at random, plus the last), or "none". ``vkeys``: pinned verifier keys,
    trusted instead of the keyring (which lives beside the data).

    Each entry must be signed by the key whose keyring range covers its index,
    each checkpoint by the key active at its size (the previous key may
    co-sign); the head must be covered by a checkpoint. A log that grows
    meanwhile is verified as of the moment its size was read.
    """
    trusted_keys = _trusted_keys(keys, vkeys)
    verifiers = [t.verifier for t in trusted_keys]
    origin = keys.origin if isinstance(keys, KeyStore) else None
    key_ranges = [(parse_verifier_key(t.verifier.vkey)[2], t.ranges) for t in trusted_keys]
    report = VerifyReport(signature_mode=signatures)
    problems = report.problems
    # Checkpoints first, then the size: a commit in between only adds entries
    # (its checkpoint is looked for afterwards), never a checkpoint past the size.
    checkpoints = store.checkpoints()
    size = store.size()
    report.size = size
    report.checkpoints = len(checkpoints)
    wanted_roots = {s for s, _ in checkpoints} | {size}
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

    frontier = merkle.Frontier()
    bad_entries: set[int] = set()
    pool = ProcessPoolExecutor(max_workers=workers) if workers > 1 and signatures == "all" else None
    futures = []
    rng = random.Random(size)  # noqa: S311 - sampling, not security
    expected = 0
    decision_ids: dict[str, int] = {}
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
                    value, is_canonical = parse_canonical(entry.data)
                    if not is_canonical:
                        problems.append(Problem(entry.index, "not canonical JSON (RFC 8785)"))
                        bad_entries.add(entry.index)
                    did = value.get("decision_id") if isinstance(value, dict) else None
                    if isinstance(did, str):
                        earlier = decision_ids.setdefault(did, entry.index)
                        if earlier != entry.index:
                            problems.append(
                                Problem(
                                    entry.index,
                                    f"duplicate decision_id {did!r} (also at entry {earlier})",
                                )
                            )
                            bad_entries.add(entry.index)
                    kind = value.get("kind") if isinstance(value, dict) else None
                    follows = _FOLLOWS.get(kind) if isinstance(kind, str) else None
                    if follows is not None:
                        named = value.get(follows)
                        named_id = named.get("decision_id") if isinstance(named, dict) else None
                        if not isinstance(named_id, str) or named_id not in decision_ids:
                            problems.append(
                                Problem(entry.index, f"{value['kind']} names no earlier decision")
                            )
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
                _compare_hashes(
                    first, expected, computed, stored, problems, bad_entries, store.read_hashes
                )
            if to_check:
                report.signatures_checked += len(to_check)
                if pool is not None:
                    futures.append(pool.submit(_check_signatures, (to_check, key_ranges)))
                    # Bounded: at most two chunks per worker wait, so a main loop
                    # faster than the workers does not pile chunks up in memory.
                    while len(futures) > 2 * workers:
                        for index, message in futures.pop(0).result():
                            problems.append(Problem(index, message))
                            bad_entries.add(index)
                else:
                    for index, message in _check_signatures((to_check, key_ranges)):
                        problems.append(Problem(index, message))
                        bad_entries.add(index)
        for future in futures:
            for index, message in future.result():
                problems.append(Problem(index, message))
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
    _check_checkpoints(store, checkpoints, trusted_keys, origin, roots, size, problems)
    _check_head_covered(store, checkpoints, trusted_keys, roots, size, problems)
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
    unsigned = sum("no verifiable signatures" in p.message for p in problems if p.index is None)
    if vkeys is not None and checkpoints and unsigned >= len(checkpoints):
        # One line that says what the many below have in common.
        problems.insert(
            0,
            Problem(
                None,
                f"none of the {len(checkpoints)} checkpoints is signed by the given "
                "verifier key(s): a key of another log, or not this log's key? "
                "(this log's own key: `gatekeeper audit vkey`)",
            ),
        )
    return report


def _stored_leaf(store: AuditStore, index: int) -> bytes:
    """The stored leaf hash of a missing entry, so the rest of the tree still checks."""
    try:
        return store.read_hashes([merkle.stored_hash_index(0, index)])[0]
    except GatekeeperError:
        return hashlib.sha256(b"missing entry").digest()


#: Entries that follow a decision, and the key under which they name it.
_FOLLOWS = {"obligation_ack": "obligation", "release": "release"}


def _compare_hashes(
    first: int,
    end: int,
    computed: list[bytes],
    stored: list[bytes],
    problems: list[Problem],
    bad_entries: set[int],
    read_hashes: Callable[[list[int]], Sequence[bytes]],
) -> None:
    """Name the entries whose stored hashes differ from the recomputed ones.

    Entry ``n`` stores its leaf hash and then the nodes it completes (level
    ``k``, index ``n >> k``). A leaf that differs is that entry's problem. A
    node that differs only because a leaf below it differs (the node agrees
    with its own stored children) is not: that entry was already named, and
    the entry that completed the node is intact. A node that disagrees with
    its stored children was itself altered, and is named at the entry that
    completed it."""
    if computed == stored:
        return
    position = 0
    for n in range(first, end):
        count = merkle.stored_hash_index(0, n + 1) - merkle.stored_hash_index(0, n)
        if computed[position : position + count] != stored[position : position + count]:
            if computed[position] and computed[position] != stored[position]:
                problems.append(
                    Problem(n, "entry does not match the tree (edited, replaced or moved)")
                )
                bad_entries.add(n)
            elif computed[position] and (
                altered := [
                    k
                    for k in range(1, count)
                    if computed[position + k] != stored[position + k]
                    and not _node_agrees_with_children(k, n >> k, stored[position + k], read_hashes)
                ]
            ):
                # The stored node disagrees with its stored children, which
                # agree with the entries: the node was altered, or an entry
                # below was rewritten together with its stored leaf hash (its
                # signature and the checkpoint roots then say which).
                low = (n >> altered[0]) << altered[0]
                problems.append(
                    Problem(
                        n,
                        f"the stored tree hash over entries {low}-{n} does not match them: "
                        "it was altered, or one of those entries was rewritten with its "
                        "leaf hash",
                    )
                )
                bad_entries.add(n)
            elif not computed[position]:
                bad_entries.add(n)
        position += count


def _node_agrees_with_children(
    level: int,
    index: int,
    value: bytes,
    read_hashes: Callable[[list[int]], Sequence[bytes]],
) -> bool:
    """Whether a stored node hash is the hash of its two stored children."""
    try:
        left, right = read_hashes(
            [
                merkle.stored_hash_index(level - 1, 2 * index),
                merkle.stored_hash_index(level - 1, 2 * index + 1),
            ]
        )
    except GatekeeperError:
        return False
    return merkle.node_hash(left, right) == value


def _cp_active(size: int, r: _Range) -> bool:
    """Whether a key with entry range ``r`` is the one to sign a checkpoint of ``size``
    (the key of its last entry, ``size - 1``)."""
    if r is None:
        return True
    first, last = r
    if size == 0:
        return first == 0
    return first < size and (last is None or size <= last)


def _open_with_ranges(
    note: str, trusted_keys: Sequence[_TrustedKey], label: str
) -> tuple[Checkpoint, list[str]]:
    """Open a checkpoint note; also the problems with which keys signed it."""
    opened = open_note(note, [t.verifier for t in trusted_keys])
    cp = Checkpoint.parse(opened.text)
    if not any(sig.name == cp.origin for sig in opened.sigs):
        raise GatekeeperError(
            f"checkpoint of {cp.origin!r} has no verified signature by a key of that name"
        )
    by_id = {(t.verifier.name, t.verifier.key_id): t for t in trusted_keys}
    signers = [by_id[(sig.name, sig.key_id)] for sig in opened.sigs]
    active = [t for t in signers if any(_cp_active(cp.size, r) for r in t.ranges)]
    if not active:
        return cp, [f"{label}: signed only by keys not active at size {cp.size}"]
    # The key before an active one may co-sign (the first checkpoint after a rotation).
    starts = {r[0] for t in active for r in t.ranges if r is not None}
    found = []
    for t in signers:
        if t in active:
            continue
        if not any(r is not None and r[1] in starts for r in t.ranges):
            found.append(
                f"{label}: signed by key {t.verifier.name}+"
                f"{t.verifier.key_id.hex()}, not active at size {cp.size}"
            )
    return cp, found


def _check_head_covered(
    store: AuditStore,
    checkpoints: list[tuple[int, str]],
    trusted_keys: Sequence[_TrustedKey],
    roots: dict[int, bytes],
    size: int,
    problems: list[Problem],
) -> None:
    """The entries up to the head must be covered by a signed checkpoint."""
    latest = checkpoints[-1][0] if checkpoints else 0
    if latest >= size:  # equal: fine; larger: flagged by _check_checkpoints
        return
    # A commit between reading the checkpoints and the size wrote its
    # checkpoint (of exactly that size) in the same transaction: look for it.
    try:
        later = store.checkpoints()[len(checkpoints) :]
    except GatekeeperError:
        later = []
    for stored_size, note in later:
        if stored_size != size:
            continue
        try:
            cp, issues = _open_with_ranges(note, trusted_keys, "")
        except GatekeeperError:
            continue
        if not issues and cp.size == size and roots.get(size) == cp.root:
            return
    problems.append(
        Problem(
            None,
            f"{size - latest} entries after the latest checkpoint (size {latest}) are not "
            "covered by a signed checkpoint",
        )
    )


def _check_checkpoints(
    store: AuditStore,
    checkpoints: list[tuple[int, str]],
    trusted_keys: Sequence[_TrustedKey],
    origin: str | None,
    roots: dict[int, bytes],
    size: int,
    problems: list[Problem],
) -> None:
    previous: Checkpoint | None = None
    previous_matched = False
    for number, (stored_size, note) in enumerate(checkpoints):
        label = f"checkpoint #{number} (size {stored_size})"
        try:
            cp, key_problems = _open_with_ranges(note, trusted_keys, label)
        except GatekeeperError as exc:
            problems.append(Problem(None, f"{label}: signature or format invalid: {exc}"))
            continue
        problems.extend(Problem(None, message) for message in key_problems)
        if origin is not None and cp.origin != origin:
            problems.append(Problem(None, f"{label}: origin {cp.origin!r} is not this log's"))
        if cp.size != stored_size or cp.size > size:
            problems.append(Problem(None, f"{label}: size {cp.size} does not fit the log"))
            continue
        matched = roots.get(cp.size) == cp.root
        if not matched:
            problems.append(Problem(None, f"{label}: root does not match the entries"))
        if previous is not None:
            if cp.size < previous.size:
                problems.append(Problem(None, f"{label}: smaller than the checkpoint before it"))
            elif not (matched and previous_matched):
                # Two roots recomputed from the same leaves are consistent by
                # construction; a proof from the stored hashes is needed (and
                # read) only when one of them did not match.
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
        previous_matched = matched
