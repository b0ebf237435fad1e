"""RFC 6962 / RFC 9162 Merkle trees: stored hashes, proofs and C2SP tiles, as Go's ``tlog``.

    >>> from gatekeeper.audit.merkle import (
    ...     MemoryHashStore, check_record, check_tree, leaf_hash, prove_record, prove_tree)
    >>> store = MemoryHashStore()
    >>> for entry in (b"alpha", b"beta", b"gamma"):
    ...     index, _leaf = store.append_record(entry)
    >>> old_root = store.root(2)
    >>> proof = prove_record(3, 1, store.read_hashes)
    >>> check_record(proof, 3, store.root(), 1, leaf_hash(b"beta"))     # raises ProofError if not
    >>> check_tree(prove_tree(3, 2, store.read_hashes), 3, store.root(), 2, old_root)
    >>> len(proof), store.size
    (2, 3)

A faithful port of ``golang.org/x/mod/sumdb/tlog`` (``tlog.go``, ``tile.go``),
function for function, so that the hashes, the stored-hash layout and the
proofs are byte-for-byte those of Go's package (checked against it by
``tests/test_go_crosscheck.py``):

=============================  ===================================
this module                    Go ``tlog``
=============================  ===================================
``leaf_hash``                  ``RecordHash``
``node_hash``                  ``NodeHash``
``stored_hash_index``          ``StoredHashIndex``
``split_stored_hash_index``    ``SplitStoredHashIndex``
``stored_hash_count``          ``StoredHashCount``
``stored_hashes``              ``StoredHashes``
``tree_hash``                  ``TreeHash``
``prove_record``               ``ProveRecord`` (RFC 9162 inclusion)
``check_record``               ``CheckRecord``
``prove_tree``                 ``ProveTree`` (RFC 9162 consistency)
``check_tree``                 ``CheckTree``
``new_tiles``                  ``NewTiles`` (height 8)
``hash_tile``                  ``ReadTileData``
=============================  ===================================

Storage is abstracted as one function, ``read_hashes(indexes) -> hashes``
(Go's ``HashReader``): given stored-hash indexes it returns the 32-byte hashes
at those indexes, in order. :class:`MemoryHashStore` is the in-memory one.

Tiles follow C2SP ``tlog-tiles`` (height 8): ``tile/<L>/<N>[.p/<W>]`` holds
the hashes at tree level ``8*L``, ``tile/entries/<N>[.p/<W>]`` the entries of
the level-0 tile with the same coordinates.

A proof that does not verify, or a ``read_hashes`` that breaks its contract,
raises :class:`ProofError`; a negative size or index is a ``ValueError``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

from gatekeeper.errors import GatekeeperError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "Frontier",
    "MemoryHashStore",
    "ProofError",
    "ReadHashes",
    "check_record",
    "check_tree",
    "entries_tile_path",
    "hash_tile",
    "leaf_hash",
    "new_tiles",
    "node_hash",
    "prove_record",
    "prove_tree",
    "split_stored_hash_index",
    "stored_hash_count",
    "stored_hash_index",
    "stored_hashes",
    "stored_hashes_for_record_hash",
    "tile_path",
    "tree_hash",
]

#: Size of every hash (SHA-256), in bytes.
HASH_SIZE = 32
#: The root of the empty tree: SHA-256 of the empty string (RFC 6962, section 2.1).
EMPTY_ROOT = hashlib.sha256(b"").digest()
#: C2SP tlog-tiles tile height: a tile holds 2**8 hashes of one level.
TILE_HEIGHT = 8
#: The number of hashes (or entries) in a full tile.
TILE_WIDTH = 1 << TILE_HEIGHT

#: Reads stored hashes by stored-hash index (Go's ``HashReader``).
ReadHashes = Callable[[Sequence[int]], Sequence[bytes]]

_sha256 = hashlib.sha256
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_PATH_BASE = 1000


class ProofError(GatekeeperError):
    """A Merkle proof does not verify, or its inputs are not a valid question.

    Also raised when a ``read_hashes`` function returns the wrong number of
    hashes or a hash that is not 32 bytes: the tree cannot be trusted then.
    """

    reason = "audit_proof_invalid"


# -- hashing -------------------------------------------------------------------


def leaf_hash(data: bytes) -> bytes:
    """The hash of a record (leaf): ``SHA-256(0x00 || data)``."""
    return _sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an interior node: ``SHA-256(0x01 || left || right)``."""
    return _sha256(_NODE_PREFIX + left + right).digest()


