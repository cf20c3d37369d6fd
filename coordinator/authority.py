"""The alliance CA and the coordinator's own identity, on disk under the coordinator's data dir.

``fedcredit alliance init`` creates both once (:func:`init_alliance`); the coordinator loads
them at start (:func:`load_authority`) and renews its own certificate when it nears expiry.
Layout: ``ca/ca.key`` (0600) and ``ca/ca.crt``; ``identity/`` holds the coordinator's TLS
identity (:class:`fedcredit.tls.TlsFiles`). ``ca.crt`` at the top of the data dir is the file
to hand to every member (it is public).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from fedcredit.errors import ConfigurationError, ConflictError
from fedcredit.files import write_atomic, write_secret
from fedcredit.tls import TlsFiles, TlsIdentity
from mpc.pki import (
    CertificateAuthority,
    CertRole,
    certificate_to_pem,
    create_ca,
    issue_certificate,
    load_ca,
)
from mpc.signing import Signer

log = logging.getLogger(__name__)
COORDINATOR_ID = "coordinator"
#: The coordinator renews its certificate when less than this remains.
RENEW_BEFORE_MS = 30 * 24 * 3600 * 1000


@dataclass(frozen=True)
class AuthorityPaths:
    data_dir: Path

    @property
    def ca_key(self) -> Path:
        return self.data_dir / "ca" / "ca.key"

    @property
    def ca_certificate(self) -> Path:
        return self.data_dir / "ca" / "ca.crt"

    @property
    def published_ca(self) -> Path:
        return self.data_dir / "ca.crt"

    @property
    def identity(self) -> TlsFiles:
        return TlsFiles(self.data_dir / "identity")


def _issue_coordinator(ca: CertificateAuthority, now_ms: int, valid_days: int) -> TlsIdentity:
    signer = Signer.generate()
    certificate = issue_certificate(ca, COORDINATOR_ID, CertRole.COORDINATOR,
                                    signer.private_key.public_key(), now_ms, valid_days)
    return TlsIdentity.from_pems(signer.to_pem(), certificate_to_pem(certificate),
                                 ca.certificate_pem(), now_ms)


def init_alliance(data_dir: Path, alliance_name: str, now_ms: int, *, ca_days: int = 3650,
                  coordinator_days: int = 365) -> AuthorityPaths:
    """Create the CA and the coordinator identity; refuses to overwrite an existing CA."""
    paths = AuthorityPaths(data_dir)
    if paths.ca_key.exists() or paths.ca_certificate.exists():
        raise ConflictError(f"an alliance CA already exists in {paths.ca_key.parent}")
    ca = create_ca(alliance_name, now_ms, ca_days)
    write_secret(paths.ca_key, ca.signer.to_pem())
    write_atomic(paths.ca_certificate, ca.certificate_pem())
    write_atomic(paths.published_ca, ca.certificate_pem())
    identity = _issue_coordinator(ca, now_ms, coordinator_days)
    paths.identity.write(identity.key_pem, identity.certificate_pem, identity.ca_pem)
    return paths


@dataclass(frozen=True)
class Authority:
    ca: CertificateAuthority
    identity: TlsIdentity


def load_authority(data_dir: Path, now_ms: int, coordinator_days: int = 365) -> Authority:
    """The CA and the coordinator identity, renewing the latter if it expires within 30 days."""
    paths = AuthorityPaths(data_dir)
    if not paths.ca_key.exists() or not paths.ca_certificate.exists():
        raise ConfigurationError(
            f"no alliance CA in {paths.ca_key.parent}; run `fedcredit alliance init "
            f"--data-dir {data_dir}` first"
        )
    ca = load_ca(paths.ca_key.read_bytes(), paths.ca_certificate.read_bytes())
    identity: TlsIdentity | None = None
    try:
        identity = TlsIdentity.load(paths.identity, now_ms)
    except ConfigurationError as exc:
        log.warning("coordinator identity unusable (%s); issuing a new one", exc.detail)
    if identity is None or identity.certified.not_after_ms - now_ms < RENEW_BEFORE_MS:
        identity = _issue_coordinator(ca, now_ms, coordinator_days)
        paths.identity.write(identity.key_pem, identity.certificate_pem, identity.ca_pem)
        log.info("issued the coordinator a new certificate (serial %s)",
                 identity.certified.serial)
    return Authority(ca=ca, identity=identity)
