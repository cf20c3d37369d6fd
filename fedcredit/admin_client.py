"""HTTPS client of the coordinator's admin API (the ``fedcredit admin`` CLI, the launcher).

TLS verifies the coordinator by the name the alliance CA gave it, whatever host the URL
names; the bearer token never travels over plain HTTP; the API's error envelope becomes the
typed error it stands for.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import httpx

from fedcredit.error_catalog import code_from_name
from fedcredit.errors import CertificateError, ConfigurationError, ErrorCode, FedCreditError

TIMEOUT_S = 30.0


class AdminClient:
    """HTTPS to the admin API; the API's error envelope becomes a typed error."""

    def __init__(self, url: str, ca_cert: Path | None, token: str | None) -> None:
        from coordinator.authority import COORDINATOR_ID
        from mpc.pki import CertRole, dns_name

        if httpx.URL(url).scheme != "https":  # the token must never travel in the clear
            raise FedCreditError(f"{url}: the admin API is served over https only",
                                 code=ErrorCode.INSECURE_TRANSPORT_REFUSED)
        if ca_cert is None:
            raise ConfigurationError("--ca-cert (FEDCREDIT_ADMIN_CA_CERT): the alliance CA file "
                                     "is needed to verify the coordinator")
        try:
            verify = ssl.create_default_context(cafile=str(ca_cert))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(f"cannot read the CA file {ca_cert}: {exc}") from None
        # TLS checks the name the CA gave the coordinator, not the URL's host.
        self._extensions = {"sni_hostname": dns_name(COORDINATOR_ID, CertRole.COORDINATOR)}
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=url, verify=verify, headers=headers,
                                  timeout=TIMEOUT_S)

    def close(self) -> None:
        self._http.close()

    def call(self, method: str, path: str, *, body: Any = None,
             params: dict[str, Any] | None = None) -> Any:
        try:
            response = self._http.request(method, path, json=body, params=params,
                                          extensions=self._extensions)
        except httpx.ConnectError as exc:
            if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                raise CertificateError("the server's certificate was not issued to the "
                                       "alliance coordinator by this CA") from None
            raise FedCreditError(f"cannot reach {self._http.base_url}: {exc}",
                                 code=ErrorCode.COORDINATOR_UNAVAILABLE) from None
        except httpx.HTTPError as exc:
            raise FedCreditError(f"{type(exc).__name__}: {exc}",
                                 code=ErrorCode.COORDINATOR_UNAVAILABLE) from None
        if response.is_success:
            return response.json()
        try:
            error = response.json()["error"]
            code = code_from_name(str(error["code"])) or ErrorCode.INTERNAL
            detail = str(error["detail"])
        except (ValueError, KeyError, TypeError):
            code, detail = ErrorCode.INTERNAL, f"HTTP {response.status_code} from the admin API"
        raise FedCreditError(detail, code=code)
