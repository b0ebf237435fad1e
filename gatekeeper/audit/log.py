"""The AuditLog: signed entries, group-committed, durable before anyone reads.

    >>> import tempfile
    >>> from gatekeeper.audit.log import AuditLog
    >>> log = AuditLog.open_sqlite(tempfile.mkdtemp(), origin="example.org/log")
    >>> receipt = log.append(b'{"hello":"world"}')
    >>> receipt.index, log.size()
    (0, 1)
    >>> log.close()

``append`` blocks until the entry, its tree hashes and a new signed
checkpoint are committed. Concurrent callers (threads) are group-committed
into a single transaction and a single checkpoint: the caller that finds no
commit running leads, taking every queued entry (its own included) into one
batch, while the others wait for it and then find their entries committed or
lead the next batch (leader/follower, as in database group commit; no hand-off
to a writer thread on the path of a lone caller). Processes serialize on the
store's lock. An append that cannot be made durable within
``timeout`` raises :class:`AuditError`; an entry is never acknowledged
before its transaction committed.

``append(data, obligations=[...])`` writes the entry's obligations to the
outbox in the same transaction (a batch stays one transaction); if that
write fails, the whole append fails. An ``obligation_ack`` entry
(:meth:`AuditLog.append_ack`) is committed alone, with its row update.
"""

from __future__ import annotations

import collections
import os
import socket
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from gatekeeper._clock import latest_entry_time
from gatekeeper._logging import get_logger
from gatekeeper.audit import merkle
from gatekeeper.audit.entry import AuditError, canonical, timestamp
from gatekeeper.audit.keys import KeyStore
from gatekeeper.audit.note import Checkpoint, EntrySigner, sign_checkpoint
from gatekeeper.audit.outbox import NewObligation, ObligationAck, OutboxOp
from gatekeeper.audit.store import AppendedEntry, AuditStore, OutboxStore, SqliteStore
from gatekeeper.errors import GatekeeperError

__all__ = ["AuditLog", "AuditReceipt", "default_origin"]

_log = get_logger("gatekeeper.audit")

#: At most this many entries go into one transaction.
MAX_BATCH = 512


@dataclass(frozen=True, slots=True)
class AuditReceipt:
    """Where an entry sits: the Decision's ``audit`` field."""

    origin: str
    index: int
    leaf_hash: bytes
    tree_size: int

    def to_dict(self) -> dict[str, object]:
        return {"origin": self.origin, "index": self.index, "leaf_hash": self.leaf_hash.hex()}


_QUEUED, _TAKEN, _ABANDONED = "queued", "taken", "abandoned"


class _Pending:
    """One entry on its way into the log.

    ``state`` moves once, under the log's ``_turn`` lock: queued -> taken (by
    the leading caller, which then commits it) or queued -> abandoned (by a
    caller that gave up; no leader writes it). ``wake`` is set when the entry
    is done, or when its caller is handed the lead (the log's ``_owner``).
    """

    __slots__ = (
        "data",
        "done",
        "error",
        "outbox",
        "receipt",
        "rotation",
        "signature",
        "signer_id",
        "state",
        "wake",
    )

    def __init__(
        self,
        data: bytes,
        signature: bytes,
        signer_id: bytes,
        rotation: tuple[EntrySigner, EntrySigner] | None = None,
        outbox: OutboxOp = None,
    ) -> None:
        self.data = data
        self.signature = signature
        self.signer_id = signer_id
        #: (old, new) for the key_rotation entry: its checkpoint is co-signed by both.
        self.rotation = rotation
        #: The entry's obligation rows, or the acknowledgment it records.
        self.outbox = outbox
        self.done = threading.Event()
        self.wake = threading.Event()
        self.state = _QUEUED
        self.receipt: AuditReceipt | None = None
        self.error: BaseException | None = None


class _KeyChanged(Exception):
    """The active key changed while a batch was being committed: re-sign, retry."""


