"""``fedcredit admin``: the coordinator's admin API from a terminal.

Connection: ``--url`` / ``FEDCREDIT_ADMIN_URL`` and ``--ca-cert`` / ``FEDCREDIT_ADMIN_CA_CERT``
(the alliance CA file). The server must present the certificate the CA issued to the
coordinator, whatever host name the URL uses — the same check members make on gRPC. The token
comes from ``FEDCREDIT_ADMIN_TOKEN`` or ``--token-file``, never from an argument (arguments
end up in shell history and process listings). Failures print ``CODE: detail`` and exit 1.
Proofs the API returns are re-checked here (leaf hash recomputed from the entry, Merkle path
to the tree head's root), so a reader does not have to trust the transport alone.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table
from rich.text import Text

from fedcredit.admin_client import AdminClient
from fedcredit.admin_products_cli import products_group
from fedcredit.errors import ConfigurationError, ErrorCode, FedCreditError

admin_app = typer.Typer(help="Administer and audit the alliance (the coordinator's admin API).",
                        no_args_is_help=True)


def _group(name: str, text: str) -> typer.Typer:
    group = typer.Typer(help=text, no_args_is_help=True)
    admin_app.add_typer(group, name=name)
    return group


members_app = _group("members", "Members: approve, reject, suspend, reinstate, revoke.")
requests_app = _group("join-requests", "Pending and decided join requests.")
policy_app = _group("policy", "The alliance policy.")
principals_app = _group("principals", "Who may use the admin API, in which role.")
ledger_app = _group("ledger", "The audit ledger: heads, entries, proofs.")
grants_app = _group("grants", "Judicial access grants (regulators).")
cases_app = _group("cases", "A case's ledger entries (judicial authorities, regulators).")
models_app = _group("models", "Trained models: list, show, promote, roll back.")
console = Console(width=max(Console().width, 120))
err_console = Console(stderr=True)


@admin_app.callback()
def _connect(
    ctx: typer.Context,
    url: Annotated[str | None, typer.Option(envvar="FEDCREDIT_ADMIN_URL",
                                            help="The admin API, e.g. https://coord:8443")] = None,
    ca_cert: Annotated[Path | None, typer.Option(envvar="FEDCREDIT_ADMIN_CA_CERT",
                                                 help="The alliance CA certificate.")] = None,
    token_file: Annotated[Path | None, typer.Option(
        help="File holding your token (default: $FEDCREDIT_ADMIN_TOKEN).")] = None,
) -> None:
    ctx.obj = (url, ca_cert, token_file)  # subcommands' contexts inherit it


def _run(ctx: typer.Context, method: str, path: str, **kwargs: Any) -> Any:
    """One API call; a typed failure becomes ``CODE: detail`` on stderr and exit status 1."""
    url, ca_cert, token_file = ctx.obj
    try:
        return connect(url, ca_cert, token_file).call(method, path, **kwargs)
    except FedCreditError as exc:
        raise _fail(exc.code, exc.detail) from None


def connect(url: str | None, ca_cert: Path | None, token_file: Path | None) -> AdminClient:
    """The admin API client from the CLI's connection options (token: file or environment)."""
    if not url:
        raise ConfigurationError("--url (FEDCREDIT_ADMIN_URL) is required")
    token = os.environ.get("FEDCREDIT_ADMIN_TOKEN")
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            raise ConfigurationError(f"cannot read {token_file}: {exc.strerror}") from None
    return AdminClient(url, ca_cert, token)


