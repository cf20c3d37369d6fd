"""Primitive: RFC 6962 Merkle trees over SHA-256 — tree hash, proofs, and their verification.

The audit ledger is a Certificate-Transparency-style log: each entry is a leaf, the coordinator
signs the root for every size it reaches, and anybody holding an old signed root can demand
proof that the log only grew (consistency) and that a given entry is still in it (inclusion).
Hashing is RFC 6962's, domain-separated so a leaf can never pose as an interior node (the
second-preimage attack on naive Merkle trees)::

    leaf  = SHA-256(0x00 || data)
    node  = SHA-256(0x01 || left || right)
    empty = SHA-256("")

Proof *generation* never sees leaves: it asks a ``subtree_hash(start, end)`` callback for the
hash of the RFC subtree over leaves ``[start, end)``, so storage can answer from a table of
complete ("perfect") subtrees and a proof at a million entries reads ~40 rows, not a million
(:func:`subtree_from_nodes` builds that callback from a ``(level, index) -> hash`` lookup).
*Verification* follows RFC 9162 §2.1.3.2 and §2.1.4.2 and answers only ``True``/``False``:
a forged proof learns nothing about why it failed.

:class:`Frontier` is what appending needs: the perfect subtrees along the right edge of the
tree (one per set bit of the size), enough to add a leaf and to compute the root.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

HASH_SIZE = 32
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()

#: ``subtree_hash(start, end)``: the Merkle Tree Hash of leaves ``[start, end)``.
SubtreeHash = Callable[[int, int], bytes]
#: ``node(level, index)``: the hash of the perfect subtree over leaves
#: ``[index * 2**level, (index + 1) * 2**level)``; level 0 is a leaf hash.
NodeLookup = Callable[[int, int], bytes]


class PerfectNode(NamedTuple):
    """A complete subtree of ``2**level`` leaves, the ``position``-th of its level (covering
    leaves ``[position * 2**level, (position + 1) * 2**level)``)."""

    level: int
    position: int
    hash: bytes


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def split_point(size: int) -> int:
    """RFC 6962's ``k``: the largest power of two strictly smaller than ``size`` (> 1)."""
    if size < 2:
        raise ValueError("a tree of fewer than 2 leaves has no split")
    return 1 << ((size - 1).bit_length() - 1)


def root_from_leaves(leaf_hashes: Sequence[bytes]) -> bytes:
    """The Merkle Tree Hash of a whole list of leaf hashes (O(n): tests, baselines, rebuilds)."""
    frontier = Frontier.empty()
    for leaf in leaf_hashes:
        frontier, _ = frontier.append(leaf)
    return frontier.root()


# -- the right edge ------------------------------------------------------------------------


def frontier_coordinates(size: int) -> tuple[tuple[int, int], ...]:
    """``(level, index)`` of the perfect subtrees covering ``[0, size)``, left to right."""
    if size < 0:
        raise ValueError("size must be >= 0")
    coordinates = []
    start = 0
    for level in range(size.bit_length() - 1, -1, -1):
        if (size >> level) & 1:
            coordinates.append((level, start >> level))
            start += 1 << level
    return tuple(coordinates)


@dataclass(frozen=True)
class Frontier:
    """The right edge of a tree of ``size`` leaves: one perfect-subtree hash per set bit.

    ``hashes[i]`` belongs to ``frontier_coordinates(size)[i]`` (largest subtree first).
    """

    size: int
    hashes: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if self.size < 0 or len(self.hashes) != self.size.bit_count():
            raise ValueError("a frontier has one hash per set bit of its size")

    @classmethod
    def empty(cls) -> Frontier:
        return cls(0, ())

    def append(self, leaf: bytes) -> tuple[Frontier, tuple[PerfectNode, ...]]:
        """The frontier after one more leaf, and the perfect subtrees that leaf completed
        (the leaf itself first, then each parent it closed, lowest level first)."""
        hashes = list(self.hashes)
        created = [PerfectNode(0, self.size, leaf)]
        current, level, size = leaf, 0, self.size
        while (size >> level) & 1:  # the leaf closes the subtree to its left: merge upwards
            current = node_hash(hashes.pop(), current)
            level += 1
            created.append(PerfectNode(level, ((self.size + 1) >> level) - 1, current))
        hashes.append(current)
        return Frontier(self.size + 1, tuple(hashes)), tuple(created)

    def extend(self, leaves: Iterable[bytes]) -> tuple[Frontier, list[PerfectNode]]:
        """:meth:`append` for many leaves, without a frozen copy per leaf (bulk appends)."""
        hashes = list(self.hashes)
        size = self.size
        created: list[PerfectNode] = []
        for leaf in leaves:
            created.append(PerfectNode(0, size, leaf))
            current, level = leaf, 0
            while (size >> level) & 1:
                current = node_hash(hashes.pop(), current)
                level += 1
                created.append(PerfectNode(level, ((size + 1) >> level) - 1, current))
            hashes.append(current)
            size += 1
        return Frontier(size, tuple(hashes)), created

    def root(self) -> bytes:
        """The Merkle Tree Hash: fold the edge right to left (smaller subtrees hang right)."""
        if not self.hashes:
            return EMPTY_ROOT
        root = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            root = node_hash(left, root)
        return root