class Frontier:
    """The right edge of a tree built leaf by leaf: complete subtrees, largest first.

    ``append`` returns the stored hashes a leaf adds (Go tlog order); ``root``
    is the tree hash of the ``count`` leaves so far, in O(log n).
    """

    __slots__ = ("count", "stack")

    def __init__(self) -> None:
        self.stack: list[bytes] = []
        self.count = 0

    def append(self, leaf: bytes) -> list[bytes]:
        """Add a leaf hash; return the stored hashes it adds (Go tlog order)."""
        h = leaf
        out = [h]
        n = self.count
        while n & 1:
            h = node_hash(self.stack.pop(), h)
            out.append(h)
            n >>= 1
        self.stack.append(h)
        self.count += 1
        return out

    def root(self) -> bytes:
        if not self.stack:
            return EMPTY_ROOT
        h = self.stack[-1]
        for left in reversed(self.stack[:-1]):
            h = node_hash(left, h)
        return h


def _maxpow2(n: int) -> tuple[int, int]:
    """(k, log2 k) for k the largest power of two smaller than n (k = 1 for n <= 2)."""
    level = (n - 1).bit_length() - 1
    if level < 0:
        level = 0
    return 1 << level, level


def _trailing_zeros(x: int) -> int:
    return (x & -x).bit_length() - 1


# -- stored hash layout ----------------------------------------------------------


def stored_hash_index(level: int, n: int) -> int:
    """The position of hash ``(level, n)`` in the dense stored-hash order.

    The ``n``-th hash at ``level`` is stored right after the ``(2n+1)``-th
    hash at ``level - 1``: the order in which :func:`stored_hashes` produces
    them (Crosby and Wallach, section 3.3).
    """
    if level < 0 or n < 0:
        raise ValueError(f"stored_hash_index({level}, {n}): negative argument")
    # Walk down to level 0 (n = 2n+1, level times), then sum n + n/2 + n/4 + ...
    n = ((n + 1) << level) - 1
    return 2 * n - n.bit_count() + level


def split_stored_hash_index(index: int) -> tuple[int, int]:
    """The inverse of :func:`stored_hash_index`: ``(level, n)`` of a stored-hash index."""
    if index < 0:
        raise ValueError(f"split_stored_hash_index({index}): negative index")
    # stored_hash_index(0, n) < 2n, so the n we want is in [index/2, index/2 + log2(index)].
    n = index // 2
    index_n = stored_hash_index(0, n)
    while True:
        # Each new record n adds 1 + trailing_zeros(n + 1) hashes.
        x = index_n + 1 + _trailing_zeros(n + 1)
        if x > index:
            break
        n += 1
        index_n = x
    # The hash was committed with record n: it is one of (0, n), (1, n/2), (2, n/4), ...
    level = index - index_n
    return level, n >> level


def stored_hash_count(n: int) -> int:
    """The number of stored hashes of a tree of ``n`` records."""
    if n < 0:
        raise ValueError(f"stored_hash_count({n}): negative size")
    if n == 0:
        return 0
    # The hashes up to the last leaf, then one per subtree that leaf completed.
    return stored_hash_index(0, n - 1) + 1 + _trailing_zeros(n)


def _read(read_hashes: ReadHashes, indexes: list[int]) -> Sequence[bytes]:
    hashes = read_hashes(indexes)
    if len(hashes) != len(indexes):
        raise ProofError(
            f"read_hashes returned {len(hashes)} hashes for {len(indexes)} indexes",
            reason="audit_hash_store_invalid",
        )
    for digest in hashes:
        if len(digest) != HASH_SIZE:
            raise ProofError(
                f"read_hashes returned a {len(digest)}-byte hash",
                reason="audit_hash_store_invalid",
            )
    return hashes


