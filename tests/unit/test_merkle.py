"""RFC 6962 Merkle trees: CT known answers, a literal transcription of the RFC, and properties."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc.merkle import (
    EMPTY_ROOT,
    Frontier,
    PerfectNode,
    SubtreeHash,
    consistency_path,
    frontier_coordinates,
    inclusion_path,
    leaf_hash,
    node_hash,
    root_from_leaves,
    subtree_from_nodes,
    verify_consistency,
    verify_inclusion,
)

pytestmark = pytest.mark.unit

# The certificate-transparency reference tree (merkle_tree_test / merkletree tests): eight
# leaves and the root of every prefix.
CT_LEAVES = [b"", b"\x00", b"\x10", b"\x20\x21", b"\x30\x31", b"\x40\x41\x42\x43",
             bytes(range(0x50, 0x58)), bytes(range(0x60, 0x70))]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_INCLUSION = {  # (leaf index, tree size) -> audit path
    (0, 8): ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
             "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
    (5, 8): ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
             "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
             "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
    (2, 3): ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    (1, 5): ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
             "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"],
}
CT_CONSISTENCY = {  # (old size, new size) -> proof
    (1, 8): ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
             "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
    (6, 8): ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
             "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
             "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
    (2, 5): ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"],
}


# -- RFC 6962 §2.1, transcribed literally over the leaves (the reference) -------------------


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(data: list[bytes]) -> bytes:
    if not data:
        return hashlib.sha256(b"").digest()
    if len(data) == 1:
        return hashlib.sha256(b"\x00" + data[0]).digest()
    k = _k(len(data))
    return hashlib.sha256(b"\x01" + ref_mth(data[:k]) + ref_mth(data[k:])).digest()


def ref_path(m: int, data: list[bytes]) -> list[bytes]:
    if len(data) == 1:
        return []
    k = _k(len(data))
    if m < k:
        return [*ref_path(m, data[:k]), ref_mth(data[k:])]
    return [*ref_path(m - k, data[k:]), ref_mth(data[:k])]


def ref_subproof(m: int, data: list[bytes], whole: bool) -> list[bytes]:
    n = len(data)
    if m == n:
        return [] if whole else [ref_mth(data)]
    k = _k(n)
    if m <= k:
        return [*ref_subproof(m, data[:k], whole), ref_mth(data[k:])]
    return [*ref_subproof(m - k, data[k:], False), ref_mth(data[:k])]


def stored_tree(data: list[bytes]) -> tuple[dict[tuple[int, int], bytes], Frontier]:
    """Every perfect subtree of the tree, as storage would keep them, built by appending."""
    nodes: dict[tuple[int, int], bytes] = {}
    frontier = Frontier.empty()
    for item in data:
        frontier, created = frontier.append(leaf_hash(item))
        for node in created:
            assert (node.level, node.position) not in nodes
            nodes[node.level, node.position] = node.hash
    return nodes, frontier


def lookup(nodes: dict[tuple[int, int], bytes]) -> SubtreeHash:
    return subtree_from_nodes(lambda level, position: nodes[level, position])


def leaves(n: int) -> list[bytes]:
    return [i.to_bytes(4, "big") * (i % 3) for i in range(n)]


# -- known answers ------------------------------------------------------------------------


def test_hashes_are_domain_separated_sha256() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    left, right = b"a" * 32, b"b" * 32
    assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    assert root_from_leaves([]) == EMPTY_ROOT


@pytest.mark.parametrize("size", range(1, 9))
def test_ct_reference_roots(size: int) -> None:
    hashes = [leaf_hash(x) for x in CT_LEAVES[:size]]
    assert root_from_leaves(hashes).hex() == CT_ROOTS[size - 1]
    assert stored_tree(CT_LEAVES[:size])[1].root().hex() == CT_ROOTS[size - 1]


@pytest.mark.parametrize(("index", "size"), sorted(CT_INCLUSION))
def test_ct_reference_inclusion_proofs(index: int, size: int) -> None:
    nodes, _ = stored_tree(CT_LEAVES)
    proof = inclusion_path(index, size, lookup(nodes))
    assert [p.hex() for p in proof] == CT_INCLUSION[index, size]
    root = bytes.fromhex(CT_ROOTS[size - 1])
    assert verify_inclusion(leaf_hash(CT_LEAVES[index]), index, size, proof, root)


@pytest.mark.parametrize(("old", "new"), sorted(CT_CONSISTENCY))
def test_ct_reference_consistency_proofs(old: int, new: int) -> None:
    nodes, _ = stored_tree(CT_LEAVES)
    proof = consistency_path(old, new, lookup(nodes))
    assert [p.hex() for p in proof] == CT_CONSISTENCY[old, new]
    old_root, new_root = bytes.fromhex(CT_ROOTS[old - 1]), bytes.fromhex(CT_ROOTS[new - 1])
    assert verify_consistency(old, new, old_root, new_root, proof)
    assert not verify_consistency(old, new, new_root, old_root, proof)


# -- every size and index up to 64 against the literal RFC ---------------------------------


def test_every_size_up_to_64_matches_the_rfc_definitions() -> None:
    data = leaves(64)
    nodes, _ = stored_tree(data)
    subtree = lookup(nodes)
    roots = [ref_mth(data[:n]) for n in range(65)]
    frontier = Frontier.empty()
    for n in range(1, 65):
        frontier, _ = frontier.append(leaf_hash(data[n - 1]))
        assert frontier.root() == roots[n]
        assert frontier.hashes == tuple(nodes[c] for c in frontier_coordinates(n))
        for m in range(n):
            proof = inclusion_path(m, n, subtree)
            assert list(proof) == ref_path(m, data[:n])
            assert verify_inclusion(leaf_hash(data[m]), m, n, proof, roots[n])
            assert not verify_inclusion(leaf_hash(data[m]), (m + 1) % n, n, proof, roots[n]) \
                or n == 1
            assert not verify_inclusion(leaf_hash(b"other"), m, n, proof, roots[n])
        for m in range(1, n + 1):
            proof = consistency_path(m, n, subtree)
            assert list(proof) == ref_subproof(m, data[:n], True)
            assert verify_consistency(m, n, roots[m], roots[n], proof)
            if m < n:
                assert not verify_consistency(m, n, roots[m - 1] if m > 1 else EMPTY_ROOT,
                                              roots[n], proof)
                assert not verify_consistency(m, n, roots[m], roots[n - 1], proof)


def test_append_reports_each_completed_subtree_once() -> None:
    frontier, created = Frontier.empty().extend(leaf_hash(x) for x in leaves(8))
    assert [(n.level, n.position) for n in created] == [
        (0, 0), (0, 1), (1, 0), (0, 2), (0, 3), (1, 1), (2, 0),
        (0, 4), (0, 5), (1, 2), (0, 6), (0, 7), (1, 3), (2, 1), (3, 0)]
    assert created[-1] == PerfectNode(3, 0, ref_mth(leaves(8)))
    assert frontier.hashes == (ref_mth(leaves(8)),)
    assert frontier_coordinates(13) == ((3, 0), (2, 2), (0, 12))


def test_subtrees_must_be_rfc_subtrees() -> None:
    nodes, _ = stored_tree(leaves(8))
    with pytest.raises(ValueError):
        lookup(nodes)(1, 3)
    with pytest.raises(ValueError):
        inclusion_path(8, 8, lookup(nodes))
    with pytest.raises(ValueError):
        consistency_path(0, 8, lookup(nodes))


# -- malformed proofs are refused, quietly ----------------------------------------------------


def test_malformed_proofs_are_false_not_errors() -> None:
    data = leaves(6)
    nodes, frontier = stored_tree(data)
    root = frontier.root()
    proof = inclusion_path(2, 6, lookup(nodes))
    leaf = leaf_hash(data[2])
    assert verify_inclusion(leaf, 2, 6, proof, root)
    assert not verify_inclusion(leaf, 2, 6, (*proof, proof[0]), root)  # too long
    assert not verify_inclusion(leaf, 2, 6, proof[:-1], root)  # too short
    assert not verify_inclusion(leaf, 2, 6, (proof[0][:31], *proof[1:]), root)
    assert not verify_inclusion(leaf, 6, 6, proof, root)
    assert not verify_inclusion(leaf, -1, 6, proof, root)
    assert not verify_inclusion(leaf, 2, 9, proof, root)  # a size the path cannot span
    cons = consistency_path(3, 6, lookup(nodes))
    old = ref_mth(data[:3])
    assert verify_consistency(3, 6, old, root, cons)
    assert not verify_consistency(3, 6, old, root, ())
    assert not verify_consistency(3, 6, old, root, (*cons, cons[0]))
    assert not verify_consistency(3, 6, old, root, cons[:-1])
    assert not verify_consistency(6, 3, root, old, cons)
    assert not verify_consistency(3, 3, old, old, cons)  # equal sizes take an empty proof
    assert verify_consistency(3, 3, old, old, ())
    assert not verify_consistency(3, 3, old, root, ())
    assert verify_consistency(0, 6, EMPTY_ROOT, root, ())


# -- properties at random sizes ---------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 3000), data=st.data())
def test_proofs_verify_and_bind_at_random_sizes(size: int, data: st.DataObject) -> None:
    items = [i.to_bytes(3, "big") for i in range(size)]
    nodes, frontier = stored_tree(items)
    root = frontier.root()
    index = data.draw(st.integers(0, size - 1))
    proof = inclusion_path(index, size, lookup(nodes))
    assert len(proof) <= size.bit_length()
    assert verify_inclusion(leaf_hash(items[index]), index, size, proof, root)
    if proof:  # flip one bit anywhere: refused
        at = data.draw(st.integers(0, len(proof) - 1))
        bad = bytearray(proof[at])
        bad[data.draw(st.integers(0, 31))] ^= 1 << data.draw(st.integers(0, 7))
        forged = (*proof[:at], bytes(bad), *proof[at + 1:])
        assert not verify_inclusion(leaf_hash(items[index]), index, size, forged, root)
    old = data.draw(st.integers(1, size))
    old_root = Frontier.empty().extend(leaf_hash(x) for x in items[:old])[0].root()
    cons = consistency_path(old, size, lookup(nodes))
    assert verify_consistency(old, size, old_root, root, cons)
    tampered = [*items[:old]]
    tampered[data.draw(st.integers(0, old - 1))] += b"!"
    forged_root = Frontier.empty().extend(leaf_hash(x) for x in tampered)[0].root()
    assert not verify_consistency(old, size, forged_root, root, cons)
