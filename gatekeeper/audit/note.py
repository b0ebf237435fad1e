"""C2SP signed notes and tlog checkpoints with Ed25519, byte-compatible with Go's ``note``.

    >>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    >>> from gatekeeper.audit.note import (
    ...     Checkpoint, Signer, Verifier, open_checkpoint, sign_checkpoint)
    >>> signer = Signer("example.org/log", Ed25519PrivateKey.generate())
    >>> signed = sign_checkpoint(Checkpoint("example.org/log", 1, bytes(32)), [signer])
    >>> signed.splitlines()[:4]
    ['example.org/log', '1', 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=', '']
    >>> open_checkpoint(signed, [Verifier(signer.vkey)]).size     # raises NoteError if forged
    1

A signed note (C2SP ``signed-note``, Go's ``golang.org/x/mod/sumdb/note``) is a
text ending in a newline, an empty line, then one line per signature::

    — <key name> <base64(key id (4 bytes) || Ed25519 signature of the text)>\\n

The key id is the first 4 bytes of ``SHA-256(name || "\\n" || 0x01 || public
key)``; the verifier key is ``<name>+<key id, 8 hex digits>+<base64(0x01 ||
public key)>``. :func:`open_note` follows Go's ``note.Open`` rule for rule:
valid UTF-8 and no control character but newline; signatures by unknown keys
are kept as unverified; a bad signature by a known key, or no verified
signature at all, is a :class:`NoteError`.

A checkpoint (C2SP ``tlog-checkpoint``) is the note text
``<origin>\\n<size>\\n<base64 root>\\n`` plus optional extension lines, signed
by the log's key, whose name is the origin.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from gatekeeper.errors import GatekeeperError

__all__ = [
    "ALG_ED25519",
    "MAX_SIGNATURES",
    "Checkpoint",
    "EntrySigner",
    "Note",
    "NoteError",
    "Signature",
    "Signer",
    "Verifier",
    "is_valid_name",
    "key_id",
    "open_checkpoint",
    "open_note",
    "parse_verifier_key",
    "sign_checkpoint",
    "sign_note",
    "verifier_key",
]

#: The signature algorithm byte of an Ed25519 key in a verifier key.
ALG_ED25519 = 1
#: A note with more signature lines than this is malformed (as in Go).
MAX_SIGNATURES = 100

_SIG_PREFIX = "— ".encode()  # U+2014 EM DASH, space
_SIG_SPLIT = b"\n\n"
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")  # ASCII controls other than newline
_HEX8 = re.compile(r"[0-9a-fA-F]{8}")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
# Go's unicode.IsSpace: Latin-1 spaces and the Unicode White_Space property.
_SPACES = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_ED25519_KEY_SIZE = 32
_ED25519_SIG_SIZE = 64
_HASH_SIZE = 32
_MAX_SIZE = (1 << 64) - 1


class NoteError(GatekeeperError):
    """A signed note or checkpoint is malformed, unverified or badly signed.

    ``reason`` tells which: ``audit_note_malformed`` (syntax, keys, names),
    ``audit_note_unverified`` (no signature by a known key, or a required key
    missing), ``audit_note_bad_signature`` (a known key's signature fails).
    """

    reason = "audit_note_malformed"


def _malformed(message: str) -> NoteError:
    return NoteError(f"malformed note: {message}", reason="audit_note_malformed")


def _b64decode(text: str) -> bytes | None:
    """Standard padded base64, as Go's ``base64.StdEncoding``; None if invalid.

    Like Go, carriage returns and newlines are ignored; unlike binascii's
    ``strict_mode`` alone, a wrong total length is an error.
    """
    if "\r" in text or "\n" in text:
        text = text.replace("\r", "").replace("\n", "")
    if not _BASE64.fullmatch(text):
        return None
    return binascii.a2b_base64(text.encode("ascii"), strict_mode=True)


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        return False
    return True


def is_valid_name(name: str) -> bool:
    """Whether ``name`` can name a key: non-empty UTF-8 with no Unicode space and no ``+``."""
    return name != "" and "+" not in name and not any(c in _SPACES for c in name) and _is_utf8(name)


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _key_hash(name: str, encoded_key: bytes) -> bytes:
    return hashlib.sha256(name.encode("utf-8") + b"\n" + encoded_key).digest()[:4]


def key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte key id of an Ed25519 key: ``SHA-256(name || "\\n" || 0x01 || key)[:4]``."""
    if len(public_key) != _ED25519_KEY_SIZE:
        raise NoteError(f"an Ed25519 public key is 32 bytes, not {len(public_key)}")
    if not _is_utf8(name):
        raise NoteError("invalid key name: not UTF-8")
    return _key_hash(name, bytes([ALG_ED25519]) + public_key)


def verifier_key(name: str, public_key: bytes) -> str:
    """The verifier key ``<name>+<hex key id>+<base64(0x01 || public key)>``."""
    if not is_valid_name(name):
        raise NoteError(f"invalid key name {name!r}: empty, or has a space or '+'")
    kid = key_id(name, public_key)
    return f"{name}+{kid.hex()}+{_b64encode(bytes([ALG_ED25519]) + public_key)}"


def parse_verifier_key(vkey: str) -> tuple[str, bytes, bytes]:
    """``(name, key id, Ed25519 public key)`` of a verifier key, checked as Go's ``NewVerifier``."""
    name, _, rest = vkey.partition("+")
    hash16, _, key64 = rest.partition("+")
    key = _b64decode(key64)
    if not _HEX8.fullmatch(hash16) or key is None or not is_valid_name(name) or not key:
        raise NoteError(f"malformed verifier key {vkey!r}")
    kid = bytes.fromhex(hash16)
    if kid != _key_hash(name, key):
        raise NoteError(f"verifier key {vkey!r}: the key id does not match the key")
    if key[0] != ALG_ED25519:
        raise NoteError(f"verifier key {vkey!r}: unknown algorithm {key[0]}")
    if len(key) != 1 + _ED25519_KEY_SIZE:
        raise NoteError(f"malformed verifier key {vkey!r}: wrong key length")
    return name, kid, key[1:]


class Verifier:
    """Checks signatures by one Ed25519 key, given its verifier key (``name+id+key``)."""

    __slots__ = ("_public", "key_id", "name", "public_key", "vkey")

    def __init__(self, vkey: str) -> None:
        self.name, self.key_id, self.public_key = parse_verifier_key(vkey)
        self.vkey = vkey
        self._public = Ed25519PublicKey.from_public_bytes(self.public_key)

    @classmethod
    def from_public_key(cls, name: str, public_key: bytes | Ed25519PublicKey) -> Verifier:
        """The verifier of a raw 32-byte or ``cryptography`` Ed25519 public key."""
        raw = public_key if isinstance(public_key, bytes) else _raw_public(public_key)
        return cls(verifier_key(name, raw))

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is this key's Ed25519 signature of ``message``."""
        if len(signature) != _ED25519_SIG_SIZE:
            return False
        try:
            self._public.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def __repr__(self) -> str:
        return f"Verifier({self.vkey!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Verifier) and other.vkey == self.vkey

    def __hash__(self) -> int:
        return hash(self.vkey)


@runtime_checkable
class EntrySigner(Protocol):
    """What signs a log's entries and checkpoints: one Ed25519 key under a key name.

    :class:`Signer` holds the private key in memory; an external signer (an
    HSM, a KMS, a separate signing process such as
    :class:`gatekeeper.audit.command_signer.CommandSigner`) keeps it elsewhere.
    The note format fixes the algorithm: ``sign`` must return a pure Ed25519
    signature (64 bytes) by ``public_key`` (32 bytes), or raise
    :class:`~gatekeeper.audit.entry.AuditError`; it must never fall back to
    another key.
    """

    @property
    def name(self) -> str: ...

    @property
    def public_key(self) -> bytes: ...

    @property
    def key_id(self) -> bytes: ...

    @property
    def vkey(self) -> str: ...

    def sign(self, message: bytes) -> bytes: ...


class Signer:
    """Signs notes with one Ed25519 private key under a key name (a log's origin)."""

    __slots__ = ("_private", "key_id", "name", "public_key", "vkey")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        if not is_valid_name(name):
            raise NoteError(f"invalid key name {name!r}: empty, or has a space or '+'")
        self.name = name
        self._private = private_key
        self.public_key = _raw_public(private_key.public_key())
        self.key_id = key_id(name, self.public_key)
        self.vkey = verifier_key(name, self.public_key)

    @classmethod
    def from_encoded_key(cls, skey: str) -> Signer:
        """A signer from Go's encoded signer key ``PRIVATE+KEY+<name>+<id>+<base64>``.

        Checked as Go's ``note.NewSigner``; the error never quotes the key.
        """
        priv1, _, rest = skey.partition("+")
        priv2, _, rest = rest.partition("+")
        name, _, rest = rest.partition("+")
        hash16, _, key64 = rest.partition("+")
        key = _b64decode(key64)
        if (
            priv1 != "PRIVATE"
            or priv2 != "KEY"
            or not _HEX8.fullmatch(hash16)
            or key is None
            or not is_valid_name(name)
            or not key
        ):
            raise NoteError("malformed encoded signer key")
        if key[0] != ALG_ED25519:
            raise NoteError(f"encoded signer key: unknown algorithm {key[0]}")
        if len(key) != 1 + _ED25519_KEY_SIZE:
            raise NoteError("malformed encoded signer key: wrong key length")
        signer = cls(name, Ed25519PrivateKey.from_private_bytes(key[1:]))
        if signer.key_id != bytes.fromhex(hash16):
            raise NoteError("encoded signer key: the key id does not match the key")
        return signer

    def sign(self, message: bytes) -> bytes:
        """The raw 64-byte Ed25519 signature of ``message``."""
        return self._private.sign(message)

    def sign_note(self, text: str) -> str:
        """The signed note of ``text`` (which must end in a newline), signed by this key."""
        return sign_note(text, [self])

    def verifier(self) -> Verifier:
        """The verifier of this key."""
        return Verifier(self.vkey)

    def __repr__(self) -> str:
        return f"Signer({self.name!r}, key_id={self.key_id.hex()})"


@dataclass(frozen=True, slots=True)
class Signature:
    """One signature line of a note: key name, key id and the base64 of id || signature."""

    name: str
    key_id: bytes
    base64: str


@dataclass(frozen=True, slots=True)
class Note:
    """An opened note: its text, the verified signatures and the others (unknown keys)."""

    text: str
    sigs: tuple[Signature, ...]
    unverified_sigs: tuple[Signature, ...] = ()


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise _malformed("the text must end in a newline")
    if not _is_utf8(text):
        raise _malformed("the text is not valid UTF-8")
    if _CONTROL.search(text):
        raise _malformed("the text has a control character other than newline")


def sign_note(text: str, signers: Sequence[EntrySigner]) -> str:
    """The signed note of ``text``, with one signature line per signer, in order.

    Several signers co-sign (after a key rotation: the new and the old key).
    ``text`` must end in a newline and hold no control character but newline
    (a note Go's ``note.Open`` would reject is never produced).
    """
    _check_text(text)
    if not signers:
        raise NoteError("a note needs at least one signer")
    message = text.encode("utf-8")
    parts = [text, "\n"]
    for signer in signers:
        sig = signer.sign(message)
        parts.append(f"— {signer.name} {_b64encode(signer.key_id + sig)}\n")
    return "".join(parts)


def open_note(
    note: str | bytes, verifiers: Sequence[Verifier], *, require_all: bool = False
) -> Note:
    """Parse ``note`` and check its signatures against ``verifiers``, as Go's ``note.Open``.

    Returns the :class:`Note` when at least one signature is by a known key
    and every known key's signature is valid; signatures by unknown keys are
    kept in ``unverified_sigs``. With ``require_all``, every one of
    ``verifiers`` must have signed. Raises :class:`NoteError` otherwise.
    """
    try:
        decoded = note if isinstance(note, str) else bytes(note).decode("utf-8")
        raw = decoded.encode("utf-8")
    except UnicodeError:
        raise _malformed("not valid UTF-8") from None
    if _CONTROL.search(decoded):
        raise _malformed("a control character other than newline")

    # The signature block is after the last blank line.
    split = raw.rfind(_SIG_SPLIT)
    if split < 0:
        raise _malformed("no blank line before the signatures")
    text, block = raw[: split + 1], raw[split + 2 :]
    if not block or not block.endswith(b"\n"):
        raise _malformed("the signature block is empty or does not end in a newline")

    known: dict[tuple[str, bytes], list[Verifier]] = {}
    for verifier in verifiers:
        known.setdefault((verifier.name, verifier.key_id), []).append(verifier)

    sigs: list[Signature] = []
    unverified: list[Signature] = []
    seen: set[tuple[str, bytes]] = set()
    seen_unverified: set[bytes] = set()
    for count, line in enumerate(block[:-1].split(b"\n"), start=1):
        if not line.startswith(_SIG_PREFIX):
            raise _malformed("a signature line does not start with an em dash and a space")
        name, _, b64 = line[len(_SIG_PREFIX) :].decode("utf-8").partition(" ")
        sig = _b64decode(b64)
        if sig is None or not is_valid_name(name) or b64 == "" or len(sig) < 5:
            raise _malformed(f"bad signature line for key name {name!r}")
        if count > MAX_SIGNATURES:
            raise _malformed(f"more than {MAX_SIGNATURES} signatures")
        kid, sig = sig[:4], sig[4:]
        signature = Signature(name, kid, b64)
        candidates = known.get((name, kid))
        if candidates is None:
            if line not in seen_unverified:  # drop repeated identical lines
                seen_unverified.add(line)
                unverified.append(signature)
            continue
        if len(candidates) > 1:
            raise NoteError(f"ambiguous key {name}+{kid.hex()}: given twice")
        if (name, kid) in seen:  # drop repeated signatures by one key
            continue
        seen.add((name, kid))
        if not candidates[0].verify(text, sig):
            raise NoteError(
                f"invalid signature for key {name}+{kid.hex()}", reason="audit_note_bad_signature"
            )
        sigs.append(signature)

    if not sigs:
        others = ", ".join(f"{s.name}+{s.key_id.hex()}" for s in unverified)
        raise NoteError(
            f"note has no verifiable signatures (signed by unknown keys: {others})",
            reason="audit_note_unverified",
        )
    if require_all:
        missing = [v.vkey for v in verifiers if (v.name, v.key_id) not in seen]
        if missing:
            raise NoteError(
                f"note is not signed by every required key: missing {', '.join(missing)}",
                reason="audit_note_unverified",
            )
    return Note(text.decode("utf-8"), tuple(sigs), tuple(unverified))


# -- checkpoints -----------------------------------------------------------------


def _checkpoint_error(message: str) -> NoteError:
    return NoteError(f"malformed checkpoint: {message}", reason="audit_note_malformed")


def _check_line(what: str, line: str) -> None:
    if not line:
        raise _checkpoint_error(f"empty {what}")
    if "\n" in line or _CONTROL.search(line) or not _is_utf8(line):
        raise _checkpoint_error(f"the {what} has a control character or is not UTF-8")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A C2SP ``tlog-checkpoint``: the log's origin, tree size and root hash.

    ``extensions`` are the optional lines after the three mandatory ones, kept
    (and signed) verbatim.
    """

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line("origin", self.origin)
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise _checkpoint_error("the size is not an integer")
        if not 0 <= self.size <= _MAX_SIZE:
            raise _checkpoint_error(f"the size {self.size} is not a uint64")
        if not isinstance(self.root, bytes) or len(self.root) != _HASH_SIZE:
            raise _checkpoint_error("the root hash is not 32 bytes")
        for line in self.extensions:
            _check_line("extension line", line)

    def body(self) -> str:
        """The note text: ``origin\\nsize\\nbase64(root)\\n`` and the extension lines."""
        lines = [self.origin, str(self.size), _b64encode(self.root), *self.extensions]
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Parse a checkpoint body strictly (the note text, not the signed note)."""
        if not text.endswith("\n"):
            raise _checkpoint_error("the text must end in a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise _checkpoint_error("fewer than three lines (origin, size, root hash)")
        origin, size_line, root_line, *extensions = lines
        if not _DECIMAL.fullmatch(size_line):
            raise _checkpoint_error(f"the size {size_line!r} is not a decimal without leading 0")
        root = _b64decode(root_line)
        if root is None or len(root) != _HASH_SIZE or _b64encode(root) != root_line:
            raise _checkpoint_error(f"the root {root_line!r} is not a base64 32-byte hash")
        return cls(origin, int(size_line), root, tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, signers: Sequence[EntrySigner]) -> str:
    """The signed note of ``checkpoint``; one of the signers must be named its origin."""
    if not any(signer.name == checkpoint.origin for signer in signers):
        raise NoteError(
            f"a checkpoint of {checkpoint.origin!r} must be signed by a key of that name"
        )
    return sign_note(checkpoint.body(), signers)


def open_checkpoint(
    note: str | bytes, verifiers: Sequence[Verifier], *, require_all: bool = False
) -> Checkpoint:
    """Open a signed checkpoint: the note checks, and a key named its origin signed it."""
    opened = open_note(note, verifiers, require_all=require_all)
    checkpoint = Checkpoint.parse(opened.text)
    if not any(sig.name == checkpoint.origin for sig in opened.sigs):
        raise NoteError(
            f"checkpoint of {checkpoint.origin!r} has no verified signature by a key of that name",
            reason="audit_note_unverified",
        )
    return checkpoint
