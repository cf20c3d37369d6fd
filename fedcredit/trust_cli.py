"""The trust plane's commands: ``alliance init``, ``node join``, member votes, ``audit verify``,
``node audit-check``. Registered on the apps of :mod:`fedcredit.cli`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from fedcredit.cli_output import console, err_console, fail
from fedcredit.errors import ErrorCode, FedCreditError


def node_join(
    wait: Annotated[bool, typer.Option(help="Wait until the request is decided.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait.")] = 600.0,
    ca_cert: Annotated[Path | None, typer.Option(
        exists=True, dir_okay=False,
        help="The alliance CA certificate (default FEDCREDIT_NODE_CA_FILE).")] = None,
) -> None:
    """Ask to join the alliance: make this member's key and file a join request (resumable)."""
    from fedcredit.clock import system_clock
    from node.join import Applicant, JoinClient, JoinProgress, JoinState
    from node.settings import NodeSettings

    def show(progress: JoinProgress) -> None:
        if progress.state is JoinState.APPROVED:
            console.print(f"admitted: certificate installed ({progress.request_id})")
            return
        console.print(
            f"join request {progress.request_id} pending — key fingerprint "
            f"[bold]{progress.fingerprint}[/] (read it out to the alliance admins); "
            f"admin approved: {'yes' if progress.admin_approved else 'no'}, member approvals "
            f"{progress.approvals}/{progress.approvals_required}")

    try:
        settings = NodeSettings()
        ca_file = ca_cert or settings.ca_file
        if ca_file is None:
            raise FedCreditError("the alliance CA certificate is required (--ca-cert or "
                                 "FEDCREDIT_NODE_CA_FILE)", code=ErrorCode.CONFIGURATION_INVALID)
        client = JoinClient(settings.coordinator_enroll_address, ca_file.read_bytes())
        try:
            applicant = Applicant(settings.member_id, settings.identity_files, client,
                                  ca_file.read_bytes(), system_clock)
            name = settings.display_name or settings.member_id
            if wait:
                progress = applicant.wait(name, settings.contact, timeout, 0.25, show)
            else:
                progress = applicant.step(name, settings.contact)
                show(progress)
        finally:
            client.close()
    except (FedCreditError, ValidationError) as exc:
        raise fail(exc) from None
    if progress.state is not JoinState.APPROVED:
        raise typer.Exit(3 if wait else 0)


def node_join_requests() -> None:
    """List the join requests awaiting a decision (members vote on them)."""
    from rich.table import Table

    from node.member_cli import member_client

    try:
        with member_client() as client:
            tickets = client.pending_join_requests()
    except (FedCreditError, ValidationError) as exc:
        raise fail(exc) from None
    table = Table(title="pending join requests")
    for column in ("request", "member", "name", "key fingerprint", "admin", "approvals"):
        table.add_column(column)
    for t in tickets:
        table.add_row(t.request_id, t.member_id, t.display_name, t.key_fingerprint,
                      "approved" if t.admin_approved else "—",
                      f"{t.approvals}/{t.approvals_required}")
    console.print(table if tickets else "no pending join requests")


def node_vote(
    request_id: Annotated[str, typer.Argument(help="The join request.")],
    approve: Annotated[bool, typer.Option("--approve/--reject")] = True,
) -> None:
    """Vote on a join request as this member (quorum admission)."""
    from node.member_cli import member_client

    try:
        with member_client() as client:
            ticket = client.vote(request_id, approve)
    except (FedCreditError, ValidationError) as exc:
        raise fail(exc) from None
    console.print(f"voted {'for' if approve else 'against'} {ticket.member_id}: "
                  f"{ticket.approvals}/{ticket.approvals_required} approvals")


def alliance_init(
    data_dir: Annotated[Path, typer.Option(help="The coordinator's data directory.")] = Path(
        "coordinator-data"),
    name: Annotated[str, typer.Option(help="The alliance's name (in the CA certificate).")] = (
        "fedcredit"),
    admin_name: Annotated[str, typer.Option(help="Name of the first admin principal.")] = (
        "admin"),
) -> None:
    """Create the alliance CA and the coordinator's identity (once, before the coordinator)."""
    from coordinator.authority import init_alliance
    from coordinator.principals import PrincipalStore
    from coordinator.server import open_core
    from coordinator.settings import CoordinatorSettings
    from fedcredit.clock import system_clock
    from fedcredit.files import write_secret

    try:
        settings = CoordinatorSettings(data_dir=data_dir)
        paths = init_alliance(data_dir, name, system_clock())
        core = open_core(settings)
        try:
            token = PrincipalStore(core.db, core.ledger).bootstrap_admin(admin_name)
        finally:
            core.close()
    except (FedCreditError, ValidationError) as exc:
        raise fail(exc) from None
    token_file = data_dir / "admin-token"
    write_secret(token_file, token.encode())
    console.print(f"alliance CA created: key {paths.ca_key} (0600, keep it here), certificate "
                  f"{paths.published_ca} — hand this file to every member (it is public)")
    console.print(f"first admin {admin_name!r}: token in {token_file} (0600); use it with "
                  "FEDCREDIT_ADMIN_TOKEN or `fedcredit admin --token-file`")


def audit_verify(
    data_dir: Annotated[Path, typer.Option(help="The coordinator's data directory.")] = Path(
        "coordinator-data"),
) -> None:
    """Recompute the whole ledger (leaf hashes, roots, signed heads); name the first bad entry."""
    from coordinator.audit_verify import coordinator_verifiers, verify_ledger
    from mpc.pki import load_certificate

    database = data_dir / "coordinator.sqlite3"
    try:
        if not database.exists():
            raise FedCreditError(f"no coordinator database at {database}",
                                 code=ErrorCode.CONFIGURATION_INVALID)
        ca = load_certificate((data_dir / "ca.crt").read_bytes())
        verifiers = coordinator_verifiers(database, ca)
    except OSError as exc:
        raise fail(FedCreditError(f"cannot read {exc.filename}: {exc.strerror}",
                                  code=ErrorCode.CONFIGURATION_INVALID)) from None
    except FedCreditError as exc:
        raise fail(exc) from None
    result = verify_ledger(database, verifiers)
    if result.ok:
        console.print(f"ledger OK: {result.entries_checked} entries, {result.heads_checked} "
                      "signed tree heads recomputed and verified")
        return
    err_console.print(f"[red]LEDGER_TAMPERED:[/] first bad entry {result.first_bad_index}: "
                      f"{result.reason}")
    raise typer.Exit(1)


def node_audit_check() -> None:
    """Check this member's ledger receipts against the coordinator's current signed log."""
    from fedcredit.clock import system_clock
    from node.audit_trail import AuditTrail
    from node.directory import MemberDirectory
    from node.member_cli import member_client
    from node.settings import NodeSettings

    try:
        settings = NodeSettings()
        with member_client(settings) as client:
            identity = client.identity.current
            directory = MemberDirectory(identity.ca_certificate, client.directory, system_clock)
            directory.refresh()
            trail = AuditTrail(settings.audit_store_path, settings.member_id, client, directory,
                               system_clock)
            try:
                result = trail.check()
            finally:
                trail.close()
    except (FedCreditError, ValidationError) as exc:
        raise fail(exc) from None
    if result.ok:
        console.print(f"receipts OK: {result.receipts_checked} entries of this member are in the "
                      "coordinator's current log, which grew consistently from every kept head")
        return
    err_console.print(f"[red]LEDGER_TAMPERED:[/] receipts no longer honoured for entries "
                      f"{list(result.failed_indices)}")
    raise typer.Exit(1)
