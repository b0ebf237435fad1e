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

A key is generated only for a brand-new log: no keyring, no key file in
``keys/``, no configured ``key_path`` and no entry in the log. Otherwise an
unreadable key is an error, never a reason to make a new one (that would be
a silent key swap). The one exception is the state a first start killed
between writing its key file and the keyring leaves: one key file of this
log's origin, no keyring, no entry. That key signed nothing and was never
given out; it is adopted (recorded in a new keyring), not replaced.

A configured key (``key_path``) or an external signer (``signer``, e.g. a
:class:`~gatekeeper.audit.command_signer.CommandSigner`) is used only while
it is the keyring's active key: a retired or unknown key is an
``audit_key_unavailable`` error at open (and as soon as a running process sees
that another one rotated), never a reason to sign. Its first use on a data
directory with no keyring records it from index 0. gatekeeper never writes a
private key in these modes: a rotation needs the new key given
(``prepare_rotation(new)``; ``gatekeeper audit rotate-key --new-key-path`` or
``--new-signer-command``), and without one it is refused.

A failed load is retried at most once a second (``RETRY_INTERVAL``): once
the file is repaired, the next decision after that signs again, with no
restart. Once loaded, the key stays in memory: a
key file damaged on disk meanwhile does not stop the running log, but a
rotation (which re-reads the active key from disk first) or a reload after
another process rotated fails closed until it is repaired.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gatekeeper._files import write_atomic
from gatekeeper.audit.entry import AuditError
from gatekeeper.audit.note import EntrySigner, Signer, Verifier, key_id, verifier_key
from gatekeeper.errors import GatekeeperError

__all__ = ["RETRY_INTERVAL", "KeyRecord", "KeyStore", "load_key_file"]

#: A failed key load is retried at most this often (seconds).
RETRY_INTERVAL = 1.0


def _key_error(message: str) -> AuditError:
    return AuditError(message, reason="audit_key_unavailable")


def _read_private(path: Path, passphrase: bytes | None) -> Ed25519PrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _key_error(f"signing key {path} is unreadable ({exc.strerror})") from exc
    try:
        key = serialization.load_pem_private_key(data, password=passphrase or None)
    except (ValueError, TypeError) as exc:
        # The message of the library may quote nothing secret, but say less anyway.
        raise _key_error(f"signing key {path} is corrupt or the passphrase is wrong") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise _key_error(f"signing key {path} is not an Ed25519 key")
    return key