def stored_hashes(n: int, data: bytes, read_hashes: ReadHashes) -> list[bytes]:
    """The hashes to store when appending record ``n`` with ``data``.

    They go at ``stored_hash_index(0, n)`` onwards: the leaf hash, then one
    hash per subtree the record completes (about two per record on average).
    ``read_hashes`` is asked for at most log2(n) earlier hashes.
    """
    return stored_hashes_for_record_hash(n, leaf_hash(data), read_hashes)


def stored_hashes_for_record_hash(n: int, leaf: bytes, read_hashes: ReadHashes) -> list[bytes]:
    """Like :func:`stored_hashes`, given ``leaf_hash(data)`` instead of ``data``."""
    if n < 0:
        raise ValueError(f"stored_hashes({n}): negative record index")
    if len(leaf) != HASH_SIZE:
        raise ValueError(f"a leaf hash is {HASH_SIZE} bytes, not {len(leaf)}")
    hashes = [leaf]
    # Each trailing 1 bit of n completes a subtree, consuming the adjacent one.
    m = _trailing_zeros(n + 1)
    if m == 0:
        return hashes
    indexes = [stored_hash_index(i, (n >> i) - 1) for i in range(m - 1, -1, -1)]
    old = _read(read_hashes, indexes)
    h = leaf
    for i in range(m):
        h = node_hash(old[m - 1 - i], h)
        hashes.append(h)
    return hashes


# -- tree hash -------------------------------------------------------------------


def _sub_tree_index(lo: int, hi: int, need: list[int]) -> list[int]:
    """Append the stored-hash indexes of the complete subtrees covering [lo, hi)."""
    while lo < hi:
        k, level = _maxpow2(hi - lo + 1)
        need.append(stored_hash_index(level, lo >> level))
        lo += k
    return need


def _sub_tree_hash(lo: int, hi: int, hashes: Sequence[bytes], pos: int) -> tuple[bytes, int]:
    """The hash of [lo, hi) from ``hashes[pos:]`` (as listed by _sub_tree_index); new pos."""
    # The complete subtrees covering [lo, hi) are the set bits of hi - lo.
    end = pos + (hi - lo).bit_count()
    h = hashes[end - 1]
    for i in range(end - 2, pos - 1, -1):
        h = node_hash(hashes[i], h)
    return h, end


def tree_hash(n: int, read_hashes: ReadHashes) -> bytes:
    """The root hash of the tree of the first ``n`` records (one read of <= log2(n)+1 hashes)."""
    if n < 0:
        raise ValueError(f"tree_hash({n}): negative size")
    if n == 0:
        return EMPTY_ROOT
    indexes = _sub_tree_index(0, n, [])
    hashes = _read(read_hashes, indexes)
    return _sub_tree_hash(0, n, hashes, 0)[0]


# -- inclusion proofs ----------------------------------------------------------


def _leaf_proof_index(lo: int, hi: int, n: int, need: list[int]) -> list[int]:
    if lo + 1 == hi:
        return need
    k, _ = _maxpow2(hi - lo)
    if n < lo + k:
        _leaf_proof_index(lo, lo + k, n, need)
        _sub_tree_index(lo + k, hi, need)
    else:
        _sub_tree_index(lo, lo + k, need)
        _leaf_proof_index(lo + k, hi, n, need)
    return need


def _leaf_proof(
    lo: int, hi: int, n: int, hashes: Sequence[bytes], pos: int
) -> tuple[list[bytes], int]:
    if lo + 1 == hi:
        # The leaf itself: the verifier knows its hash.
        return [], pos
    # Walk down toward n, recording the hash of the path not taken.
    k, _ = _maxpow2(hi - lo)
    if n < lo + k:
        proof, pos = _leaf_proof(lo, lo + k, n, hashes, pos)
        th, pos = _sub_tree_hash(lo + k, hi, hashes, pos)
    else:
        th, pos = _sub_tree_hash(lo, lo + k, hashes, pos)
        proof, pos = _leaf_proof(lo + k, hi, n, hashes, pos)
    proof.append(th)
    return proof, pos


