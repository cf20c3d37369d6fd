"""Request and response models of the admin API (separate from storage models).

Times are Unix milliseconds, as in the audit ledger whose entries they are compared with;
hashes and signatures are lowercase hex. The policy document is the one exception to
"separate models": :class:`PolicyDocument` *is* :class:`coordinator.policy.AlliancePolicy`
with examples, because the file an admin edits and the policy the coordinator enforces must
not drift apart field by field.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from coordinator.policy import AlliancePolicy
from coordinator.principals import Role
from fedcredit.audit import LedgerEntry, SignedTreeHead
from fedcredit.error_catalog import CATALOG
from fedcredit.errors import ErrorCode

FINGERPRINT_EXAMPLE = ("b1a9:2df0:8872:e33e:baf2:0cce:2a99:9069:dfed:7113:2a79:fbaa:cb15:547b:"
                       "da78:ab03")
HASH_EXAMPLE = "6d1f3a0e9c2b7d4f8a1e5c3b9d7f2a4c6e8b0d1f3a5c7e9b2d4f6a8c0e1b3d5f"
CERTIFICATE_EXAMPLE: dict[str, Any] = {
    "serial": "5c2f0e9a41d7b3e8a0c6f1d2b9e4a7c3", "issued_ms": 1795360000000,
    "not_after_ms": 1803136000000, "revoked_ms": None}
POLICY_EXAMPLE: dict[str, Any] = {
    "route_mode": "auto", "tree_min_members": 4, "tree_fanout": 8, "min_answered": 2,
    "hop_timeout_ms": 2000, "plan_ttl_ms": 20000,
    "max_plan_ttl_ms": 60000, "allowed_purposes": ["origination", "account_review", "collections"],
    "existing_customer_purposes": ["account_review", "collections"], "admission_quorum": 0,
    "member_certificate_days": 90}
HEAD_EXAMPLE: dict[str, Any] = {"size": 1024, "root": HASH_EXAMPLE, "timestamp_ms": 1795360210919,
                "key_id": "4dbaa9ff381011c0", "signature": "3045022100ed..."}
ENTRY_EXAMPLE: dict[str, Any] = {
    "index": 41, "created_ms": 1795360210919, "kind": "suspension",
    "actor": "admin:9c0e2b4d1a7f3e58", "query_id": None, "subject_tag": None,
    "body": {"member_id": "bank-c", "reason": "unpaid dues", "directory_version": 9},
    "leaf_hash": HASH_EXAMPLE}
GRANT_EXAMPLE: dict[str, Any] = {
    "grant_id": "0b7c9e2a-1f3d-4c5b-8a6e-9d2f4b1c7e3a", "case_id": "court-4:2026-118",
    "grantee": "3fa2c1d07b9e4a15", "granted_by": "regulator:71c2e9a4b0d3f658",
    "legal_basis": "court order 2026-118 of District Court 4",
    "query_ids": ["5f0c2a8e-8f7e-4a53-9b8f-2d8c1f6f3b7a"], "member_id": "bank-c",
    "since_ms": 1790000000000, "until_ms": 1795000000000, "created_ms": 1795360210919,
    "expires_ms": 1800000000000, "revoked_ms": None, "revoked_by": None, "active": True}


def _examples(*docs: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": list(docs)})


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable error code (see docs/security.md).")
    message: str
    detail: str


class ErrorOut(BaseModel):
    model_config = _examples({"error": {
        "code": "PERMISSION_DENIED", "message": "The caller's role does not permit this action.",
        "detail": "this action is for the admin role; you are regulator"}})
    error: ErrorDetail


def error_responses(*codes: ErrorCode) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses for ``codes``: one entry per HTTP status, naming every code in it."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in (*codes, ErrorCode.INTERNAL):
        item = CATALOG[code]
        slot = out.setdefault(item.http_status, {"model": ErrorOut, "description": ""})
        slot["description"] = (slot["description"] + f" {code.value}: {item.message}").strip()
    return out


#: Every authenticated route can fail these ways.
AUTH_ERRORS = (ErrorCode.UNKNOWN_API_KEY, ErrorCode.PERMISSION_DENIED)


class HealthOut(BaseModel):
    model_config = _examples({"status": "ok", "version": "0.1.0"})
    status: str = Field(examples=["ok"])
    version: str = Field(examples=["0.1.0"])


# -- principals ------------------------------------------------------------------------------
PRINCIPAL_EXAMPLE: dict[str, Any] = {
    "principal_id": "3fa2c1d07b9e4a15", "name": "Financial Supervisory Authority",
    "role": "regulator", "created_ms": 1795360210919, "created_by": "admin:9c0e2b4d1a7f3e58",
    "rotated_ms": None, "revoked_ms": None, "revoked_reason": "", "active": True}


class PrincipalOut(BaseModel):
    model_config = _examples(PRINCIPAL_EXAMPLE)
    principal_id: str
    name: str
    role: Role
    created_ms: int
    created_by: str = Field(description="Ledger actor of the admin who created it.")
    rotated_ms: int | None
    revoked_ms: int | None
    revoked_reason: str
    active: bool


class PrincipalCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"name": "District Court 4", "role": "judicial"}]})
    name: str = Field(min_length=1, max_length=64)
    role: Role


class PrincipalTokenOut(BaseModel):
    """The only response that carries a token: store it now, the coordinator keeps a hash."""

    model_config = _examples({"principal": PRINCIPAL_EXAMPLE,
                              "token": "fca_3fa2c1d07b9e4a15_q8W4m0...(43 characters)"})
    principal: PrincipalOut
    token: str = Field(description="`fca_<principal_id>_<secret>`; shown once.")


class ReasonIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"reason": "key material leaked in incident 2026-17"}]})
    reason: str = Field(min_length=1, max_length=200)


# -- join requests and members -----------------------------------------------------------------
class JoinRequestOut(BaseModel):
    model_config = _examples({
        "request_id": "29e48e2a-9348-4bbe-9881-da1cb6208361", "member_id": "bank-b",
        "display_name": "Bank B", "contact": "ops@bank-b.example",
        "fingerprint": FINGERPRINT_EXAMPLE, "state": "PENDING", "created_ms": 1795360210919,
        "approvals_required": 1, "admin_approved_by": None, "decided_ms": None, "reason": "",
        "approvals": [], "rejections": [], "certificate_pem": None})
    request_id: str
    member_id: str
    display_name: str
    contact: str
    fingerprint: str = Field(description="SHA-256 of the requested key; the applicant reads "
                                         "its own out of band before an admin approves.")
    state: str = Field(examples=["PENDING", "APPROVED", "REJECTED"])
    created_ms: int
    approvals_required: int = Field(description="Member votes needed besides an admin's.")
    admin_approved_by: str | None
    decided_ms: int | None
    reason: str
    approvals: list[str]
    rejections: list[str]
    certificate_pem: str | None = Field(description="The issued certificate once approved.")


class ApproveIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"fingerprint": FINGERPRINT_EXAMPLE}]})
    fingerprint: str = Field(min_length=16, max_length=128, description=(
        "The key fingerprint as the applicant read it to you out of band (colons optional)."))


class CertificateOut(BaseModel):
    model_config = _examples(CERTIFICATE_EXAMPLE)
    serial: str
    issued_ms: int
    not_after_ms: int
    revoked_ms: int | None


class MemberOut(BaseModel):
    model_config = _examples({
        "member_id": "bank-a", "display_name": "Bank A", "membership": "ACTIVE",
        "status": "ACTIVE", "endpoint": "10.0.0.5:50061", "last_heartbeat_ms": 1795360210919,
        "applied_version": 7, "latency_ms": 3.2, "certificates": [CERTIFICATE_EXAMPLE]})
    member_id: str
    display_name: str
    membership: str = Field(examples=["ACTIVE", "SUSPENDED", "REVOKED"])
    status: str = Field(description="Liveness: ACTIVE while heartbeats arrive, else STALE.")
    endpoint: str
    last_heartbeat_ms: int
    applied_version: int = Field(description="Directory version the member enforces.")
    latency_ms: float
    certificates: list[CertificateOut]


class DirectoryChangeOut(BaseModel):
    model_config = _examples({"directory_version": 8, "unconfirmed": ["bank-c"]})
    directory_version: int = Field(description="The directory version that carries the change.")
    unconfirmed: list[str] = Field(description=(
        "Online members that did not confirm enforcing it within propagation_timeout_ms "
        "(empty: every online member enforces it)."))


# -- policy ------------------------------------------------------------------------------------
class PolicyDocument(AlliancePolicy):
    model_config = ConfigDict(frozen=True, extra="forbid",
                              json_schema_extra={"examples": [POLICY_EXAMPLE]})


class PolicyOut(BaseModel):
    model_config = _examples({"version": 3, "policy": POLICY_EXAMPLE})
    version: int
    policy: PolicyDocument


class PolicyChangeOut(BaseModel):
    model_config = _examples({"version": 4, "previous_version": 3,
                              "changed": ["hop_timeout_ms"], "policy": POLICY_EXAMPLE})
    version: int = Field(description="The policy's version now (unchanged if nothing changed).")
    previous_version: int
    changed: list[str] = Field(description="Fields whose value changed.", examples=[
        ["hop_timeout_ms"]])
    policy: PolicyDocument


# -- models --------------------------------------------------------------------------------------
SLICE_EXAMPLE: dict[str, Any] = {"member_id": "bank-a", "role": "guest", "sha256": HASH_EXAMPLE,
                                 "features": ["utilization", "months_on_book"]}
MODEL_EXAMPLE: dict[str, Any] = {
    "version": "bank-a-2026-05", "requester_id": "bank-a", "engine": "paillier",
    "session_id": "0d9b6c1e-4f2a-4b8e-9c3d-7a1f5e2b8c40", "status": "active",
    "created_ms": 1795360210919, "registered_by": "coordinator",
    "promoted_ms": 1795363810919,
    "slices": [SLICE_EXAMPLE, {"member_id": "telco-b", "role": "host", "sha256": HASH_EXAMPLE,
                               "features": ["tenure_months", "late_bills_12m"]}],
    "metrics": {"auc": 0.781, "ks": 0.432, "auc_guest_only": 0.702, "rows": 24000,
                "epochs": 12},
    "fingerprints": {"bank-a": HASH_EXAMPLE, "telco-b": HASH_EXAMPLE}}


class SliceOut(BaseModel):
    model_config = _examples(SLICE_EXAMPLE)
    member_id: str
    role: str = Field(description="guest (the label holder, the requester) or host.")
    sha256: str = Field(description="SHA-256 of the member's slice file; the weights, bins "
                                    "and WOE stay with the member.")
    features: list[str]


class ModelOut(BaseModel):
    model_config = _examples(MODEL_EXAMPLE)
    version: str
    requester_id: str = Field(description="The guest: the only member that can request "
                                          "evaluations with this model.")
    engine: str
    session_id: str = Field(description="The training session that produced it.")
    status: str = Field(examples=["candidate", "active", "retired"])
    created_ms: int
    registered_by: str
    promoted_ms: int | None = Field(description="When it last became the active model.")
    slices: list[SliceOut]
    metrics: dict[str, float]
    fingerprints: dict[str, str] = Field(description="Member → SHA-256 of the training data "
                                                     "it used.")


# -- ledger --------------------------------------------------------------------------------------
class TreeHeadOut(BaseModel):
    model_config = _examples(HEAD_EXAMPLE)
    size: int
    root: str
    timestamp_ms: int
    key_id: str = Field(description="The coordinator signing key's id.")
    signature: str = Field(description="ECDSA P-256 over the RFC 6962-style tree head.")


class LedgerEntryOut(BaseModel):
    model_config = _examples(ENTRY_EXAMPLE)
    index: int
    created_ms: int
    kind: str
    actor: str
    query_id: str | None
    subject_tag: str | None
    body: dict[str, Any]
    leaf_hash: str


class LedgerPageOut(BaseModel):
    model_config = _examples({"start": 41, "end": 42, "size": 1024, "entries": [ENTRY_EXAMPLE]})
    start: int
    end: int = Field(description="Exclusive; continue from here.")
    size: int = Field(description="The ledger's size when read.")
    entries: list[LedgerEntryOut]


class InclusionProofOut(BaseModel):
    model_config = _examples({"index": 41, "size": 1024, "leaf_hash": HASH_EXAMPLE,
                              "hashes": [HASH_EXAMPLE], "tree_head": HEAD_EXAMPLE})
    index: int
    size: int
    leaf_hash: str
    hashes: list[str] = Field(description="RFC 9162 audit path, leaf to root.")
    tree_head: TreeHeadOut


class ConsistencyProofOut(BaseModel):
    model_config = _examples({"old_size": 1000, "new_size": 1024, "hashes": [HASH_EXAMPLE],
                              "old_head": HEAD_EXAMPLE | {"size": 1000},
                              "new_head": HEAD_EXAMPLE})
    old_size: int
    new_size: int
    hashes: list[str]
    old_head: TreeHeadOut
    new_head: TreeHeadOut


# -- grants and cases ----------------------------------------------------------------------------
class GrantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        k: GRANT_EXAMPLE[k] for k in ("case_id", "grantee", "legal_basis", "query_ids",
                                      "member_id", "since_ms", "until_ms", "expires_ms")}]})
    case_id: str = Field(min_length=1, max_length=64)
    grantee: str = Field(description="The judicial principal's id.", max_length=32)
    legal_basis: str = Field(min_length=1, max_length=200)
    query_ids: list[str] = Field(default=[], max_length=100)
    member_id: str | None = Field(default=None, max_length=64)
    since_ms: int | None = Field(default=None, ge=0)
    until_ms: int | None = Field(default=None, ge=0)
    expires_ms: int = Field(ge=0, description="Within 366 days.")


class GrantOut(BaseModel):
    model_config = _examples(GRANT_EXAMPLE)
    grant_id: str
    case_id: str
    grantee: str
    granted_by: str
    legal_basis: str
    query_ids: list[str]
    member_id: str | None
    since_ms: int | None
    until_ms: int | None
    created_ms: int
    expires_ms: int
    revoked_ms: int | None
    revoked_by: str | None
    active: bool


class CaseEntryOut(BaseModel):
    model_config = _examples({"entry": ENTRY_EXAMPLE, "inclusion": [HASH_EXAMPLE]})
    entry: LedgerEntryOut
    inclusion: list[str] = Field(description="Audit path to the read's tree head.")


class CaseReadOut(BaseModel):
    model_config = _examples({"case_id": "court-4:2026-118", "tree_head": HEAD_EXAMPLE,
                              "start": 0, "next_start": 1024, "complete": True,
                              "entries": [{"entry": ENTRY_EXAMPLE, "inclusion": [HASH_EXAMPLE]}]})
    case_id: str
    tree_head: TreeHeadOut
    start: int
    next_start: int = Field(description="Continue from here (the read scanned up to it).")
    complete: bool = Field(description="The read reached the tree head's size.")
    entries: list[CaseEntryOut]


# -- conversions shared by the ledger and case routes ----------------------------------------------
def head_out(head: SignedTreeHead) -> TreeHeadOut:
    return TreeHeadOut(size=head.size, root=head.root.hex(), timestamp_ms=head.timestamp_ms,
                       key_id=head.key_id, signature=head.signature.hex())


def entry_out(entry: LedgerEntry) -> LedgerEntryOut:
    return LedgerEntryOut(
        index=entry.index, created_ms=entry.created_ms, kind=entry.kind.value,
        actor=entry.actor, query_id=entry.query_id,
        subject_tag=None if entry.subject_tag is None else entry.subject_tag.hex(),
        body=dict(entry.body), leaf_hash=entry.leaf_hash.hex())
