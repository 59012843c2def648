"""Per-cluster certificate authority: create a CA, sign CSRs, issue server/client certificates.

Pure crypto (``cryptography``), no storage: the services layer seals the CA key
before it is written to the database.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from berth import errors

__all__ = ["CertificateAuthority", "InvalidCsr", "issue", "new_ca", "sign_csr"]

_CA_DAYS = 3650
_LEAF_DAYS = 1825


class InvalidCsr(errors.Invalid):
    """The CSR is not a valid PEM certificate request."""


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    """A CA certificate and its private key, both PEM."""

    cert_pem: str
    key_pem: str


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_ca(cluster_name: str) -> CertificateAuthority:
    """A fresh self-signed CA for one cluster (EC P-256, ten years)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{cluster_name[:50]} CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(_now() + dt.timedelta(days=_CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return CertificateAuthority(cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem)


def _load(ca: CertificateAuthority) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate(ca.cert_pem.encode())
    key = serialization.load_pem_private_key(ca.key_pem.encode(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("cluster CA keys are EC keys")
    return cert, key


def sign_csr(ca: CertificateAuthority, csr_pem: str, *, server: bool = False) -> str:
    """Sign a CSR as a client certificate (Magnum keeps only the subject and the key)."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
    except ValueError:
        raise InvalidCsr("Received invalid csr: it is not a PEM certificate request.") from None
    if not csr.is_signature_valid:
        raise InvalidCsr("Received invalid csr: its signature does not verify.")
    return _build(ca, csr.subject, csr.public_key(), server=server, sans=())  # type: ignore[arg-type]


def issue(
    ca: CertificateAuthority, common_name: str, *, server: bool, sans: tuple[str, ...] = ()
) -> tuple[str, str]:
    """A new key and a certificate for it: ``(cert_pem, key_pem)``."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])
    cert = _build(ca, subject, key.public_key(), server=server, sans=sans)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return cert, key_pem


def _build(
    ca: CertificateAuthority,
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    *,
    server: bool,
    sans: tuple[str, ...],
) -> str:
    ca_cert, ca_key = _load(ca)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(_now() + dt.timedelta(days=_LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if sans:
        names: list[x509.GeneralName] = []
        for san in sans:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(san)))
            except ValueError:
                names.append(x509.DNSName(san))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()