def prove_record(t: int, n: int, read_hashes: ReadHashes) -> list[bytes]:
    """The inclusion proof (RFC 9162 audit path) of record ``n`` in the tree of size ``t``."""
    if t < 0 or n < 0 or n >= t:
        raise ProofError(f"no inclusion proof of record {n} in a tree of size {t}")
    indexes = _leaf_proof_index(0, t, n, [])
    if not indexes:
        return []
    hashes = _read(read_hashes, indexes)
    return _leaf_proof(0, t, n, hashes, 0)[0]


def _check_hash(what: str, value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} is {len(value)} bytes, not {HASH_SIZE}")


def _run_record_proof(
    proof: Sequence[bytes], end: int, lo: int, hi: int, n: int, leaf: bytes
) -> bytes | None:
    """The root implied by ``proof[:end]`` for leaf n in [lo, hi), or None if misshapen."""
    if lo + 1 == hi:
        # The leaf: the proof must have no hashes left over.
        return leaf if end == 0 else None
    if end == 0:
        return None
    k, _ = _maxpow2(hi - lo)
    sibling = proof[end - 1]
    if n < lo + k:
        th = _run_record_proof(proof, end - 1, lo, lo + k, n, leaf)
        return None if th is None else node_hash(th, sibling)
    th = _run_record_proof(proof, end - 1, lo + k, hi, n, leaf)
    return None if th is None else node_hash(sibling, th)


def check_record(proof: Sequence[bytes], t: int, root: bytes, n: int, leaf: bytes) -> None:
    """Check that ``proof`` proves record ``n`` with hash ``leaf`` in the tree (``t``, ``root``).

    ``leaf`` is the record's :func:`leaf_hash`. Raises :class:`ProofError`
    unless the proof holds.
    """
    if t < 0 or n < 0 or n >= t:
        raise ProofError(f"no inclusion proof of record {n} in a tree of size {t}")
    _check_hash("the root", root)
    _check_hash("the leaf hash", leaf)
    for i, digest in enumerate(proof):
        _check_hash(f"inclusion proof hash {i}", digest)
    got = _run_record_proof(proof, len(proof), 0, t, n, leaf)
    if got is None:
        raise ProofError(
            f"inclusion proof of record {n} in tree size {t} has the wrong number of hashes "
            f"({len(proof)})"
        )
    if got != root:
        raise ProofError(
            f"inclusion proof fails: record {n} with leaf hash {leaf.hex()} is not in the "
            f"tree of size {t} with root {root.hex()}"
        )


# -- consistency proofs --------------------------------------------------------


def _tree_proof_index(lo: int, hi: int, n: int, need: list[int]) -> list[int]:
    if n == hi:
        if lo == 0:
            return need
        return _sub_tree_index(lo, hi, need)
    k, _ = _maxpow2(hi - lo)
    if n <= lo + k:
        _tree_proof_index(lo, lo + k, n, need)
        _sub_tree_index(lo + k, hi, need)
    else:
        _sub_tree_index(lo, lo + k, need)
        _tree_proof_index(lo + k, hi, n, need)
    return need


def _tree_proof(
    lo: int, hi: int, n: int, hashes: Sequence[bytes], pos: int
) -> tuple[list[bytes], int]:
    if n == hi:
        if lo == 0:
            # Exactly the old tree: the verifier knows its hash.
            return [], pos
        th, pos = _sub_tree_hash(lo, hi, hashes, pos)
        return [th], pos
    k, _ = _maxpow2(hi - lo)
    if n <= lo + k:
        proof, pos = _tree_proof(lo, lo + k, n, hashes, pos)
        th, pos = _sub_tree_hash(lo + k, hi, hashes, pos)
    else:
        th, pos = _sub_tree_hash(lo, lo + k, hashes, pos)
        proof, pos = _tree_proof(lo + k, hi, n, hashes, pos)
    proof.append(th)
    return proof, pos


