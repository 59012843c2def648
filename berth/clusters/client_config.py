"""A cluster's client configuration, as ``openstack coe cluster config`` writes it.

A fresh client key and its CSR (signed through the certificates API by the
caller), then a bundle of ``ca.pem``, ``cert.pem``, ``key.pem`` and an env file
(``DOCKER_HOST``, ``DOCKER_CERT_PATH``, ``DOCKER_TLS_VERIFY``). Pure crypto and
zip, no storage: the key is generated for this one download and kept nowhere.
"""

from __future__ import annotations

import io
import shlex
import stat
import zipfile
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["ENV_FILE", "ClientConfig", "env_file", "new_client_key", "zip_bundle"]

ENV_FILE = "env.sh"


def new_client_key(common_name: str) -> tuple[str, str]:
    """A new EC P-256 key and a CSR for it: ``(key_pem, csr_pem)``."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, (common_name or "user")[:64])])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return key_pem, csr.public_bytes(serialization.Encoding.PEM).decode()


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """What a user needs to reach a cluster: its CA, a client certificate and key, its address."""

    cluster_name: str
    api_address: str | None
    ca_pem: str
    cert_pem: str
    key_pem: str

    def files(self) -> dict[str, str]:
        """File name → content (the key is written 0600 wherever it goes)."""
        return {
            "ca.pem": self.ca_pem,
            "cert.pem": self.cert_pem,
            "key.pem": self.key_pem,
            ENV_FILE: env_file(self.api_address, None),
        }


def env_file(api_address: str | None, cert_dir: str | None) -> str:
    """The shell lines to source: DOCKER_HOST, DOCKER_CERT_PATH (this directory), TLS on."""
    where = (
        shlex.quote(cert_dir) if cert_dir else '"$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd)"'
    )
    lines = [
        f"export DOCKER_HOST={shlex.quote(api_address) if api_address else ''}",
        f"export DOCKER_CERT_PATH={where}",
        "export DOCKER_TLS_VERIFY=1",
    ]
    if not api_address:
        lines.insert(0, "# The cluster has no API address yet: wait for CREATE_COMPLETE.")
    return "\n".join(lines) + "\n"


def zip_bundle(config: ClientConfig) -> bytes:
    """The configuration as a zip under a directory named after the cluster."""
    buffer = io.BytesIO()
    folder = (
        "".join(c if c.isalnum() or c in "-_." else "_" for c in config.cluster_name) or "cluster"
    )
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for name, content in config.files().items():
            info = zipfile.ZipInfo(f"{folder}/{name}")
            mode = 0o600 if name == "key.pem" else 0o644
            info.external_attr = (stat.S_IFREG | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            bundle.writestr(info, content)
    return buffer.getvalue()
