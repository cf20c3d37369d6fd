"""``/v1/ledger``: the audit ledger's signed heads, entries and proofs.

Who reads what (docs/security.md, "Roles and permissions"): entries are the regulator's — the
whole log, as the alliance agreement gives it. Heads and consistency proofs are hashes only and
say nothing about any entry, so every role may fetch them (an admin monitors that the log only
grows; a judicial reader checks the head its case entries are proved against). An inclusion
proof carries an entry's leaf hash, derived from its content: only roles that read entries
wholesale, or run the log, get one by index; judicial readers get theirs with their case.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from coordinator.api.deps import AdminOrRegulator, Anyone, Context, Regulator
from coordinator.api.schemas import (
    AUTH_ERRORS,
    ConsistencyProofOut,
    InclusionProofOut,
    LedgerPageOut,
    TreeHeadOut,
    entry_out,
    error_responses,
    head_out,
)
from coordinator.ledger import MAX_PAGE
from fedcredit.audit import EntryKind
from fedcredit.errors import ErrorCode

router = APIRouter(prefix="/v1/ledger", tags=["ledger"])
DEFAULT_PAGE = 1_000
RANGE_ERRORS = (*AUTH_ERRORS, ErrorCode.INVALID_REQUEST, ErrorCode.LEDGER_RANGE_INVALID)


@router.get("/head", response_model=TreeHeadOut, summary="The latest signed tree head",
            description="Or the head signed when the log reached `size`.",
            responses=error_responses(*RANGE_ERRORS))
def get_head(_: Anyone, ctx: Context,
             size: Annotated[int | None, Query(ge=1)] = None) -> TreeHeadOut:
    return head_out(ctx.ledger.tree_head(size))


@router.get(
    "/entries", response_model=LedgerPageOut, summary="A range of entries, filtered",
    description=f"Indices `start <= i < end`, at most {MAX_PAGE} per call (default "
                f"{DEFAULT_PAGE}); page on with the returned `end`.",
    responses=error_responses(*RANGE_ERRORS),
)
def get_entries(
    _: Regulator, ctx: Context,
    start: Annotated[int, Query(ge=0)] = 0,
    end: Annotated[int | None, Query(ge=0, description="Exclusive; default: a page on.")] = None,
    kind: Annotated[list[EntryKind] | None, Query(description="Repeat for several.")] = None,
    actor: Annotated[str | None, Query(max_length=256)] = None,
    query_id: Annotated[str | None, Query(max_length=64)] = None,
) -> LedgerPageOut:
    size = ctx.ledger.size()
    stop = min(size, start + DEFAULT_PAGE) if end is None else end
    entries = ctx.ledger.entries(start, stop, kinds=kind, actor=actor, query_id=query_id)
    return LedgerPageOut(start=start, end=stop, size=size,
                         entries=[entry_out(e) for e in entries])


@router.get("/proofs/inclusion", response_model=InclusionProofOut,
            summary="Prove entry `index` is in the tree of `size` (default: the latest)",
            responses=error_responses(*RANGE_ERRORS))
def get_inclusion_proof(
    _: AdminOrRegulator, ctx: Context,
    index: Annotated[int, Query(ge=0)],
    size: Annotated[int | None, Query(ge=1)] = None,
) -> InclusionProofOut:
    head = ctx.ledger.tree_head(size)
    proof = ctx.ledger.inclusion_proof(index, head.size)
    return InclusionProofOut(index=proof.index, size=proof.size,
                             leaf_hash=ctx.ledger.entry(index).leaf_hash.hex(),
                             hashes=[h.hex() for h in proof.hashes], tree_head=head_out(head))


@router.get("/proofs/consistency", response_model=ConsistencyProofOut,
            summary="Prove the tree of `new_size` extends the tree of `old_size`",
            responses=error_responses(*RANGE_ERRORS))
def get_consistency_proof(
    _: Anyone, ctx: Context,
    old_size: Annotated[int, Query(ge=1)],
    new_size: Annotated[int | None, Query(ge=1, description="Default: the latest.")] = None,
) -> ConsistencyProofOut:
    new_head = ctx.ledger.tree_head(new_size)
    proof = ctx.ledger.consistency_proof(old_size, new_head.size)
    return ConsistencyProofOut(old_size=proof.old_size, new_size=proof.new_size,
                               hashes=[h.hex() for h in proof.hashes],
                               old_head=head_out(ctx.ledger.tree_head(old_size)),
                               new_head=head_out(new_head))
