"""Recipe: the alliance's X.509 PKI — CA, certificate requests, issuance, verification.

Pure: keys, requests and certificates in, certificates and typed facts out; no files, no
clock (callers pass ``now``). One CA per alliance signs every party's identity certificate.
A certificate's subject common name is the party's id, its organizational unit the party's
role, and its one DNS subject-alternative name ``<id>.<role>.fedcredit`` is what TLS clients
check (gRPC's hostname verification), so a connection to a member's endpoint proves it is
that member. Revocation is not in the certificate: the coordinator's registry holds which
serials are revoked and every server checks it on every call.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass, field
from enum import StrEnum

from cryptography import x509
from cryptography.exceptions import InvalidSignature as _CryptoInvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedcredit.errors import CertificateError, ErrorCode, InvalidRequestError
from mpc.signing import CURVE, Signer, Verifier

PARTY_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
DNS_SUFFIX = "fedcredit"
#: Certificates are valid from a little before issuance, for clocks that run slightly behind.
BACKDATE = dt.timedelta(minutes=5)


class CertRole(StrEnum):
    """Who a certificate speaks for on the gRPC plane."""

    MEMBER = "member"
    COORDINATOR = "coordinator"


def dns_name(party_id: str, role: CertRole) -> str:
    """The name TLS verifies: ``bank.member.fedcredit``, ``coordinator.coordinator.fedcredit``."""
    return f"{party_id}.{role.value}.{DNS_SUFFIX}"


def _utc(now_ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC)


def _ms(when: dt.datetime) -> int:
    return int(when.timestamp() * 1000)


def fingerprint(public_key: ec.EllipticCurvePublicKey) -> str:
    """SHA-256 over the SubjectPublicKeyInfo, in colon-separated groups an admin can read out."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashlib.sha256(der).hexdigest()
    return ":".join(digest[i : i + 4] for i in range(0, len(digest), 4))


def normalize_fingerprint(text: str) -> str:
    return re.sub(r"[^0-9a-f]", "", text.lower())


@dataclass(frozen=True)
class CertificateAuthority:
    """The alliance CA: its signing key and self-signed certificate."""

    signer: Signer = field(repr=False)
    certificate: x509.Certificate

    @property
    def name(self) -> str:
        return _common_name(self.certificate.subject)

    def certificate_pem(self) -> bytes:
        return certificate_to_pem(self.certificate)


@dataclass(frozen=True)
class CertificateRequest:
    """A verified CSR: the requester proved possession of the key for this party id."""

    party_id: str
    public_key: ec.EllipticCurvePublicKey = field(repr=False)
    pem: bytes = field(repr=False)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)


@dataclass(frozen=True)
class CertifiedIdentity:
    """What a verified certificate says."""

    party_id: str
    role: CertRole
    serial: str
    not_before_ms: int
    not_after_ms: int
    fingerprint: str
    verifier: Verifier = field(repr=False)


def _common_name(name: x509.Name) -> str:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else ""


def serial_hex(certificate: x509.Certificate) -> str:
    return format(certificate.serial_number, "x")


def certificate_to_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def load_certificate(pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise CertificateError("not a PEM X.509 certificate") from None


def create_ca(alliance_name: str, now_ms: int, valid_days: int = 3650) -> CertificateAuthority:
    """A new self-signed alliance CA (path length 0: it signs identities, never other CAs)."""
    signer = Signer.generate()
    name = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, f"{alliance_name} alliance CA"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, alliance_name),
    ])
    public = signer.private_key.public_key()
    start = _utc(now_ms) - BACKDATE
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(signer.private_key, hashes.SHA256())
    )
    return CertificateAuthority(signer=signer, certificate=certificate)


def load_ca(key_pem: bytes, certificate_pem: bytes) -> CertificateAuthority:
    ca = CertificateAuthority(Signer.from_pem(key_pem), load_certificate(certificate_pem))
    if ca.certificate.public_key() != ca.signer.private_key.public_key():
        raise CertificateError("the CA key does not match the CA certificate")
    return ca