def load_key_file(path: str | Path, *, origin: str, passphrase: bytes | None = None) -> Signer:
    """An in-memory signer of the PEM key at ``path`` (AuditError when unusable)."""
    return Signer(origin, _read_private(Path(path), passphrase))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
        signer: EntrySigner | None = None,
        log_size: Callable[[], int] | None = None,
    ) -> None:
        if key_path is not None and signer is not None:
            raise GatekeeperError("key_path and signer_command exclude each other", reason="config")
        self.dir = Path(data_dir) / "keys"
        #: The log's size; a first key is generated only while it is 0
        #: (:class:`~gatekeeper.audit.log.AuditLog` sets it to its store's).
        self.log_size = log_size
        #: (retry after, monotonic; the error; its reason) of the last failed load.
        self._failed: tuple[float, str, str] | None = None
        self.origin = origin
        self._passphrase = passphrase
        self._configured = Path(key_path) if key_path is not None else None
        #: An external signer (or a key given to a rotation): used, never written.
        self._external = signer
        #: Signers given from outside, closed with the key store.
        self._owned: list[EntrySigner] = [signer] if signer is not None else []
        #: Key ids of keys given to ``prepare_rotation`` (not in ``keys/``).
        self._given: set[str] = set()
        self._signer: EntrySigner | None = None
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
        return _read_private(path, self._passphrase)

    @property
    def _fixed(self) -> bool:
        """Whether the active key comes from outside ``keys/`` (never written here)."""
        return self._configured is not None or self._external is not None

    def _source(self) -> str:
        if self._configured is not None:
            return f"key_path {self._configured}"
        return "the external signer (signer_command)"

    def _check_active(self, signer: EntrySigner, records: list[KeyRecord]) -> None:
        """Refuse a configured key or external signer that is not the keyring's
        active key: signing with it would put entries under a retired or unknown
        key (``audit verify``: "signed by a key not active at this index")."""
        kid = signer.key_id.hex()
        active = [r for r in records if r.last_size is None]
        if active and active[-1].key_id == kid and active[-1].vkey == signer.vkey:
            return
        current = active[-1].vkey if active else "none"
        mine = [r for r in records if r.key_id == kid]
        if mine and mine[-1].last_size is not None:
            raise _key_error(
                f"the signing key of {self._source()} ({signer.vkey}) was retired at entry "
                f"{mine[-1].last_size}; the keyring's active key is {current}: configure "
                "that key (key_path or signer_command) and restart"
            )
        raise _key_error(
            f"the signing key of {self._source()} ({signer.vkey}) is not the keyring's "
            f"active key ({current}); to change keys, run `gatekeeper audit rotate-key "
            "--new-key-path NEW.pem` (or --new-signer-command) with the current key configured"
        )

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

    def _check_retry(self) -> None:
        failed = self._failed
        if failed is not None and time.monotonic() < failed[0]:
            raise AuditError(
                f"{failed[1]} (retried at most every {RETRY_INTERVAL:g} s)", reason=failed[2]
            )

    def _note_failure(self, exc: BaseException) -> AuditError:
        if isinstance(exc, AuditError):
            error = exc
        else:
            cause = getattr(exc, "strerror", None) or type(exc).__name__
            error = _key_error(f"key directory {self.dir} is unusable ({cause})")
        failed, now = self._failed, time.monotonic()
        if failed is None or now >= failed[0]:  # not the throttled error of _check_retry
            self._failed = (now + RETRY_INTERVAL, str(error), error.reason)
        return error

    def _new_log_refusal(self) -> str | None:
        """Why no first key may be generated here (None: this is a brand-new log)."""
        if self._fixed or self._ring_path.exists():
            return None  # nothing is generated on these paths anyway
        try:
            # One key file and no keyring: a first start killed between writing the
            # key and the keyring (``_new_key`` then ``_save``). That key signed
            # nothing and its vkey was never given out: ``_load_active`` adopts it.
            if self.dir.is_dir() and len(list(self.dir.glob("*.pem"))) > 1:
                return f"keyring {self._ring_path} is missing but {self.dir} holds key files"
        except OSError as exc:
            return f"key directory {self.dir} is unusable ({exc.strerror})"
        if self.log_size is not None and self.log_size() > 0:
            return f"keyring {self._ring_path} is missing but the log has entries"
        return None

    def active_signer(self) -> EntrySigner:
        """The active key; generated (and recorded) on first use of a new log."""
        signer = self._signer
        if signer is not None:
            return signer
        self._check_retry()
        try:
            refusal = self._new_log_refusal()  # outside the lock: it may read the store
            with self._exclusive():
                if self._signer is None:
                    self._ring_stat = self._stat_ring()
                    self._signer = self._load_active(refusal=refusal)
                self._failed = None
                return self._signer
        except (OSError, AuditError) as exc:
            raise self._note_failure(exc) from exc

    def refresh(self) -> EntrySigner:
        """The active key, reloaded when keyring.json changed since it was loaded
        (another AuditLog or process rotated the key). One ``stat`` when nothing
        changed; the writer calls it once per batch, under the store's lock.

        A configured key or external signer is not reloaded: once the keyring
        no longer names it active, it fails closed until it is reconfigured."""
        signer = self._signer
        if signer is None:
            return self.active_signer()
        try:
            if self._stat_ring() == self._ring_stat:
                return signer
            self._check_retry()
            with self._exclusive():
                stat = self._stat_ring()
                if stat != self._ring_stat:
                    if self._fixed:
                        try:
                            self._check_active(signer, self.records())
                        except AuditError:
                            self._signer = None  # active_signer fails closed too
                            raise
                        reloaded = signer
                    else:
                        # A reload never generates: a vanished keyring is an error.
                        reloaded = self._load_active(refusal=f"keyring {self._ring_path} vanished")
                    self._signer, self._ring_stat = reloaded, stat
                self._failed = None
                current = self._signer
                assert current is not None
                return current
        except AuditError as exc:
            raise self._note_failure(exc) from exc
        except OSError as exc:
            raise self._note_failure(exc) from exc

    def prepare_rotation(self, new: EntrySigner | None = None) -> tuple[EntrySigner, EntrySigner]:
        """(old, new): the new key is not yet active; ``commit_rotation`` makes it
        active (the log does that in the rotation entry's transaction).

        Without ``new``, a new key is generated and written to ``keys/``; that is
        refused when the active key is a configured ``key_path`` or an external
        signer (gatekeeper writes no private key there): give the new key
        (a :func:`load_key_file` signer, another external signer). ``new`` must
        not be in the keyring already. The active key is read back from disk
        first: a key file that became unreadable or was replaced since it was
        loaded fails the rotation."""
        if new is None and self._fixed:
            raise GatekeeperError(
                f"the active signing key comes from {self._source()}, where gatekeeper "
                "writes no key: put the new key at a new path and run `gatekeeper audit "
                "rotate-key --new-key-path NEW.pem` (or --new-signer-command CMD), then "
                "configure it (key_path or signer_command) in every process using this log",
                reason="config",
            )
        old = self.refresh()
        try:
            with self._exclusive():
                on_disk = self._load_active(refusal="the keyring vanished")
                if on_disk.key_id != old.key_id:
                    raise _key_error("the active signing key on disk is not the one in use")
                if new is not None:
                    if new.name != self.origin:
                        raise GatekeeperError(
                            f"the new key is named {new.name!r}, not the log's origin "
                            f"{self.origin!r}",
                            reason="config",
                        )
                    kid = new.key_id.hex()
                    if any(r.key_id == kid for r in self.records()):
                        raise GatekeeperError(
                            f"the new key {new.vkey} is already in the keyring (the active "
                            "key or a retired one): a rotation needs a key never used",
                            reason="config",
                        )
                    self._given.add(kid)
                    return old, new
                key, _record = self._new_key(first_size=0)
        except OSError as exc:
            raise _key_error(f"key directory {self.dir} is unusable ({exc.strerror})") from exc
        return old, Signer(self.origin, key)

    def commit_rotation(self, old: EntrySigner, new: EntrySigner, first_size: int) -> None:
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
                        created=_now(),
                        first_size=first_size,
                        last_size=None,
                    )
                )
                self._save(records)
                self._signer = new
                if new.key_id.hex() in self._given:  # from now on: the given key, as given
                    self._configured, self._external = None, new
                    self._owned.append(new)
        except OSError as exc:
            raise _key_error(f"key directory {self.dir} is unusable ({exc.strerror})") from exc

    def _interrupted_first_key(self) -> tuple[Ed25519PrivateKey, KeyRecord] | None:
        """The key file a killed first start left without a keyring (None: no key
        file); more than one, or one that is not this log's, is refused."""
        found = sorted(self.dir.glob("*.pem"))
        if not found:
            return None
        if len(found) > 1:
            raise _key_error(f"keyring {self._ring_path} is missing but {self.dir} holds key files")
        key = self._load_private(found[0])
        public = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        kid = key_id(self.origin, public).hex()
        if found[0].name != f"{kid}.pem":
            raise _key_error(
                f"keyring {self._ring_path} is missing and {found[0]} is not this log's key"
            )
        created = datetime.fromtimestamp(found[0].stat().st_mtime, UTC)
        record = KeyRecord(
            key_id=kid,
            vkey=verifier_key(self.origin, public),
            created=created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            first_size=0,
            last_size=None,
        )
        return key, record

    def _load_active(self, *, refusal: str | None = None) -> EntrySigner:
        """The active key from disk; a first key is generated only when ``refusal``
        is None and there is no keyring."""
        if self._fixed:
            signer: EntrySigner
            if self._external is not None:
                signer = self._external
            else:
                assert self._configured is not None
                signer = Signer(self.origin, self._load_private(self._configured))
            if signer.name != self.origin:
                raise _key_error(
                    f"the signing key is named {signer.name!r}, not the origin {self.origin!r}"
                )
            records = self.records()
            if not records:  # a new log, or a new node of a shared log: recorded from 0
                self._save([KeyRecord(signer.key_id.hex(), signer.vkey, _now(), 0, None)])
                return signer
            self._check_active(signer, records)
            return signer
        records = self.records()
        active = [r for r in records if r.last_size is None]
        if not active:
            if records:
                raise _key_error("keyring has no active key")
            if refusal is not None:
                raise _key_error(f"{refusal}: refusing to generate a replacement signing key")
            orphan = self._interrupted_first_key()
            if orphan is not None:
                self._save([orphan[1]])
                return Signer(self.origin, orphan[0])
            key, record = self._new_key(first_size=0)
            self._save([record])
            return Signer(self.origin, key)
        path = self.dir / f"{active[-1].key_id}.pem"
        if not path.exists() and not path.is_symlink():
            raise _key_error(
                f"the keyring's active key {active[-1].vkey} has no key file {path}: if it "
                "was given to a rotation (--new-key-path, --new-signer-command), configure "
                "it (key_path or signer_command); otherwise restore the file"
            )
        key = self._load_private(path)
        signer = Signer(self.origin, key)
        if signer.key_id.hex() != active[-1].key_id:
            raise _key_error("the active signing key does not match the keyring")
        return signer

    def close(self) -> None:
        """Close the external signers (stop their processes)."""
        owned, self._owned = self._owned, []
        for signer in owned:
            close = getattr(signer, "close", None)
            if callable(close):
                close()