def default_origin(data_dir: Path) -> str:
    """A log origin unique to this data directory, kept in ``<data_dir>/origin``.

    Created atomically: a complete temp file is hard-linked into place (which
    fails if another process won), then the file is read back, so every
    process of one data directory gets the same origin.
    """
    path = data_dir / "origin"
    if not path.exists():
        host = "".join(c for c in socket.gethostname().lower() if c.isalnum() or c in "-.")
        origin = f"gatekeeper.local/{host or 'host'}/{os.urandom(4).hex()}"
        data_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=data_dir, prefix=".origin-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(origin + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another process won: use its origin
        finally:
            Path(tmp).unlink(missing_ok=True)
    # An origin file written by an older version may be seen half-written: retry briefly.
    deadline = time.monotonic() + 1.0
    while True:
        try:
            found = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise AuditError(f"the log origin file {path} is unreadable: {exc}") from exc
        if found:
            return found
        if time.monotonic() > deadline:
            raise AuditError(f"the log origin file {path} is empty")
        time.sleep(0.01)


class AuditLog:
    """One tamper-evident log: a store, a key store, group commit."""

    def __init__(
        self,
        store: AuditStore,
        keys: KeyStore,
        *,
        timeout: float = 2.0,
    ) -> None:
        self.store = store
        self.keys = keys
        if keys.log_size is None:  # no first key is generated for a log with entries
            keys.log_size = store.size
        self.origin = keys.origin
        self.timeout = timeout
        #: Entries waiting for a leader; ``_turn`` guards it, ``_owner`` (who
        #: holds the lead: a _Pending's caller, the closing log, or None) and
        #: every ``_Pending.state``.
        self._queue: collections.deque[_Pending] = collections.deque()
        self._turn = threading.Lock()
        self._owner: object | None = None
        self._closed = False
        #: The latest trustworthy entry time in the log (epoch seconds), for the
        #: clock check (``time_floor``); ``_floor_size``: the log size it covers.
        self._time_floor = 0.0
        self._floor_size: int | None = None
        self._floor_retry = 0.0

    @property
    def outcome_wait(self) -> float:
        """How long a caller whose entry a leader took waits past ``timeout``:
        the store's lock timeout three times over (lock, statements, COMMIT), and 5 s."""
        lock = getattr(self.store, "lock_timeout", None)
        if not isinstance(lock, int | float):
            lock = getattr(self.store, "busy_timeout", None)
        if not isinstance(lock, int | float):
            lock = self.timeout
        return float(lock) * 3 + 5.0

    @classmethod
    def open_sqlite(
        cls,
        data_dir: str | Path,
        *,
        origin: str | None = None,
        passphrase: bytes | None = None,
        key_path: str | Path | None = None,
        signer: EntrySigner | None = None,
        timeout: float = 2.0,
    ) -> AuditLog:
        """The embedded default: ``<data_dir>/audit.sqlite`` and ``<data_dir>/keys``.

        ``signer``: an external signer (e.g. a
        :class:`~gatekeeper.audit.command_signer.CommandSigner`) instead of a key file.
        """
        base = Path(data_dir)
        store = SqliteStore(base / "audit.sqlite", busy_timeout=timeout)
        keys = KeyStore(
            base,
            origin=origin or default_origin(base),
            passphrase=passphrase,
            key_path=key_path,
            signer=signer,
        )
        return cls(store, keys, timeout=timeout)

    # -- writing -------------------------------------------------------------

    @staticmethod
    def _segments(batch: list[_Pending]) -> list[list[_Pending]]:
        """The batch in order, a rotation or acknowledgment entry alone in its own
        transaction (an acknowledgment that conflicts fails only itself)."""
        out: list[list[_Pending]] = []
        current: list[_Pending] = []
        for p in batch:
            if p.rotation is not None or isinstance(p.outbox, ObligationAck):
                if current:
                    out.append(current)
                    current = []
                out.append([p])
            else:
                current.append(p)
        if current:
            out.append(current)
        return out

    def _append_once(self, batch: list[_Pending]) -> list[AppendedEntry]:
        rotation = batch[0].rotation
        if rotation is None:
            signer = self.keys.refresh()
            for p in batch:  # signed before a rotation this process has just learnt of
                if p.signer_id != signer.key_id:
                    p.signature = signer.sign(p.data)
                    p.signer_id = signer.key_id

            def sign(size: int, root: bytes) -> str:
                # Under the store's lock: no rotation can slip in before COMMIT.
                if self.keys.refresh().key_id != signer.key_id:
                    raise _KeyChanged
                return sign_checkpoint(Checkpoint(self.origin, size, root), [signer])
        else:
            old, new = rotation

            def sign(size: int, root: bytes) -> str:
                if self.keys.refresh().key_id != old.key_id:
                    raise AuditError("the signing key was rotated meanwhile by someone else")
                # The rotation entry is the batch's only one, at index size - 1.
                self.keys.commit_rotation(old, new, size - 1)
                return sign_checkpoint(Checkpoint(self.origin, size, root), [new, old])

        pairs = [(p.data, p.signature) for p in batch]
        if all(not p.outbox for p in batch):
            appended, _note = self.store.append_batch(pairs, sign)
        else:
            outbox = [p.outbox for p in batch]
            appended, _note = self._outbox_store().append_batch(pairs, sign, outbox=outbox)
        return appended

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            for attempt in range(4):
                try:
                    appended = self._append_once(batch)
                    break
                except _KeyChanged:
                    if attempt == 3:
                        raise AuditError(
                            "audit append failed: the signing key keeps changing"
                        ) from None
        except BaseException as exc:  # every waiter learns that nothing was committed
            error = (
                exc if isinstance(exc, AuditError) else AuditError(f"audit append failed: {exc}")
            )
            for p in batch:
                p.error = error
                p.done.set()
                p.wake.set()
            if not isinstance(exc, Exception):
                raise  # KeyboardInterrupt, SystemExit: the waiters are settled, go on
            return
        size = appended[-1].index + 1 if appended else 0
        if appended:
            self._follow_floor(appended[0].index, size)
        for p, a in zip(batch, appended, strict=True):
            p.receipt = AuditReceipt(self.origin, a.index, a.leaf_hash, size)
            p.done.set()
            p.wake.set()

    # -- the time floor (clock check) ------------------------------------------

    def time_floor(self) -> float:
        """The latest trustworthy entry time of the log (epoch seconds, 0.0 if none).

        Read from the log's tail on first use (so it holds across restarts),
        then followed by each commit: when a batch lands after entries that
        other processes appended, their times are read (so a process learns
        of them at its next append). Entries denied for a clock fault do not
        count. A failed read is retried at most once a second.
        """
        if self._floor_size is None and time.monotonic() >= self._floor_retry:
            try:
                size = self.store.size()
                floor = latest_entry_time(self.store.read_entries, 0, size)
            except GatekeeperError:
                self._floor_retry = time.monotonic() + 1.0
                return self._time_floor
            self._time_floor = max(self._time_floor, floor)
            if self._floor_size is None:
                self._floor_size = size
        return self._time_floor

    def _follow_floor(self, first: int, size: int) -> None:
        known = self._floor_size
        if known is None:
            return
        if first > known:  # others appended meanwhile: read their times
            try:
                floor = latest_entry_time(self.store.read_entries, known, first, limit=256)
            except GatekeeperError:
                floor = 0.0
            self._time_floor = max(self._time_floor, floor)
        self._floor_size = size

    def _take_locked(self) -> list[_Pending]:
        """Up to ``MAX_BATCH`` queued entries, now taken (``_turn`` held); those
        whose callers gave up are dropped, never written."""
        batch: list[_Pending] = []
        while self._queue and len(batch) < MAX_BATCH:
            p = self._queue.popleft()
            if p.state == _QUEUED:
                p.state = _TAKEN
                batch.append(p)
        return batch

    def _commit_batch(self, batch: list[_Pending]) -> None:
        try:
            for segment in self._segments(batch):
                self._commit(segment)
        except BaseException as exc:  # _commit settles its own; never leave one hanging
            for p in batch:
                if not p.done.is_set():
                    p.error = exc if isinstance(exc, AuditError) else AuditError(str(exc))
                    p.done.set()
                    p.wake.set()
            raise

    def _pass_lead_locked(self) -> None:
        """Hand the lead to the caller of the first entry still queued, or free
        it (``_turn`` held). Entries given up on are dropped on the way."""
        while self._queue and self._queue[0].state != _QUEUED:
            self._queue.popleft()  # abandoned: never written
        if self._queue:
            successor = self._queue[0]
            self._owner = successor
            successor.wake.set()
        else:
            self._owner = None

    def _lead(self, own: _Pending) -> None:
        """Commit batches until ``own`` is done, then pass the lead on."""
        try:
            while not own.done.is_set():
                with self._turn:
                    batch = self._take_locked()
                if not batch:  # cannot happen: own is queued until a leader takes it
                    break
                self._commit_batch(batch)
        finally:
            with self._turn:
                if self._owner is own:
                    self._pass_lead_locked()

    def _append(self, pending: _Pending) -> AuditReceipt:
        """Group commit, leader/follower: a caller that finds no commit running
        leads (takes every queued entry, its own included, into one batch) and,
        once its own entry is durable, hands the lead to the caller of the first
        entry still queued, which takes everything queued by then. The others
        sleep until their entry is done. No thread hand-off on the way of a
        lone caller; one wake-up per waiting caller."""
        deadline = time.monotonic() + self.timeout
        with self._turn:
            if self._closed:
                raise AuditError("the audit log is closed")
            self._queue.append(pending)
            if self._owner is None:
                self._owner = pending
            lead = self._owner is pending
        try:
            while not pending.done.is_set():
                if lead:
                    self._lead(pending)
                    break
                left = deadline - time.monotonic()
                if left > 0 and pending.wake.wait(left):
                    with self._turn:
                        if self._owner is pending:  # handed the lead
                            pending.wake.clear()
                            lead = True
                    continue
                with self._turn:
                    if self._owner is pending:  # handed the lead just now: take it
                        pending.wake.clear()
                        lead = True
                        continue
                    if pending.state == _QUEUED:
                        pending.state = _ABANDONED  # never written by any leader
                        raise AuditError(
                            f"audit append not durable within {self.timeout}s",
                            reason="audit_timeout",
                        )
                break  # taken by the running commit: wait for its outcome below
        except BaseException:
            # KeyboardInterrupt, SystemExit from a signal handler, ...: this
            # entry is not written, and a lead this caller holds goes on.
            with self._turn:
                if pending.state == _QUEUED:
                    pending.state = _ABANDONED
                if self._owner is pending:
                    self._pass_lead_locked()
            raise
        # Taken by a leader: its transaction is bounded by the store's own lock
        # timeout; wait for the outcome that long, not forever.
        if not pending.done.wait(self.outcome_wait):
            raise AuditError("audit append outcome unknown", reason="audit_timeout")
        if pending.error is not None:
            raise pending.error
        assert pending.receipt is not None
        return pending.receipt

    def _outbox_store(self) -> OutboxStore:
        if not getattr(self.store, "supports_outbox", False):
            raise AuditError(
                f"the audit store {type(self.store).__name__} keeps no obligations outbox",
                reason="obligation_outbox_unavailable",
            )
        return cast(OutboxStore, self.store)

    @property
    def outbox(self) -> OutboxStore:
        """The store's obligations outbox (AuditError when the store keeps none)."""
        return self._outbox_store()

    def append(self, data: bytes, *, obligations: Sequence[NewObligation] = ()) -> AuditReceipt:
        """Sign and durably append one entry; raise AuditError if that cannot be done.

        ``obligations`` are inserted into the outbox in the entry's transaction:
        both are committed, or neither.
        """
        if self._closed:
            raise AuditError("the audit log is closed")
        if obligations:
            self._outbox_store()  # fail before signing when there is no outbox
        signer = self.keys.active_signer()
        rows = tuple(obligations) or None
        return self._append(_Pending(data, signer.sign(data), signer.key_id, outbox=rows))

    def append_ack(self, data: bytes, ack: ObligationAck) -> AuditReceipt:
        """Append an ``obligation_ack`` entry and mark its row acknowledged, in one
        transaction; AuditError (reason ``obligation_conflict``) when the row is
        unknown or already acknowledged, and then nothing is written."""
        if self._closed:
            raise AuditError("the audit log is closed")
        self._outbox_store()
        signer = self.keys.active_signer()
        return self._append(_Pending(data, signer.sign(data), signer.key_id, outbox=ack))

    def append_value(self, value: dict[str, object]) -> AuditReceipt:
        """Append a JSON object (canonicalized) as an entry."""
        return self.append(canonical(value))

    def rotate_key(self, new: EntrySigner | None = None) -> str:
        """Rotate the signing key: a rotation entry records both verifier keys, and
        its checkpoint is co-signed by the old and the new key. Returns the new vkey.

        ``new``: the new key (a key file loaded with
        :func:`~gatekeeper.audit.keys.load_key_file`, an external signer); needed
        when the active key is a configured ``key_path`` or an external signer.
        Without it a new key is generated in ``<data_dir>/keys``.

        The keyring changes inside the rotation entry's transaction (under the
        store's lock), so every entry before it is signed by the old key and
        every entry from it on by the new one, in every process.
        """
        if self._closed:
            raise AuditError("the audit log is closed")
        old, new = self.keys.prepare_rotation(new)
        data = canonical(
            {
                "schema": "gatekeeper.audit/v1",
                "kind": "key_rotation",
                "timestamp": timestamp(),
                "old_vkey": old.vkey,
                "new_vkey": new.vkey,
            }
        )
        self._append(_Pending(data, new.sign(data), new.key_id, rotation=(old, new)))
        return new.vkey

    # -- reading -------------------------------------------------------------

    def size(self) -> int:
        return self.store.size()

    def latest_checkpoint(self) -> str | None:
        return self.store.latest_checkpoint()

    def root(self, size: int | None = None) -> bytes:
        n = self.store.size() if size is None else size
        return merkle.tree_hash(n, self.store.read_hashes)

    def prove_inclusion(self, index: int, size: int | None = None) -> list[bytes]:
        n = self.store.size() if size is None else size
        return merkle.prove_record(n, index, self.store.read_hashes)

    def prove_consistency(self, old_size: int, size: int | None = None) -> list[bytes]:
        n = self.store.size() if size is None else size
        return merkle.prove_tree(n, old_size, self.store.read_hashes)

    def close(self) -> None:
        """Commit what callers have queued, wait (at most 10 s) for a running
        commit, then close the store and the keys."""
        with self._turn:
            if self._closed:
                return
            self._closed = True
        until = time.monotonic() + 10
        taken = False
        while not taken and time.monotonic() < until:
            with self._turn:
                if self._owner is None:
                    self._owner = self
                    taken = True
            if not taken:
                time.sleep(0.005)
        try:
            if taken:
                while True:
                    with self._turn:
                        batch = self._take_locked()
                    if not batch:
                        break
                    self._commit_batch(batch)
        finally:
            with self._turn:
                if self._owner is self:
                    self._owner = None
            self.store.close()
            self.keys.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
