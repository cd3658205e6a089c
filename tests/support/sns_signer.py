"""A stand-in for SNS's signing certificate: a key, its self-signed certificate, and signing as SNS signs.

The webhook's verifier is real (``mailplane.sender.events.sns``); only the certificate authority
is made here, so the verifier, the events side and the moto tests sign their notifications the
same way: RSA PKCS#1 v1.5 over SNS's canonical string, SHA1 for version 1, SHA256 for version 2.
"""

from __future__ import annotations

import base64
import datetime
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from mailplane.sender.events.sns import canonical_string

NOW = datetime.datetime(2026, 11, 25, 12, 0, 0, tzinfo=datetime.UTC)
"""The tests' "now": certificates are valid around it unless a test asks otherwise."""
REGION = "eu-north-1"
CERT_URL = f"https://sns.{REGION}.amazonaws.com/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem"
"""Where SNS would publish the certificate: a URL the verifier accepts (an SNS host of the region)."""


def sign(msg: dict[str, Any], key: rsa.RSAPrivateKey, version: str = "2", cert_url: str = CERT_URL) -> dict[str, Any]:
    """``msg`` with the signature fields SNS adds, signed by ``key``."""
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(canonical_string(msg), padding.PKCS1v15(), algorithm)
    return {**msg, "SignatureVersion": version, "SigningCertURL": cert_url,
            "Signature": base64.b64encode(signature).decode("ascii")}


@dataclass
class Signer:
    """A key and its certificate; ``fetch`` serves the certificate and keeps the URLs asked for."""

    key: rsa.RSAPrivateKey
    pem: bytes
    fetched: list[str] = field(default_factory=list)

    def fetch(self, url: str) -> bytes:
        self.fetched.append(url)
        return self.pem

    def sign(self, msg: dict[str, Any], cert_url: str = CERT_URL, version: str = "2") -> dict[str, Any]:
        return sign(msg, self.key, version, cert_url)


def new_signer(days_valid: int = 365, start: datetime.datetime = NOW - datetime.timedelta(days=1)) -> Signer:
    """A fresh 2048-bit key and a certificate valid for ``days_valid`` days from ``start``."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=days_valid)).sign(key, hashes.SHA256()))
    return Signer(key, cert.public_bytes(serialization.Encoding.PEM))
