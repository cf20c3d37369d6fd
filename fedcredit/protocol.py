"""Domain types of the evaluation protocol, shared by nodes and the coordinator.

These are what the code works with; :mod:`fedcredit.serde` converts them to and from the
protobuf messages in ``proto/v1`` at the edges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from fedcredit.errors import ConsentError, ErrorCode
from mpc.paillier import PaillierPublicKey


class RouteMode(StrEnum):
    CHAIN = "CHAIN"
    TREE = "TREE"


class Purpose(StrEnum):
    """Why a lender asks; carried in the consent and checked by every node on the route."""

    ORIGINATION = "origination"
    ACCOUNT_REVIEW = "account_review"
    COLLECTIONS = "collections"

    @classmethod
    def parse(cls, text: str) -> Purpose:
        """The purpose named by a peer, or a typed error (it is policy, not syntax)."""
        try:
            return cls(text)
        except ValueError:
            raise ConsentError(
                f"unknown purpose {text!r}", code=ErrorCode.CONSENT_PURPOSE_NOT_ALLOWED
            ) from None


@dataclass(frozen=True)
class Hop:
    member_id: str
    endpoint: str
    children: tuple[Hop, ...] = ()


def budget_units(hops_left: int) -> int:
    """Hop-timeout units a call covering ``hops_left`` hops may take: f(0)=0, f(1)=1,
    f(m) = 1 + f(m-1) + f(m-2).

    A CHAIN call to hop i returns only after every later hop did, so a hop that hangs eats its
    caller's whole wait. Sizing each budget like this leaves every callee room to wait out one
    hanging successor (f(m-1)) and still run the rest of the route after it (f(m-2)).
    Growth is Fibonacci-like (1, 2, 4, 7, 12, 20, ...); the coordinator caps plan lifetimes
    (``max_plan_ttl_ms``), and every budget is capped by the plan's expiry, so long chains lose
    this guarantee first. Large alliances are what TREE mode is for.
    """
    previous, current = 0, 0
    for step in range(1, hops_left + 1):
        previous, current = current, (1 if step == 1 else 1 + current + previous)
    return current


@dataclass(frozen=True)
class FallbackPolicy:
    skip_unreachable: bool = True
    hop_timeout_ms: int = 3000
    min_answered: int = 2

    def call_budget_ms(self, hops_left: int) -> int:
        return self.hop_timeout_ms * budget_units(hops_left)

    def route_lifetime_ms(self, hops: int) -> int:
        """What a plan over ``hops`` needs: the requester, too, may wait out a hung first hop
        (one more budget level), plus a second to decrypt, score and answer."""
        return self.call_budget_ms(hops + 1) + 1_000

    def tree_call_budget_ms(self, height: int) -> int:
        """A TREE call to a hop whose subtree is ``height`` levels deep: one hop timeout per
        level, since each level calls its children in parallel (a hung child costs its
        parent that child's budget, not the sum of everyone's)."""
        return self.hop_timeout_ms * height

    def tree_lifetime_ms(self, height: int) -> int:
        """What a TREE plan of ``height`` levels needs, with a second to decrypt and answer."""
        return self.tree_call_budget_ms(height) + 1_000


@dataclass(frozen=True)
class TreePosition:
    """One hop of a TREE route, addressed by its preorder index (``ContributeRequest.hop_index``).
    """

    hop: Hop
    #: Preorder index of the parent; ``None`` for the root, whom the requester calls.
    parent: int | None
    #: Preorder indices of the children, in plan order.
    children: tuple[int, ...]
    #: Levels in this hop's subtree: 1 for a leaf.
    height: int
    #: Every member of the subtree, this hop first (preorder).
    members: tuple[str, ...]


def tree_positions(route: tuple[Hop, ...]) -> tuple[TreePosition, ...]:
    """The hops of a TREE route in preorder, with their parents, children and heights."""
    out: list[TreePosition] = []

    def visit(hop: Hop, parent: int | None) -> int:
        index = len(out)
        out.append(TreePosition(hop, parent, (), 1, ()))  # replaced once the subtree is known
        children = tuple(visit(child, index) for child in hop.children)
        height = 1 + max((out[c].height for c in children), default=0)
        members = (hop.member_id, *(m for c in children for m in out[c].members))
        out[index] = TreePosition(hop, parent, children, height, members)
        return index

    for root in route:
        visit(root, None)
    return tuple(out)


@dataclass(frozen=True)
class Plan:
    query_id: str
    requester_id: str
    requester_key: PaillierPublicKey
    mode: RouteMode
    route: tuple[Hop, ...]
    issued_unix_ms: int
    expires_unix_ms: int
    model_version: str
    fallback: FallbackPolicy
    purpose: Purpose
    #: The coordinator's directory version when it planned; older views refresh first.
    directory_version: int = 0
    requires_existing_customer: bool = False
    #: Set for a portfolio re-scoring job, ``None`` for a joint evaluation.
    batch: BatchTerms | None = None


@dataclass(frozen=True)
class BatchTerms:
    """What a portfolio plan covers: so many subjects in so many chunks, under the requester's
    TenSEAL public key with this SHA-256 (:mod:`mpc.batch_he`)."""

    subjects: int
    chunks: int
    key_sha256: bytes = field(repr=False)
    #: Subjects per chunk; the last chunk holds the rest.
    chunk_subjects: int = 4096

    def __post_init__(self) -> None:
        if not 1 <= self.chunk_subjects <= 4096 or self.subjects < 1 or (
            self.chunks != -(-self.subjects // self.chunk_subjects)
        ) or len(self.key_sha256) != 32:
            raise ValueError("batch terms: 1 to 4,096 subjects per chunk, as many chunks as "
                             "the subjects fill, and a 32-byte key digest")

    def chunk_size(self, index: int) -> int:
        """Subjects in chunk ``index``."""
        return min(self.chunk_subjects, self.subjects - index * self.chunk_subjects)


@dataclass(frozen=True)
class SignedPlan:
    """The plan exactly as signed: nodes parse ``body`` only after the signature verified."""

    body: bytes = field(repr=False)
    signature: bytes = field(repr=False)
    key_id: str


class Relationship(StrEnum):
    """The requester's relationship with the applicant, attested in its signed consent."""

    APPLICANT = "applicant"
    EXISTING_CUSTOMER = "existing_customer"


