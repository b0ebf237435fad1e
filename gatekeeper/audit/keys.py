"""The log's Ed25519 signing keys: created on first use, rotated, kept in a keyring.

    >>> import tempfile
    >>> from gatekeeper.audit.keys import KeyStore
    >>> ks = KeyStore(tempfile.mkdtemp(), origin="example.org/log")
    >>> signer = ks.active_signer()          # generated on first use, file mode 0600
    >>> ks.vkey().startswith("example.org/log+")
    True

Layout in the data directory::

    keys/keyring.json        public keys: vkey, key id, created, entries covered
    keys/<key id>.pem        PKCS#8 private key, mode 0600 (encrypted with a
                             passphrase when one is configured)

A private key never appears in a log line or an error message. A missing,
unreadable or corrupt active key is an :class:`AuditError`
(``audit_key_unavailable``): the decision that needed it is a deny.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gatekeeper._files import write_atomic
from gatekeeper.audit.entry import AuditError
from gatekeeper.audit.note import Signer, Verifier, key_id, verifier_key

__all__ = ["KeyRecord", "KeyStore"]


def _key_error(message: str) -> AuditError:
    return AuditError(message, reason="audit_key_unavailable")


def _write_private(path: Path, data: bytes) -> None:
    write_atomic(path, data, mode=0o600, dir_mode=0o700)


def _write_json(path: Path, value: Any) -> None:
    text = json.dumps(value, indent=2, sort_keys=True) + "\n"
    write_atomic(path, text.encode("utf-8"), dir_mode=0o700)


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One key of the keyring: ``first_index``..``last_index`` are the
    checkpoint sizes it signed (``last_index`` None for the active key)."""

    key_id: str
    vkey: str
    created: str
    first_size: int
    last_size: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "vkey": self.vkey,
            "created": self.created,
            "first_size": self.first_size,
            "last_size": self.last_size,
        }


