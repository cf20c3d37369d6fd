from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from fedcredit.errors import CertificateError, InvalidRequestError
from mpc.pki import (
    CertificateAuthority,
    CertRole,
    certificate_to_pem,
    create_ca,
    create_csr,
    dns_name,
    fingerprint,
    issue_certificate,
    load_ca,
    normalize_fingerprint,
    parse_csr,
    verify_certificate,
    verify_pem,
)
from mpc.signing import PLAN_CONTEXT, Signer

pytestmark = pytest.mark.unit
NOW = 1_800_000_000_000
DAY = 86_400_000


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return create_ca("test", NOW)


def test_an_issued_certificate_says_who_and_what(ca: CertificateAuthority) -> None:
    signer = Signer.generate()
    request = parse_csr(create_csr("bank", signer))
    assert request.party_id == "bank"
    assert request.fingerprint == fingerprint(signer.private_key.public_key())
    cert = issue_certificate(ca, "bank", CertRole.MEMBER, request.public_key, NOW, 90)
    identity = verify_certificate(cert, ca.certificate, NOW)
    assert (identity.party_id, identity.role) == ("bank", CertRole.MEMBER)
    assert identity.not_after_ms - NOW == 90 * DAY
    assert identity.verifier.key_id == signer.key_id
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [dns_name("bank", CertRole.MEMBER)]
    # The same key signs protocol messages the certificate vouches for.
    identity.verifier.verify(PLAN_CONTEXT, b"m", signer.sign(PLAN_CONTEXT, b"m"))


def test_another_cas_certificate_is_refused(ca: CertificateAuthority) -> None:
    rogue = create_ca("test", NOW)  # same name, different key
    cert = issue_certificate(rogue, "bank", CertRole.MEMBER,
                             Signer.generate().private_key.public_key(), NOW, 90)
    with pytest.raises(CertificateError, match="not issued by the alliance CA"):
        verify_certificate(cert, ca.certificate, NOW)


@pytest.mark.parametrize(("when", "message"), [(NOW - 2 * DAY, "not valid yet"),
                                               (NOW + 91 * DAY, "expired")])
def test_validity_period(ca: CertificateAuthority, when: int, message: str) -> None:
    cert = issue_certificate(ca, "bank", CertRole.MEMBER,
                             Signer.generate().private_key.public_key(), NOW, 90)
    with pytest.raises(CertificateError, match=message):
        verify_certificate(cert, ca.certificate, when)


def test_role_and_id_expectations(ca: CertificateAuthority) -> None:
    pem = certificate_to_pem(issue_certificate(
        ca, "coordinator", CertRole.COORDINATOR, Signer.generate().private_key.public_key(),
        NOW, 1))
    assert verify_pem(pem, ca.certificate, NOW, CertRole.COORDINATOR).role is CertRole.COORDINATOR
    with pytest.raises(CertificateError):
        verify_pem(pem, ca.certificate, NOW, CertRole.MEMBER)
    with pytest.raises(CertificateError):
        verify_pem(pem, ca.certificate, NOW, expect_id="bank")
    with pytest.raises(CertificateError, match="PEM"):
        verify_pem(b"not a certificate", ca.certificate, NOW)


def test_certificates_never_outlive_the_ca() -> None:
    short = create_ca("test", NOW, valid_days=10)
    cert = issue_certificate(short, "bank", CertRole.MEMBER,
                             Signer.generate().private_key.public_key(), NOW, 90)
    assert cert.not_valid_after_utc == short.certificate.not_valid_after_utc


def test_bad_requests_are_refused() -> None:
    with pytest.raises(InvalidRequestError, match="PEM CSR"):
        parse_csr(b"garbage")
    with pytest.raises(InvalidRequestError):
        create_csr("Not An Id", Signer.generate())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_csr = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bank")]))
               .sign(rsa_key, hashes.SHA256()))
    from cryptography.hazmat.primitives import serialization

    with pytest.raises(InvalidRequestError, match="P-256"):
        parse_csr(rsa_csr.public_bytes(serialization.Encoding.PEM))
    p384 = ec.generate_private_key(ec.SECP384R1())
    bad_name = (x509.CertificateSigningRequestBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "../etc")]))
                .sign(Signer.generate().private_key, hashes.SHA256()))
    with pytest.raises(InvalidRequestError, match="member id"):
        parse_csr(bad_name.public_bytes(serialization.Encoding.PEM))
    p384_csr = (x509.CertificateSigningRequestBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bank")]))
                .sign(p384, hashes.SHA256()))
    with pytest.raises(InvalidRequestError, match="P-256"):
        parse_csr(p384_csr.public_bytes(serialization.Encoding.PEM))


def test_ca_files_round_trip_and_must_match(ca: CertificateAuthority) -> None:
    loaded = load_ca(ca.signer.to_pem(), ca.certificate_pem())
    assert loaded.certificate == ca.certificate
    with pytest.raises(CertificateError, match="does not match"):
        load_ca(Signer.generate().to_pem(), ca.certificate_pem())


def test_fingerprints_compare_however_they_are_written() -> None:
    text = fingerprint(Signer.generate().private_key.public_key())
    assert len(normalize_fingerprint(text)) == 64
    assert normalize_fingerprint(text.upper().replace(":", " ")) == normalize_fingerprint(text)