@dataclass(frozen=True)
class ConsentTerms:
    """The applicant's consent as the lender presents it to its own node."""

    purpose: Purpose
    expires_unix_ms: int
    reference: str = ""
    relationship: Relationship = Relationship.APPLICANT

    def check(self, now_ms: int, allowed: frozenset[Purpose] | None = None) -> None:
        check_consent_window(self.purpose, self.expires_unix_ms, now_ms, allowed)


def check_consent_window(purpose: Purpose, expires_unix_ms: int, now_ms: int,
                         allowed: frozenset[Purpose] | None) -> None:
    if now_ms >= expires_unix_ms:
        raise ConsentError("the applicant's consent has expired", code=ErrorCode.CONSENT_EXPIRED)
    if allowed is not None and purpose not in allowed:
        raise ConsentError(
            f"purpose {purpose.value} is not allowed", code=ErrorCode.CONSENT_PURPOSE_NOT_ALLOWED
        )


@dataclass(frozen=True)
class Consent:
    """The consent record a requester signs for one inquiry (one plan, one subject)."""

    query_id: str
    subject_pseudonym: bytes = field(repr=False)
    requester_id: str
    purpose: Purpose
    issued_unix_ms: int
    expires_unix_ms: int
    #: SHA-256 of the lender's consent reference: the reference itself stays at the lender.
    reference_digest: bytes
    relationship: Relationship


@dataclass(frozen=True)
class SignedConsent:
    """The consent exactly as signed: nodes parse ``body`` only after the signature verified."""

    body: bytes = field(repr=False)
    signature: bytes = field(repr=False)
    key_id: str


@dataclass(frozen=True)
class HopOutcome:
    member_id: str
    answered: bool
    error_code: str = ""


def describe_skips(outcomes: tuple[HopOutcome, ...] | list[HopOutcome]) -> str:
    """``"shop NODE_UNAVAILABLE, telco PLAN_EXPIRED"``: for error details and logs."""
    return ", ".join(f"{o.member_id} {o.error_code}" for o in outcomes if not o.answered)


@dataclass(frozen=True)
class Coverage:
    asked: int
    answered: int
    skipped: tuple[HopOutcome, ...]

    @classmethod
    def from_outcomes(cls, outcomes: tuple[HopOutcome, ...]) -> Coverage:
        return cls(
            asked=len(outcomes),
            answered=sum(1 for o in outcomes if o.answered),
            skipped=tuple(o for o in outcomes if not o.answered),
        )
