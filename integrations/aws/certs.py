"""X.509 material for code-signing certificate rotation, made with ``cryptography``.

Owns: key generation (EC P-256 or RSA 2048), the sandbox/local CA, issuing a code-signing leaf
certificate (``extendedKeyUsage = codeSigning``) or a TLS server one (``serverAuth`` + DNS SAN),
and the printable facts about a certificate
(serial as hex, SHA-256 fingerprint, notAfter). Pure functions, no AWS calls.

Must not touch: ``flows``, ``prefect``. Private key PEMs returned here are secrets: callers
must ``ctx.redact()`` them and only ever store them in Secrets Manager.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CertificateAuthority",
    "IssuedCertificate",
    "KeyType",
    "cert_facts",
    "generate_key",
    "issue_code_signing_cert",
    "issue_server_cert",
    "key_pem",
    "load_key",
    "make_ca",
    "public_key_der",
]

KeyType = Literal["ec-p256", "rsa-2048"]
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def generate_key(key_type: KeyType = "ec-p256") -> PrivateKey:
    if key_type == "rsa-2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: PrivateKey) -> str:
    """Unencrypted PKCS#8 PEM (what ACM ``ImportCertificate`` accepts). A secret."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def load_key(pem: str) -> PrivateKey:
    key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError(f"unsupported private key type {type(key).__name__}")
    return key


def public_key_der(obj: PrivateKey | x509.Certificate) -> bytes:
    """SubjectPublicKeyInfo DER of a key or certificate: compares a cert with a key."""
    return obj.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass(frozen=True)
class CertificateAuthority:
    """A signing CA: certificate PEM and its private key PEM (secret)."""

    certificate_pem: str
    private_key_pem: str

    def to_secret_string(self) -> str:
        return json.dumps({"certificate": self.certificate_pem, "private_key": self.private_key_pem})

    @classmethod
    def from_secret_string(cls, raw: str) -> CertificateAuthority:
        data = json.loads(raw)
        return cls(certificate_pem=data["certificate"], private_key_pem=data["private_key"])

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.certificate_pem.encode("ascii"))


def make_ca(common_name: str = "stanch sandbox code-signing CA", days: int = 3650) -> CertificateAuthority:
    key = generate_key("ec-p256")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(cert.public_bytes(serialization.Encoding.PEM).decode("ascii"), key_pem(key))


@dataclass(frozen=True)
class IssuedCertificate:
    certificate_pem: str
    chain_pem: str | None
    serial: str
    fingerprint_sha256: str
    not_after: datetime


def cert_facts(cert: x509.Certificate) -> tuple[str, str, datetime]:
    """(serial as colon-free lower hex, SHA-256 fingerprint hex, notAfter UTC)."""
    serial = format(cert.serial_number, "x")
    fingerprint = cert.fingerprint(hashes.SHA256()).hex()
    return serial, fingerprint, cert.not_valid_after_utc


def issue_code_signing_cert(
    key: PrivateKey,
    common_name: str,
    validity_days: int = 365,
    ca: CertificateAuthority | None = None,
) -> IssuedCertificate:
    """A code-signing certificate for ``key``; issued by ``ca`` or self-signed when ``ca`` is None."""
    return _issue(key, common_name, validity_days, ca, ExtendedKeyUsageOID.CODE_SIGNING, server=False)


def issue_server_cert(
    key: PrivateKey,
    common_name: str,
    validity_days: int = 365,
    ca: CertificateAuthority | None = None,
) -> IssuedCertificate:
    """A TLS server certificate (serverAuth, SAN = ``common_name``); issued by ``ca`` or self-signed."""
    return _issue(key, common_name, validity_days, ca, ExtendedKeyUsageOID.SERVER_AUTH, server=True)


def _issue(
    key: PrivateKey,
    common_name: str,
    validity_days: int,
    ca: CertificateAuthority | None,
    eku: x509.ObjectIdentifier,
    *,
    server: bool,
) -> IssuedCertificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    if ca is not None:
        ca_cert = ca.certificate
        signer: CertificateIssuerPrivateKeyTypes = load_key(ca.private_key_pem)
        issuer = ca_cert.subject
    else:
        signer, issuer, ca_cert = key, subject, None
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=validity_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=server and isinstance(key, rsa.RSAPrivateKey),
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
    if ca_cert is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    cert = builder.sign(signer, hashes.SHA256())
    serial, fingerprint, not_after = cert_facts(cert)
    return IssuedCertificate(
        certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        chain_pem=ca.certificate_pem if ca is not None else None,
        serial=serial,
        fingerprint_sha256=fingerprint,
        not_after=not_after,
    )