def prove_tree(t: int, n: int, read_hashes: ReadHashes) -> list[bytes]:
    """The consistency proof that the tree of size ``t`` extends the tree of size ``n``."""
    if t < 1 or n < 1 or n > t:
        raise ProofError(f"no consistency proof from tree size {n} to tree size {t}")
    indexes = _tree_proof_index(0, t, n, [])
    if not indexes:
        return []
    hashes = _read(read_hashes, indexes)
    return _tree_proof(0, t, n, hashes, 0)[0]


def _run_tree_proof(
    proof: Sequence[bytes], end: int, lo: int, hi: int, n: int, old: bytes
) -> tuple[bytes, bytes] | None:
    """(old hash, new hash) of [lo, hi) implied by ``proof[:end]``, or None if misshapen."""
    if n == hi:
        if lo == 0:
            return (old, old) if end == 0 else None
        return (proof[0], proof[0]) if end == 1 else None
    if end == 0:
        return None
    k, _ = _maxpow2(hi - lo)
    sibling = proof[end - 1]
    if n <= lo + k:
        sub = _run_tree_proof(proof, end - 1, lo, lo + k, n, old)
        return None if sub is None else (sub[0], node_hash(sub[1], sibling))
    sub = _run_tree_proof(proof, end - 1, lo + k, hi, n, old)
    return None if sub is None else (node_hash(sibling, sub[0]), node_hash(sibling, sub[1]))


def check_tree(proof: Sequence[bytes], t: int, root_t: bytes, n: int, root_n: bytes) -> None:
    """Check that ``proof`` proves tree (``t``, ``root_t``) extends tree (``n``, ``root_n``).

    Raises :class:`ProofError` unless the proof holds.
    """
    if t < 1 or n < 1 or n > t:
        raise ProofError(f"no consistency proof from tree size {n} to tree size {t}")
    _check_hash("the new root", root_t)
    _check_hash("the old root", root_n)
    for i, digest in enumerate(proof):
        _check_hash(f"consistency proof hash {i}", digest)
    got = _run_tree_proof(proof, len(proof), 0, t, n, root_n)
    if got is None:
        raise ProofError(
            f"consistency proof from tree size {n} to {t} has the wrong number of hashes "
            f"({len(proof)})"
        )
    if got[0] != root_n or got[1] != root_t:
        raise ProofError(
            f"consistency proof fails: the tree of size {t} with root {root_t.hex()} does not "
            f"extend the tree of size {n} with root {root_n.hex()}"
        )


# -- tiles (C2SP tlog-tiles) -------------------------------------------------------


def _check_tile(level: int, index: int, width: int) -> None:
    if not 0 <= level <= 63 or index < 0 or not 1 <= width <= TILE_WIDTH:
        raise ValueError(f"invalid tile: level {level}, index {index}, width {width}")


def _tile_suffix(index: int, width: int) -> str:
    n = index
    encoded = f"{n % _PATH_BASE:03d}"
    while n >= _PATH_BASE:
        n //= _PATH_BASE
        encoded = f"x{n % _PATH_BASE:03d}/{encoded}"
    return encoded if width == TILE_WIDTH else f"{encoded}.p/{width}"


def tile_path(level: int, index: int, width: int) -> str:
    """The C2SP path of a hash tile: ``tile/<L>/<N>[.p/<W>]``.

    ``<N>`` is written three digits per path element, all but the last
    prefixed by ``x`` (1234067 is ``x001/x234/067``); ``.p/<W>`` marks a
    partial tile of ``width`` < 256 hashes.

        >>> tile_path(0, 1234067, 256), tile_path(1, 0, 7)
        ('tile/0/x001/x234/067', 'tile/1/000.p/7')
    """
    _check_tile(level, index, width)
    return f"tile/{level}/{_tile_suffix(index, width)}"


def entries_tile_path(index: int, width: int) -> str:
    """The C2SP path of an entry bundle: ``tile/entries/<N>[.p/<W>]``.

    >>> entries_tile_path(2, 188)
    'tile/entries/002.p/188'
    """
    _check_tile(0, index, width)
    return f"tile/entries/{_tile_suffix(index, width)}"


