"""A party's TLS identity on disk, and the gRPC credentials made from it.

Files (in the party's identity directory): ``identity.key`` (0600, PKCS#8 PEM), ``identity.crt``
(issued by the alliance CA) and ``ca.crt``. The identity is held by an :class:`IdentityHolder`
so that a renewed certificate is picked up without a restart: servers fetch the current
certificate for every new TLS handshake, channel pools rebuild their channels when the
holder's generation changes.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from cryptography import x509

from fedcredit.errors import CertificateError, ConfigurationError
from fedcredit.files import write_atomic, write_secret
from mpc.pki import (
    CertifiedIdentity,
    CertRole,
    dns_name,
    load_certificate,
    verify_certificate,
)
from mpc.signing import Signer

KEY_FILE = "identity.key"
CERT_FILE = "identity.crt"
CA_FILE = "ca.crt"


@dataclass(frozen=True)
class TlsFiles:
    directory: Path

    @property
    def key(self) -> Path:
        return self.directory / KEY_FILE

    @property
    def certificate(self) -> Path:
        return self.directory / CERT_FILE

    @property
    def ca(self) -> Path:
        return self.directory / CA_FILE

    def exists(self) -> bool:
        return self.key.exists() and self.certificate.exists() and self.ca.exists()

    def write(self, key_pem: bytes | None, certificate_pem: bytes, ca_pem: bytes) -> None:
        """Write the identity; the certificate last, so a reader never pairs it with a stale key."""
        write_atomic(self.ca, ca_pem)
        if key_pem is not None:
            write_secret(self.key, key_pem)
        write_atomic(self.certificate, certificate_pem)


@dataclass(frozen=True)
class TlsIdentity:
    """A verified key + certificate + CA triple."""

    key_pem: bytes = field(repr=False)
    certificate_pem: bytes = field(repr=False)
    ca_pem: bytes = field(repr=False)
    certified: CertifiedIdentity
    ca_certificate: x509.Certificate = field(repr=False)

    @property
    def party_id(self) -> str:
        return self.certified.party_id

    @functools.cached_property
    def signer(self) -> Signer:
        return Signer.from_pem(self.key_pem)

    @classmethod
    def from_pems(cls, key_pem: bytes, certificate_pem: bytes, ca_pem: bytes,
                  now_ms: int) -> TlsIdentity:
        ca_certificate = load_certificate(ca_pem)
        certified = verify_certificate(load_certificate(certificate_pem), ca_certificate, now_ms)
        try:
            signer = Signer.from_pem(key_pem)
        except ValueError:
            raise ConfigurationError("the identity key is not an ECDSA P-256 PEM key") from None
        if signer.key_id != certified.verifier.key_id:
            raise ConfigurationError("the identity key does not match the certificate")
        return cls(key_pem, certificate_pem, ca_pem, certified, ca_certificate)

    @classmethod
    def load(cls, files: TlsFiles, now_ms: int) -> TlsIdentity:
        if not files.exists():
            raise ConfigurationError(
                f"no alliance identity in {files.directory} (identity.key, identity.crt, "
                "ca.crt); a node gets one with `fedcredit node join`, the coordinator with "
                "`fedcredit alliance init`"
            )
        try:
            return cls.from_pems(files.key.read_bytes(), files.certificate.read_bytes(),
                                 files.ca.read_bytes(), now_ms)
        except CertificateError as exc:
            raise ConfigurationError(f"{files.certificate}: {exc.detail}") from None


class IdentityHolder:
    """The current identity of this process, swappable at runtime (certificate renewal)."""

    def __init__(self, identity: TlsIdentity, files: TlsFiles | None = None) -> None:
        self._identity = identity
        self._files = files
        self._generation = 0
        self._lock = threading.Lock()

    @property
    def current(self) -> TlsIdentity:
        return self._identity

    @property
    def generation(self) -> int:
        return self._generation

    def replace(self, identity: TlsIdentity) -> None:
        """Swap in a renewed identity (persisted first when the holder has files)."""
        if identity.party_id != self._identity.party_id:
            raise ConfigurationError("a renewed identity must keep the party id")
        with self._lock:
            if self._files is not None:
                self._files.write(identity.key_pem, identity.certificate_pem, identity.ca_pem)
            self._identity = identity
            self._generation += 1

    # -- gRPC credentials --------------------------------------------------------------------
    def _server_config(self) -> grpc.ServerCertificateConfiguration:
        identity = self._identity
        return grpc.ssl_server_certificate_configuration(
            [(identity.key_pem, identity.certificate_pem)], root_certificates=identity.ca_pem
        )

    def server_credentials(self, require_client_auth: bool = True) -> grpc.ServerCredentials:
        """Server credentials that present the current certificate to every new connection."""
        served = [self._generation]

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            if served[0] == self._generation:
                return None
            served[0] = self._generation
            return self._server_config()

        # grpc's stubs say the fetcher returns a configuration; the runtime documents None as
        # "keep the current one", which is what we return between renewals.
        return grpc.dynamic_ssl_server_credentials(
            self._server_config(), fetch,  # type: ignore[arg-type]
            require_client_authentication=require_client_auth,
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        identity = self._identity
        return grpc.ssl_channel_credentials(
            root_certificates=identity.ca_pem,
            private_key=identity.key_pem,
            certificate_chain=identity.certificate_pem,
        )


def server_only_channel_credentials(ca_pem: bytes) -> grpc.ChannelCredentials:
    """For a party without a certificate yet (joining): authenticate the server only."""
    return grpc.ssl_channel_credentials(root_certificates=ca_pem)


def target_name_option(party_id: str, role: CertRole) -> tuple[str, str]:
    """The channel option that makes TLS check the server is ``party_id`` in ``role``."""
    return ("grpc.ssl_target_name_override", dns_name(party_id, role))


class PeerCertificates:
    """Verified identities of TLS peers, cached by certificate bytes (bounded LRU).

    gRPC has already checked the chain and validity during the handshake; this parses the
    peer's certificate into a :class:`CertifiedIdentity` (id, role, serial) and re-checks the
    validity period on every call, since a connection can outlive its certificate.
    """

    def __init__(self, ca_certificate: x509.Certificate, capacity: int = 1024) -> None:
        self._ca = ca_certificate
        self._cache: OrderedDict[bytes, CertifiedIdentity] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def identify(self, context: grpc.ServicerContext, now_ms: int) -> CertifiedIdentity:
        pems: object = context.auth_context().get("x509_pem_cert") or []
        if not isinstance(pems, list) or not pems or not isinstance(pems[0], bytes):
            raise CertificateError("the caller presented no alliance certificate")
        pem = pems[0]
        key = hashlib.sha256(pem).digest()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
        if cached is None:
            cached = verify_certificate(load_certificate(pem), self._ca, now_ms)
            with self._lock:
                self._cache[key] = cached
                while len(self._cache) > self._capacity:
                    self._cache.popitem(last=False)
        if not cached.not_before_ms <= now_ms < cached.not_after_ms:
            raise CertificateError("the caller's certificate has expired")
        return cached
