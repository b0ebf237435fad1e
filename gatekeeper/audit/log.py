"""The AuditLog: signed entries, group-committed, durable before anyone reads.

    >>> import tempfile
    >>> from gatekeeper.audit.log import AuditLog
    >>> log = AuditLog.open_sqlite(tempfile.mkdtemp(), origin="example.org/log")
    >>> receipt = log.append(b'{"hello":"world"}')
    >>> receipt.index, log.size()
    (0, 1)
    >>> log.close()

``append`` blocks until the entry, its tree hashes and a new signed
checkpoint are committed. Concurrent callers (threads) are batched by one
writer thread into a single transaction and a single checkpoint; processes
serialize on the store's lock. An append that cannot be made durable within
``timeout`` raises :class:`AuditError`; an entry is never acknowledged
before its transaction committed.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

from gatekeeper._logging import get_logger
from gatekeeper.audit import merkle
from gatekeeper.audit.entry import AuditError, canonical, timestamp
from gatekeeper.audit.keys import KeyStore
from gatekeeper.audit.note import Checkpoint, Signer, sign_checkpoint
from gatekeeper.audit.store import AuditStore, SqliteStore

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


class _Pending:
    __slots__ = ("data", "done", "error", "receipt", "signature", "taken")

    def __init__(self, data: bytes, signature: bytes) -> None:
        self.data = data
        self.signature = signature
        self.done = threading.Event()
        self.taken = False
        self.receipt: AuditReceipt | None = None
        self.error: BaseException | None = None


def default_origin(data_dir: Path) -> str:
    """A log origin unique to this data directory, kept in ``<data_dir>/origin``."""
    path = data_dir / "origin"
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    host = "".join(c for c in socket.gethostname().lower() if c.isalnum() or c in "-.") or "host"
    origin = f"gatekeeper.local/{host}/{os.urandom(4).hex()}"
    data_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(origin + "\n", encoding="utf-8")
    return origin


class AuditLog:
    """One tamper-evident log: a store, a key store, a writer thread."""

    def __init__(
        self,
        store: AuditStore,
        keys: KeyStore,
        *,
        timeout: float = 2.0,
    ) -> None:
        self.store = store
        self.keys = keys
        self.origin = keys.origin
        self.timeout = timeout
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._cosigners: list[Signer] = []
        self._closed = False
        self._writer = threading.Thread(target=self._run, name="gatekeeper-audit", daemon=True)
        self._writer.start()

    @classmethod
    def open_sqlite(
        cls,
        data_dir: str | Path,
        *,
        origin: str | None = None,
        passphrase: bytes | None = None,
        key_path: str | Path | None = None,
        timeout: float = 2.0,
    ) -> AuditLog:
        """The embedded default: ``<data_dir>/audit.sqlite`` and ``<data_dir>/keys``."""
        base = Path(data_dir)
        store = SqliteStore(base / "audit.sqlite", busy_timeout=timeout)
        keys = KeyStore(
            base, origin=origin or default_origin(base), passphrase=passphrase, key_path=key_path
        )
        return cls(store, keys, timeout=timeout)

    # -- writing -------------------------------------------------------------

    def _signers(self) -> list[Signer]:
        return [self.keys.active_signer(), *self._cosigners]

    def _sign_checkpoint(self, size: int, root: bytes) -> str:
        return sign_checkpoint(Checkpoint(self.origin, size, root), self._signers())

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            appended, _note = self.store.append_batch(
                [(p.data, p.signature) for p in batch], self._sign_checkpoint
            )
            self._cosigners = []
        except BaseException as exc:  # every waiter learns that nothing was committed
            error = (
                exc if isinstance(exc, AuditError) else AuditError(f"audit append failed: {exc}")
            )
            for p in batch:
                p.error = error
                p.done.set()
            return
        size = appended[-1].index + 1 if appended else 0
        for p, a in zip(batch, appended, strict=True):
            p.receipt = AuditReceipt(self.origin, a.index, a.leaf_hash, size)
            p.done.set()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                batch.append(item)
            live = []
            for p in batch:
                if not p.done.is_set():  # a waiter that gave up is not written
                    p.taken = True
                    live.append(p)
            if live:
                self._commit(live)

    def append(self, data: bytes) -> AuditReceipt:
        """Sign and durably append one entry; raise AuditError if that cannot be done."""
        if self._closed:
            raise AuditError("the audit log is closed")
        signature = self.keys.active_signer().sign(data)
        pending = _Pending(data, signature)
        self._queue.put(pending)
        if not pending.done.wait(self.timeout):
            if not pending.taken:
                pending.error = AuditError(
                    f"audit append not durable within {self.timeout}s", reason="audit_timeout"
                )
                pending.done.set()
            # Taken by the writer: its transaction is bounded by the store's own
            # lock timeout; wait for the outcome rather than guess it.
            pending.done.wait()
        if pending.error is not None:
            raise pending.error
        assert pending.receipt is not None
        return pending.receipt

    def append_value(self, value: dict[str, object]) -> AuditReceipt:
        """Append a JSON object (canonicalized) as an entry."""
        return self.append(canonical(value))

    def rotate_key(self) -> str:
        """Rotate the signing key: the next checkpoint is co-signed by the old
        and the new key, and a rotation entry records both. Returns the new vkey."""
        old, new = self.keys.rotate(self.store.size())
        self._cosigners = [old]
        self.append_value(
            {
                "schema": "gatekeeper.audit/v1",
                "kind": "key_rotation",
                "timestamp": timestamp(),
                "old_vkey": old.vkey,
                "new_vkey": new.vkey,
            }
        )
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
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._writer.join(timeout=10)
            self.store.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