def create_csr(party_id: str, signer: Signer) -> bytes:
    """A PEM certificate signing request for ``party_id``, signed with its identity key."""
    if not PARTY_ID.match(party_id):
        raise InvalidRequestError("party id must match [a-z0-9][a-z0-9-]{1,62}")
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, party_id)]))
        .sign(signer.private_key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def parse_csr(pem: bytes) -> CertificateRequest:
    """Verify a CSR's proof of possession, key type and party id; a typed error otherwise."""
    try:
        csr = x509.load_pem_x509_csr(pem)
    except ValueError:
        raise InvalidRequestError("the certificate request is not a PEM CSR") from None
    if not csr.is_signature_valid:
        raise InvalidRequestError("the certificate request's signature does not verify")
    public = csr.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey) or not isinstance(public.curve, CURVE):
        raise InvalidRequestError("identity keys must be ECDSA P-256")
    party_id = _common_name(csr.subject)
    if not PARTY_ID.match(party_id):
        raise InvalidRequestError("the request's common name must be a valid member id")
    return CertificateRequest(party_id=party_id, public_key=public, pem=pem)


def issue_certificate(
    ca: CertificateAuthority,
    party_id: str,
    role: CertRole,
    public_key: ec.EllipticCurvePublicKey,
    now_ms: int,
    valid_days: int,
) -> x509.Certificate:
    """An identity certificate: client and server TLS, and the party's protocol signatures."""
    if not PARTY_ID.match(party_id):
        raise InvalidRequestError("party id must match [a-z0-9][a-z0-9-]{1,62}")
    start = _utc(now_ms) - BACKDATE
    ca_end = ca.certificate.not_valid_after_utc
    end = min(start + BACKDATE + dt.timedelta(days=valid_days), ca_end)
    subject = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, party_id),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role.value),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, _organization(ca)),
    ])
    ca_public = ca.signer.private_key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.certificate.subject)
        .public_key(public_key)
        .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1 or 1)
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                   ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name(party_id, role))]),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public),
                       critical=False)
        .sign(ca.signer.private_key, hashes.SHA256())
    )


def _organization(ca: CertificateAuthority) -> str:
    values = ca.certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return str(values[0].value) if values else "fedcredit"


def verify_certificate(
    certificate: x509.Certificate, ca_certificate: x509.Certificate, now_ms: int
) -> CertifiedIdentity:
    """The identity a certificate proves, if the alliance CA issued it and it is valid now.

    Raises :class:`CertificateError` (CERTIFICATE_INVALID) for another CA's certificate, a bad
    signature, a certificate outside its validity period, or one without a role.
    """
    if certificate.issuer != ca_certificate.subject:
        raise CertificateError("the certificate was not issued by the alliance CA")
    try:
        certificate.verify_directly_issued_by(ca_certificate)
    except (_CryptoInvalidSignature, ValueError, TypeError):
        raise CertificateError("the certificate was not issued by the alliance CA") from None
    not_before = _ms(certificate.not_valid_before_utc)
    not_after = _ms(certificate.not_valid_after_utc)
    if now_ms < not_before:
        raise CertificateError("the certificate is not valid yet")
    if now_ms >= not_after:
        raise CertificateError("the certificate has expired")
    units = certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    try:
        role = CertRole(str(units[0].value)) if units else None
    except ValueError:
        role = None
    if role is None:
        raise CertificateError("the certificate names no alliance role")
    public = certificate.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise CertificateError("identity keys must be ECDSA P-256")
    try:
        verifier = Verifier(public)
    except ValueError:
        raise CertificateError("identity keys must be ECDSA P-256") from None
    return CertifiedIdentity(
        party_id=_common_name(certificate.subject),
        role=role,
        serial=serial_hex(certificate),
        not_before_ms=not_before,
        not_after_ms=not_after,
        fingerprint=fingerprint(public),
        verifier=verifier,
    )


def verify_pem(pem: bytes, ca_certificate: x509.Certificate, now_ms: int,
               expect_role: CertRole | None = None,
               expect_id: str | None = None) -> CertifiedIdentity:
    """:func:`verify_certificate` on PEM bytes, optionally requiring a role and party id."""
    identity = verify_certificate(load_certificate(pem), ca_certificate, now_ms)
    if expect_role is not None and identity.role is not expect_role:
        raise CertificateError(f"expected a {expect_role.value} certificate",
                               code=ErrorCode.CERTIFICATE_INVALID)
    if expect_id is not None and identity.party_id != expect_id:
        raise CertificateError(f"the certificate is not {expect_id}'s")
    return identity