class KeyStore:
    """The signing keys of one log (origin) in ``<data_dir>/keys``."""

    def __init__(
        self,
        data_dir: str | Path,
        *,
        origin: str,
        passphrase: bytes | None = None,
        key_path: str | Path | None = None,
    ) -> None:
        self.dir = Path(data_dir) / "keys"
        self.origin = origin
        self._passphrase = passphrase
        self._configured = Path(key_path) if key_path is not None else None
        self._signer: Signer | None = None
        #: (inode, mtime, size) of keyring.json when the active key was loaded.
        self._ring_stat: tuple[int, int, int] | None = None
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Threads and processes sharing this key directory take turns."""
        with self._lock:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            with open(self.dir / ".lock", "a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)

    # -- keyring -----------------------------------------------------------

    @property
    def _ring_path(self) -> Path:
        return self.dir / "keyring.json"

    def _stat_ring(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self._ring_path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def records(self) -> list[KeyRecord]:
        """Every key the log has used, oldest first."""
        if not self._ring_path.exists():
            return []
        try:
            raw = json.loads(self._ring_path.read_text(encoding="utf-8"))
            return [KeyRecord(**item) for item in raw["keys"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise _key_error(f"keyring {self._ring_path} is unreadable: {exc}") from exc

    def _save(self, records: list[KeyRecord]) -> None:
        _write_json(
            self._ring_path, {"origin": self.origin, "keys": [r.to_json() for r in records]}
        )
        # keyring.json is replaced (a new inode) on every save: others notice.
        self._ring_stat = self._stat_ring()

    def verifiers(self) -> list[Verifier]:
        """Verifiers for every key of the keyring (old keys included)."""
        return [Verifier(record.vkey) for record in self.records()]

    def vkey(self) -> str:
        """The active key's C2SP note verifier key."""
        return self.active_signer().vkey

    # -- private keys ----------------------------------------------------------

    def _encryption(self) -> serialization.KeySerializationEncryption:
        if self._passphrase:
            return serialization.BestAvailableEncryption(self._passphrase)
        return serialization.NoEncryption()

    def _load_private(self, path: Path) -> Ed25519PrivateKey:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise _key_error(f"signing key {path} is unreadable ({exc.strerror})") from exc
        try:
            key = serialization.load_pem_private_key(data, password=self._passphrase or None)
        except (ValueError, TypeError) as exc:
            # The message of the library may quote nothing secret, but say less anyway.
            raise _key_error(f"signing key {path} is corrupt or the passphrase is wrong") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise _key_error(f"signing key {path} is not an Ed25519 key")
        return key

    def _new_key(self, first_size: int) -> tuple[Ed25519PrivateKey, KeyRecord]:
        key = Ed25519PrivateKey.generate()
        public = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        kid = key_id(self.origin, public).hex()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, self._encryption()
        )
        _write_private(self.dir / f"{kid}.pem", pem)
        record = KeyRecord(
            key_id=kid,
            vkey=verifier_key(self.origin, public),
            created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            first_size=first_size,
            last_size=None,
        )
        return key, record

    def active_signer(self) -> Signer:
        """The active key; generated (and recorded) on first use."""
        signer = self._signer
        if signer is not None:
            return signer
        try:
            with self._exclusive():
                if self._signer is None:
                    self._ring_stat = self._stat_ring()
                    self._signer = self._load_active()
                return self._signer
        except OSError as exc:
            raise _key_error(f"key directory {self.dir} is unusable ({exc.strerror})") from exc

    def refresh(self) -> Signer:
        """The active key, reloaded when keyring.json changed since it was loaded
        (another AuditLog or process rotated the key). One ``stat`` when nothing
        changed; the writer calls it once per batch, under the store's lock."""
        signer = self._signer
        if signer is None or self._configured is not None:
            return self.active_signer()
        try:
            if self._stat_ring() == self._ring_stat:
                return signer
            with self._exclusive():
                stat = self._stat_ring()
                if stat != self._ring_stat:
                    self._signer, self._ring_stat = self._load_active(), stat
                current = self._signer
                assert current is not None
                return current
        except OSError as exc:
            raise _key_error(f"key directory {self.dir} is unusable ({exc.strerror})") from exc

    def prepare_rotation(self) -> tuple[Signer, Signer]:
        """(old, new): a new key is written but not yet active; ``commit_rotation``
        makes it active (the log does that in the rotation entry's transaction)."""
        old = self.refresh()
        try:
            with self._exclusive():
                key, _record = self._new_key(first_size=0)
        except OSError as exc:
            raise _key_error(f"key directory {self.dir} is unusable ({exc.strerror})") from exc
        return old, Signer(self.origin, key)

    def commit_rotation(self, old: Signer, new: Signer, first_size: int) -> None:
        """Retire ``old`` (it signed entries before ``first_size``) and make ``new``
        active from ``first_size`` on."""
        try:
            with self._exclusive():
                records = self.records()
                active = [r for r in records if r.last_size is None]
                if not active or active[-1].key_id != old.key_id.hex():
                    raise _key_error("the keyring's active key is not the one being rotated")
                records = [
                    dataclasses.replace(r, last_size=first_size) if r.last_size is None else r
                    for r in records
                ]
                records.append(
                    KeyRecord(
                        key_id=new.key_id.hex(),
                        vkey=new.vkey,
                        created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                        first_size=first_size,
                        last_size=None,
                    )
                )
                self._save(records)
                self._signer = new
        except OSError as exc:
            raise _key_error(f"key directory {self.dir} is unusable ({exc.strerror})") from exc

    def _load_active(self) -> Signer:
        if self._configured is not None:
            key = self._load_private(self._configured)
            signer = Signer(self.origin, key)
            records = self.records()
            if not any(r.key_id == signer.key_id.hex() for r in records):
                records.append(
                    KeyRecord(
                        signer.key_id.hex(),
                        signer.vkey,
                        datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                        0,
                        None,
                    )
                )
                self._save(records)
            return signer
        records = self.records()
        active = [r for r in records if r.last_size is None]
        if not active:
            if records:
                raise _key_error("keyring has no active key")
            key, record = self._new_key(first_size=0)
            self._save([record])
            return Signer(self.origin, key)
        key = self._load_private(self.dir / f"{active[-1].key_id}.pem")
        signer = Signer(self.origin, key)
        if signer.key_id.hex() != active[-1].key_id:
            raise _key_error("the active signing key does not match the keyring")
        return signer

    def rotate(self, current_size: int) -> tuple[Signer, Signer]:
        """Make a new active key; return (old, new) signers for the co-signed checkpoint."""
        old = self.active_signer()
        with self._exclusive():
            return self._rotate(old, current_size)

    def _rotate(self, old: Signer, current_size: int) -> tuple[Signer, Signer]:
        key, record = self._new_key(first_size=current_size)
        records = [
            KeyRecord(r.key_id, r.vkey, r.created, r.first_size, current_size)
            if r.last_size is None
            else r
            for r in self.records()
        ]
        records.append(record)
        self._save(records)
        self._signer = Signer(self.origin, key)
        return old, self._signer
