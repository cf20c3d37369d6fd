from __future__ import annotations

import random

import pytest

from fedcredit.errors import InvalidRequestError
from mpc.psi import (
    PsiKey,
    hash_to_u,
    receiver_cardinality,
    receiver_intersect,
    receiver_request,
    sender_response,
)

pytestmark = pytest.mark.unit


def _sets(seed: int) -> tuple[list[str], list[str], set[str]]:
    rng = random.Random(seed)
    shared = [f"shared-{i}" for i in range(40)]
    mine = shared + [f"guest-{i}" for i in range(25)]
    theirs = shared + [f"host-{i}" for i in range(60)]
    rng.shuffle(mine)
    rng.shuffle(theirs)
    return mine, theirs, set(shared)


def test_the_receiver_learns_exactly_the_intersection_and_where_it_sits() -> None:
    mine, theirs, shared = _sets(1)
    receiver, sender = PsiKey.generate(), PsiKey.generate()
    request = receiver_request(receiver, mine)
    response = sender_response(sender, request.masked, theirs)
    found = receiver_intersect(receiver, request, response.double_masked,
                               response.sender_masked)
    assert {mine[r] for r in found.receiver_rows} == shared
    # the position in the sender's shuffled list maps back to the same subject at the sender
    for row, pos in zip(found.receiver_rows, found.sender_positions, strict=True):
        assert theirs[response.sender_order[pos]] == mine[row]


def test_cardinality_mode_reveals_the_count_only() -> None:
    mine, theirs, shared = _sets(2)
    receiver, sender = PsiKey.generate(), PsiKey.generate()
    request = receiver_request(receiver, mine)
    response = sender_response(sender, request.masked, theirs, cardinality_only=True)
    assert receiver_cardinality(receiver, response.double_masked,
                                response.sender_masked) == len(shared)
    # shuffled: the doubly masked list no longer lines up with the request
    aligned = receiver_intersect(receiver, request, response.double_masked,
                                 response.sender_masked)
    assert {mine[r] for r in aligned.receiver_rows} != shared


def test_nothing_sent_is_the_identifier_or_its_plain_hash() -> None:
    mine, theirs, _ = _sets(3)
    receiver, sender = PsiKey.generate(), PsiKey.generate()
    request = receiver_request(receiver, mine)
    response = sender_response(sender, request.masked, theirs)
    wire = b"".join([*request.masked, *response.double_masked, *response.sender_masked])
    for ident in mine + theirs:
        assert ident.encode() not in wire
        assert hash_to_u(ident) not in wire


def test_masking_commutes_and_sessions_do_not_link() -> None:
    a, b, c = PsiKey.generate(), PsiKey.generate(), PsiKey.generate()
    u = hash_to_u("subject-1")
    assert a.mask(b.mask(u)) == b.mask(a.mask(u))
    assert a.mask(u) != c.mask(u)  # a new session key gives unrelated points


def test_known_answer_with_fixed_keys() -> None:
    a = PsiKey.from_bytes(bytes(range(32)))
    b = PsiKey.from_bytes(bytes(range(32, 64)))
    u = hash_to_u("subject-1")
    assert a.mask(b.mask(u)) == b.mask(a.mask(u))
    assert len(a.mask(u)) == 32 and a.mask(u) == a.mask(u)


def test_malformed_elements_are_refused() -> None:
    key = PsiKey.generate()
    with pytest.raises(InvalidRequestError):
        key.mask(b"short")
    with pytest.raises(InvalidRequestError):
        key.mask(bytes(32))  # the identity / a low-order point
    request = receiver_request(key, ["a", "b"])
    with pytest.raises(InvalidRequestError):
        receiver_intersect(key, request, [request.masked[0]], [])


def test_the_training_order_finds_the_same_intersection() -> None:
    """The host's own set first (before it sees the request), the request masked again after:
    the halves training runs concurrently give exactly the one-shot result."""
    from mpc.psi import receiver_index, receiver_match, sender_double, sender_set

    mine, theirs, shared = _sets(3)
    receiver, sender = PsiKey.generate(), PsiKey.generate()
    own = sender_set(sender, theirs)
    request = receiver_request(receiver, mine)
    index = receiver_index(receiver, own.masked)
    found = receiver_match(request, sender_double(sender, request.masked), index)
    assert {mine[r] for r in found.receiver_rows} == shared
    for row, pos in zip(found.receiver_rows, found.sender_positions, strict=True):
        assert theirs[own.order[pos]] == mine[row]
    shuffled = sender_double(sender, request.masked, cardinality_only=True)
    assert sorted(shuffled) == sorted(sender_double(sender, request.masked))
    assert sum(1 for d in shuffled if d in index) == len(shared)
    with pytest.raises(InvalidRequestError):
        receiver_match(request, shuffled[:-1], index)