def _fail(code: ErrorCode, detail: str) -> typer.Exit:
    err_console.print(Text.assemble((f"{code.value}:", "red"), " ", detail), soft_wrap=True)
    return typer.Exit(1)


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _cell(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if key.endswith("_ms") and isinstance(value, int):
        return _when(value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return "" if value is None else str(value)


def _table(rows: list[dict[str, Any]], columns: str, title: str | None = None) -> None:
    """``columns``: space-separated ``header=key`` pairs (``key`` alone: header = key)."""
    pairs = [c.partition("=")[::2] for c in columns.split()]
    table = Table(title=title)
    for header, _ in pairs:
        table.add_column(header.replace("_", " "))
    for row in rows:
        table.add_row(*(_cell(row, key or header) for header, key in pairs))
    console.print(table)


Reason = Annotated[str, typer.Option(help="Why (recorded in the audit ledger).")]
MEMBERS = ("member=member_id name=display_name membership status endpoint "
           "directory=applied_version last_heartbeat=last_heartbeat_ms")
REQUESTS = ("request=request_id member=member_id name=display_name state fingerprint "
            "votes_needed=approvals_required approvals filed=created_ms reason")
PRINCIPALS = ("principal=principal_id name role active created=created_ms by=created_by "
              "rotated=rotated_ms revoked=revoked_ms")
ENTRIES = "index time=created_ms kind actor query=query_id body"
GRANTS = ("grant=grant_id case=case_id grantee queries=query_ids member=member_id "
          "since=since_ms until=until_ms expires=expires_ms active legal_basis")
MODELS = ("version requester=requester_id status engine auc ks members registered=created_ms "
          "promoted=promoted_ms")


# -- members and join requests -------------------------------------------------------------------
@members_app.command("list")
def members_list(ctx: typer.Context) -> None:
    """Every member, its standing and liveness."""
    _table(_run(ctx, "GET", "/v1/members"), MEMBERS)


@members_app.command("show")
def members_show(ctx: typer.Context, member_id: str) -> None:
    """One member, with every certificate it was issued."""
    doc = _run(ctx, "GET", f"/v1/members/{member_id}")
    _table([doc], MEMBERS)
    _table(doc["certificates"], "certificate=serial issued=issued_ms expires=not_after_ms "
                                "revoked=revoked_ms")


@members_app.command("approve")
def members_approve(ctx: typer.Context, request_id: str, fingerprint: Annotated[
        str, typer.Option(help="The key fingerprint the applicant read to you.")]) -> None:
    """Approve a join request, quoting the key fingerprint the applicant read out of band."""
    _table([_run(ctx, "POST", f"/v1/join-requests/{request_id}/approve",
                 body={"fingerprint": fingerprint})], REQUESTS)


@members_app.command("reject")
def members_reject(ctx: typer.Context, request_id: str, reason: Reason) -> None:
    """Reject a join request."""
    _table([_run(ctx, "POST", f"/v1/join-requests/{request_id}/reject",
                 body={"reason": reason})], REQUESTS)


def _directory_change(doc: dict[str, Any], what: str) -> None:
    console.print(f"{what}; directory version {doc['directory_version']}")
    if doc["unconfirmed"]:
        console.print("[yellow]not yet enforced by:[/] " + ", ".join(doc["unconfirmed"]))
    else:
        console.print("every online member enforces it")


def _membership_command(action: str, done: str, help_text: str) -> None:
    @members_app.command(action, help=help_text)
    def change(ctx: typer.Context, member_id: str, reason: Reason) -> None:
        doc = _run(ctx, "POST", f"/v1/members/{member_id}/{action}", body={"reason": reason})
        _directory_change(doc, f"{member_id} {done}")


_membership_command("suspend", "suspended", "Suspend a member: it neither calls nor is called.")
_membership_command("reinstate", "reinstated", "Lift a suspension.")


@members_app.command("revoke")
def members_revoke(ctx: typer.Context, member_id: str, reason: Reason, certificate: Annotated[
        str | None, typer.Option(help="Only this certificate (a leaked key).")] = None) -> None:
    """Revoke a member and all its certificates (final), or just one certificate."""
    if certificate is None:
        doc = _run(ctx, "POST", f"/v1/members/{member_id}/revoke", body={"reason": reason})
        _directory_change(doc, f"{member_id} revoked")
        return
    member = _run(ctx, "GET", f"/v1/members/{member_id}")
    if certificate not in {c["serial"] for c in member["certificates"]}:
        raise _fail(ErrorCode.RESOURCE_NOT_FOUND, f"{member_id} holds no certificate "
                                                  f"{certificate}")
    doc = _run(ctx, "POST", f"/v1/certificates/{certificate}/revoke", body={"reason": reason})
    _directory_change(doc, f"certificate {certificate} of {member_id} revoked")


@requests_app.command("list")
def requests_list(ctx: typer.Context, state: Annotated[
        str | None, typer.Option(help="PENDING, APPROVED or REJECTED.")] = None) -> None:
    """Join requests, oldest first."""
    params = {"state": state.upper()} if state else None
    _table(_run(ctx, "GET", "/v1/join-requests", params=params), REQUESTS)


@requests_app.command("show")
def requests_show(ctx: typer.Context, request_id: str) -> None:
    """One join request."""
    _table([_run(ctx, "GET", f"/v1/join-requests/{request_id}")], REQUESTS + " contact")


# -- policy and principals -----------------------------------------------------------------------
@policy_app.command("show")
def policy_show(ctx: typer.Context) -> None:
    """The current policy and its version."""
    doc = _run(ctx, "GET", "/v1/policy")
    rows = [{"field": k, "value": _cell(doc["policy"], k)} for k in doc["policy"]]
    _table(rows, "field value", title=f"alliance policy, version {doc['version']}")


@policy_app.command("set")
def policy_set(ctx: typer.Context, file: Annotated[Path, typer.Argument(
        help="The whole policy, YAML or JSON.")], expected_version: Annotated[int | None, (
        typer.Option(help="Refuse if the policy is no longer at this version."))] = None) -> None:
    """Replace the policy (validated; the ledger records every changed field)."""
    try:
        doc = yaml.safe_load(file.read_text())
    except OSError as exc:
        raise _fail(ErrorCode.POLICY_INVALID, f"cannot read {file}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{file}:{mark.line + 1}" if mark is not None else str(file)
        raise _fail(ErrorCode.POLICY_INVALID,
                    f"{where}: not YAML or JSON ({getattr(exc, 'problem', exc)})") from None
    params = {"expected_version": expected_version} if expected_version else None
    result = _run(ctx, "PUT", "/v1/policy", body=doc, params=params)
    if result["changed"]:
        console.print(f"policy version {result['version']} (was {result['previous_version']});"
                      f" changed: {', '.join(result['changed'])}")
    else:
        console.print(f"no change; the policy stays at version {result['version']}")


def _print_token(doc: dict[str, Any]) -> None:
    _table([doc["principal"]], PRINCIPALS)
    console.print("token (shown once; the coordinator keeps only a hash):")
    console.print(doc["token"], highlight=False, soft_wrap=True)


@principals_app.command("list")
def principals_list(ctx: typer.Context) -> None:
    """Admins, regulators and judicial authorities."""
    _table(_run(ctx, "GET", "/v1/principals"), PRINCIPALS)


@principals_app.command("create")
def principals_create(ctx: typer.Context, name: str, role: Annotated[
        str, typer.Option(help="admin, regulator or judicial.")]) -> None:
    """Create a principal; prints its token once."""
    _print_token(_run(ctx, "POST", "/v1/principals", body={"name": name, "role": role}))


@principals_app.command("rotate")
def principals_rotate(ctx: typer.Context, principal_id: str) -> None:
    """Replace a principal's token (the old one stops working); prints the new one once."""
    _print_token(_run(ctx, "POST", f"/v1/principals/{principal_id}/rotate"))


@principals_app.command("revoke")
def principals_revoke(ctx: typer.Context, principal_id: str, reason: Reason) -> None:
    """Revoke a principal (final)."""
    _table([_run(ctx, "POST", f"/v1/principals/{principal_id}/revoke",
                 body={"reason": reason})], PRINCIPALS)


# -- the ledger, grants and cases ------------------------------------------------------------------
def _head_line(head: dict[str, Any]) -> str:
    return (f"tree size {head['size']}, root {head['root']}, signed {_when(head['timestamp_ms'])}"
            f" by key {head['key_id']}")


def _hashes(hexes: list[str]) -> list[bytes]:
    return [bytes.fromhex(h) for h in hexes]


def _proved(entry: dict[str, Any], inclusion: list[str], head: dict[str, Any]) -> bool:
    """Recompute the entry's leaf hash from its content; walk its path to the head's root."""
    from fedcredit.audit import EntryKind, entry_bytes
    from mpc.merkle import leaf_hash, verify_inclusion

    tag = entry["subject_tag"]
    leaf = leaf_hash(entry_bytes(
        index=entry["index"], created_ms=entry["created_ms"], kind=EntryKind(entry["kind"]),
        actor=entry["actor"], query_id=entry["query_id"],
        subject_tag=None if tag is None else bytes.fromhex(tag), body=entry["body"]))
    return leaf.hex() == entry["leaf_hash"] and verify_inclusion(
        leaf, entry["index"], head["size"], _hashes(inclusion), bytes.fromhex(head["root"]))


@ledger_app.command("head")
def ledger_head(ctx: typer.Context) -> None:
    """The latest signed tree head."""
    console.print(_head_line(_run(ctx, "GET", "/v1/ledger/head")), highlight=False)


@ledger_app.command("entries")
def ledger_entries(
    ctx: typer.Context,
    start: Annotated[int, typer.Option(help="First index.")] = 0,
    end: Annotated[int | None, typer.Option(help="Stop before this index.")] = None,
    kind: Annotated[list[str] | None, typer.Option(help="Repeat for several.")] = None,
    actor: Annotated[str | None, typer.Option()] = None,
    query_id: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Ledger entries in an index range, filtered (regulators)."""
    params = {"start": start, "end": end, "kind": kind, "actor": actor, "query_id": query_id}
    doc = _run(ctx, "GET", "/v1/ledger/entries",
               params={k: v for k, v in params.items() if v is not None})
    _table(doc["entries"], ENTRIES, title=f"entries {doc['start']}-{doc['end']} of {doc['size']}")


@ledger_app.command("prove")
def ledger_prove(
    ctx: typer.Context,
    index: Annotated[int | None, typer.Option(help="Prove this entry is in the log.")] = None,
    old_size: Annotated[int | None, typer.Option(
        help="Prove the log of this size is a prefix of the current one.")] = None,
    size: Annotated[int | None, typer.Option(help="The tree to prove against.")] = None,
) -> None:
    """Fetch an inclusion or a consistency proof and check it here."""
    from mpc.merkle import verify_consistency, verify_inclusion

    if (index is None) == (old_size is None):
        raise _fail(ErrorCode.INVALID_REQUEST, "give exactly one of --index and --old-size")
    sized = {"size": size} if size else {}
    if index is not None:
        doc = _run(ctx, "GET", "/v1/ledger/proofs/inclusion", params={"index": index} | sized)
        head = doc["tree_head"]
        ok = verify_inclusion(bytes.fromhex(doc["leaf_hash"]), index, head["size"],
                              _hashes(doc["hashes"]), bytes.fromhex(head["root"]))
        what = f"entry {index} (leaf {doc['leaf_hash']})"
    else:
        doc = _run(ctx, "GET", "/v1/ledger/proofs/consistency",
                   params={"old_size": old_size} | ({"new_size": size} if size else {}))
        head, old = doc["new_head"], doc["old_head"]
        ok = verify_consistency(old["size"], head["size"], bytes.fromhex(old["root"]),
                                bytes.fromhex(head["root"]), _hashes(doc["hashes"]))
        what = f"the log of size {old['size']} (root {old['root']})"
    if not ok:
        raise _fail(ErrorCode.LEDGER_TAMPERED, f"the proof for {what} does not verify")
    console.print(f"verified: {what} is in {_head_line(head)}", highlight=False)


def _ms(text: str | None) -> int | None:
    """An ISO-8601 date or time (UTC unless it names a zone) in Unix ms."""
    try:
        when = datetime.fromisoformat(text) if text else None
    except ValueError:
        raise _fail(ErrorCode.INVALID_REQUEST, f"not an ISO-8601 date or time: {text!r}") from None
    return None if when is None else int(
        (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp() * 1000)


@grants_app.command("create")
def grants_create(
    ctx: typer.Context,
    case: Annotated[str, typer.Option(help="The case id, e.g. court-4:2026-118.")],
    grantee: Annotated[str, typer.Option(help="The judicial principal's id.")],
    legal_basis: Annotated[str, typer.Option(help="The order or statute (in the ledger).")],
    query_id: Annotated[list[str] | None, typer.Option(help="Repeat for several.")] = None,
    member: Annotated[str | None, typer.Option(help="A member whose activity is in scope.")]
    = None,
    since: Annotated[str | None, typer.Option(help="ISO-8601 start of the member window.")]
    = None,
    until: Annotated[str | None, typer.Option(help="ISO-8601 end (exclusive).")] = None,
    days: Annotated[int, typer.Option(min=1, max=366, help="Grant lifetime.")] = 30,
) -> None:
    """Grant a judicial authority access to a case's ledger entries (regulators)."""
    expires = int(datetime.now(UTC).timestamp() * 1000) + days * 86_400_000
    body = {"case_id": case, "grantee": grantee, "legal_basis": legal_basis,
            "query_ids": query_id or [], "member_id": member,
            "since_ms": _ms(since), "until_ms": _ms(until),
            "expires_ms": expires}
    _table([_run(ctx, "POST", "/v1/grants", body=body)], GRANTS)


@grants_app.command("list")
def grants_list(ctx: typer.Context) -> None:
    """Grants (a judicial authority sees its own)."""
    _table(_run(ctx, "GET", "/v1/grants"), GRANTS)


@cases_app.command("entries")
def cases_entries(ctx: typer.Context, case: str) -> None:
    """Every ledger entry of a case, each proof checked here (every read is recorded)."""
    entries: list[dict[str, Any]] = []
    unproved: list[str] = []
    start, page = 0, None
    while page is None or not (page["complete"] or page["next_start"] <= start):
        start = 0 if page is None else page["next_start"]
        page = _run(ctx, "GET", f"/v1/cases/{case}/entries", params={"start": start})
        for item in page["entries"]:
            entries.append(item["entry"])
            if not _proved(item["entry"], item["inclusion"], page["tree_head"]):
                unproved.append(str(item["entry"]["index"]))
    _table(entries, ENTRIES, title=f"case {case}")
    if unproved:
        raise _fail(ErrorCode.LEDGER_TAMPERED,
                    f"entries {', '.join(unproved)} do not match their inclusion proofs")
    console.print(f"{len(entries)} entries, each proved against {_head_line(page['tree_head'])}",
                  highlight=False)


# -- models ----------------------------------------------------------------------------------------
def _model_row(doc: dict[str, Any]) -> dict[str, Any]:
    metrics = doc["metrics"]
    return doc | {"auc": metrics.get("auc"), "ks": metrics.get("ks"),
                  "members": [s["member_id"] for s in doc["slices"]]}


@models_app.command("list")
def models_list(ctx: typer.Context, requester: Annotated[
        str | None, typer.Option(help="Only this requester's models.")] = None) -> None:
    """Registered models, oldest first (the registry holds metadata and digests, no weights)."""
    params = {"requester": requester} if requester else None
    _table([_model_row(m) for m in _run(ctx, "GET", "/v1/models", params=params)], MODELS)


@models_app.command("show")
def models_show(ctx: typer.Context, version: str) -> None:
    """One model: its parties and their features, slice digests, metrics."""
    doc = _run(ctx, "GET", f"/v1/models/{version}")
    _table([_model_row(doc)], MODELS + " session=session_id by=registered_by")
    _table(doc["slices"], "member=member_id role features")
    _table([{"metric": k, "value": v} for k, v in doc["metrics"].items()], "metric value")
    console.print("SHA-256 of each slice file and of the training data each member used:")
    for piece in doc["slices"]:
        console.print(f"{piece['member_id']}: slice {piece['sha256']}, training data "
                      f"{doc['fingerprints'].get(piece['member_id'], '-')}", highlight=False,
                      soft_wrap=True)


def _now_active(doc: dict[str, Any]) -> None:
    console.print(f"{doc['requester_id']} now evaluates with model {doc['version']} (plans that "
                  "name no version)", highlight=False)


@models_app.command("promote")
def models_promote(ctx: typer.Context, version: str) -> None:
    """Make a model its requester's active model (the previous one is retired)."""
    _now_active(_run(ctx, "POST", f"/v1/models/{version}/promote"))


@models_app.command("rollback")
def models_rollback(ctx: typer.Context, member_id: str) -> None:
    """Re-activate the model a requester used before its current one."""
    _now_active(_run(ctx, "POST", f"/v1/models/requesters/{member_id}/rollback"))


# -- products (fedcredit/admin_products_cli.py) ---------------------------------------------------
admin_app.add_typer(products_group(lambda ctx: connect(*ctx.obj), _table, console, _fail),
                    name="products")