def new_tiles(old_size: int, new_size: int) -> list[tuple[int, int, int]]:
    """The tiles ``(level, index, width)`` to publish when the tree grows from old to new size.

    A port of Go's ``tlog.NewTiles`` at height 8; ``new_tiles(0, n)`` lists
    every tile of a tree of size n (the entry bundles are the level-0 ones).
    """
    if old_size < 0 or new_size < old_size:
        raise ValueError(f"new_tiles({old_size}, {new_size}): sizes out of order")
    tiles: list[tuple[int, int, int]] = []
    level = 0
    while new_size >> (TILE_HEIGHT * level) > 0:
        old_n = old_size >> (TILE_HEIGHT * level)
        new_n = new_size >> (TILE_HEIGHT * level)
        if old_n != new_n:
            for n in range(old_n >> TILE_HEIGHT, new_n >> TILE_HEIGHT):
                tiles.append((level, n, TILE_WIDTH))
            n = new_n >> TILE_HEIGHT
            width = new_n - (n << TILE_HEIGHT)
            if width > 0:
                tiles.append((level, n, width))
        level += 1
    return tiles


def hash_tile(level: int, index: int, width: int, read_hashes: ReadHashes) -> bytes:
    """The bytes of hash tile (``level``, ``index``, ``width``): ``width`` 32-byte hashes.

    They are the hashes at tree level ``8 * level``, positions
    ``index * 256`` to ``index * 256 + width - 1`` (Go's ``ReadTileData``).
    """
    _check_tile(level, index, width)
    start = index << TILE_HEIGHT
    tree_level = level * TILE_HEIGHT
    indexes = [stored_hash_index(tree_level, start + i) for i in range(width)]
    return b"".join(_read(read_hashes, indexes))


# -- in-memory store ---------------------------------------------------------------


class MemoryHashStore:
    """The stored hashes of a tree, in a list: for tests and for verifying a whole log.

    ``append_record`` stores exactly what :func:`stored_hashes` would, in the
    same order, but keeps the hashes of the tree's complete right-edge
    subtrees at hand so that appending reads nothing (about two SHA-256 per
    record); ``read_hashes`` is a valid :data:`ReadHashes`.
    """

    __slots__ = ("_frontier", "_hashes")

    def __init__(self, records: Iterable[bytes] = ()) -> None:
        self._hashes: list[bytes] = []
        self._frontier = Frontier()
        for data in records:
            self.append_record(data)

    @property
    def size(self) -> int:
        """The number of records."""
        return self._frontier.count

    def append_record(self, data: bytes) -> tuple[int, bytes]:
        """Append a record; return its index and leaf hash."""
        return self.append_record_hash(leaf_hash(data))

    def append_record_hash(self, leaf: bytes) -> tuple[int, bytes]:
        """Append a record by its leaf hash; return its index and the leaf hash."""
        if len(leaf) != HASH_SIZE:
            raise ValueError(f"a leaf hash is {HASH_SIZE} bytes, not {len(leaf)}")
        n = self._frontier.count
        self._hashes.extend(self._frontier.append(leaf))
        return n, leaf

    def read_hashes(self, indexes: Sequence[int]) -> list[bytes]:
        """The stored hashes at ``indexes`` (raises ProofError for one not stored)."""
        hashes = self._hashes
        count = len(hashes)
        out: list[bytes] = []
        for i in indexes:
            if not 0 <= i < count:
                raise ProofError(
                    f"stored hash {i} does not exist in a tree of {self._frontier.count} records",
                    reason="audit_hash_store_invalid",
                )
            out.append(hashes[i])
        return out

    def root(self, size: int | None = None) -> bytes:
        """The root of the whole tree, or of its first ``size`` records."""
        count = self._frontier.count
        if size is not None and size != count:
            if not 0 <= size <= count:
                raise ValueError(f"no tree of size {size} in a log of {count} records")
            return tree_hash(size, self.read_hashes)
        return self._frontier.root()