# -- proof generation ------------------------------------------------------------------------


def subtree_from_nodes(node: NodeLookup) -> SubtreeHash:
    """A ``subtree_hash`` answered from stored perfect subtrees.

    Only RFC subtrees are asked for (``start`` aligned to the largest power of two below the
    width), and each is the fold of at most log2(n) perfect subtrees — never a leaf scan.
    """

    def subtree_hash(start: int, end: int) -> bytes:
        width = end - start
        if width <= 0:
            raise ValueError("empty subtree")
        if width & (width - 1) == 0:
            level = width.bit_length() - 1
            if start & (width - 1):
                raise ValueError("unaligned subtree")
            return node(level, start >> level)
        k = split_point(width)
        if start & (k - 1):
            raise ValueError("unaligned subtree")
        return node_hash(subtree_hash(start, start + k), subtree_hash(start + k, end))

    return subtree_hash


def inclusion_path(index: int, size: int, subtree_hash: SubtreeHash) -> tuple[bytes, ...]:
    """RFC 6962 ``PATH(index, D[0:size])``: sibling hashes from the leaf up to the root.

    Walked bottom-up: at each level the sibling of the leaf's ancestor is the subtree
    ``[sibling << level, min((sibling + 1) << level, size))``, perfect except on the right
    edge; where the sibling would start past the end, the RFC tree has no node there (the
    ancestor was promoted) and the level contributes nothing.
    """
    if not 0 <= index < size:
        raise ValueError("index outside the tree")
    path: list[bytes] = []
    for level in range((size - 1).bit_length()):
        start = ((index >> level) ^ 1) << level
        if start < size:
            path.append(subtree_hash(start, min(start + (1 << level), size)))
    return tuple(path)


def consistency_path(
    old_size: int, new_size: int, subtree_hash: SubtreeHash
) -> tuple[bytes, ...]:
    """RFC 6962 ``PROOF(old_size, D[0:new_size])``; empty when the sizes are equal."""
    if not 0 < old_size <= new_size:
        raise ValueError("need 0 < old_size <= new_size")
    path: list[bytes] = []
    start, end, m = 0, new_size, old_size
    whole = True  # SUBPROOF's b: the old tree is the whole left subtree so far
    while m != end - start:
        k = split_point(end - start)
        if m <= k:
            path.append(subtree_hash(start + k, end))
            end = start + k
        else:
            path.append(subtree_hash(start, start + k))
            start += k
            m -= k
            whole = False
    if not whole:
        path.append(subtree_hash(start, end))
    path.reverse()
    return tuple(path)


# -- verification (RFC 9162) -----------------------------------------------------------------


def _well_formed(proof: Sequence[bytes]) -> bool:
    return all(isinstance(p, bytes) and len(p) == HASH_SIZE for p in proof)


def root_from_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes | None:
    """The root an inclusion proof implies, or None when the proof cannot be well formed."""
    if not 0 <= index < size or not _well_formed(proof) or len(leaf) != HASH_SIZE:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2: is the leaf hash at ``index`` in the tree of ``size`` with ``root``?"""
    computed = root_from_inclusion(leaf, index, size, proof)
    return computed is not None and hmac.compare_digest(computed, root)


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2: is the tree of ``old_size`` a prefix of the tree of ``new_size``?"""
    if not _well_formed(proof) or not 0 <= old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and hmac.compare_digest(old_root, new_root)
    if old_size == 0:  # every tree extends the empty one
        return not proof and hmac.compare_digest(old_root, EMPTY_ROOT)
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return (
        sn == 0 and hmac.compare_digest(fr, old_root) and hmac.compare_digest(sr, new_root)
    )


def inclusion_proofs(leaf_hashes: Sequence[bytes]) -> list[tuple[bytes, ...]]:
    """Every leaf's inclusion path in the tree of these leaves (a tree small enough to hold in
    memory: a portfolio job's chunks)."""
    levels = [list(leaf_hashes)]
    while len(levels[-1]) > 1:
        below = levels[-1]
        levels.append([node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)])
    subtree = subtree_from_nodes(lambda level, index: levels[level][index])
    return [inclusion_path(i, len(leaf_hashes), subtree) for i in range(len(leaf_hashes))]
