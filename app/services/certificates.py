"""SSL certificates for the cloud gateways: parse and validate an uploaded PEM (certificate
chain + private key) with a real X.509 library, keep the private key encrypted at rest, keep
exactly one certificate active, and tell which gateway addresses a certificate covers."""

from __future__ import annotations

import base64
import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from itertools import pairwise

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import NameOID

from app.authz.capabilities import CLOUD_INFRASTRUCTURE
from app.authz.matrix import Action
from app.errors import BadInput, Conflict, NotFound
from app.models import Certificate
from app.services.actor import Actor
from app.services.audit import audited
from app.services.guards import require
from app.settings import get_settings

CERT_FIELD = "certificatePem"
KEY_FIELD = "privateKeyPem"
_HKDF_INFO = b"tenantry/certificate-private-keys/v1"


# --- the private key at rest ---------------------------------------------------------------


@lru_cache(maxsize=4)
def _fernet(secret: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
        secret.encode()
    )
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt_key(pem: bytes) -> str:
    return _fernet(get_settings().secret_key).encrypt(pem).decode()


def decrypt_key(token: str) -> bytes:
    """For the gateways' configuration push; never exposed through the API."""
    return _fernet(get_settings().secret_key).decrypt(token.encode())


# --- parsing and validation ----------------------------------------------------------------


@dataclass(frozen=True)
class ParsedCertificate:
    chain_pem: str
    key_pem: bytes
    subject: str
    issuer: str
    dns_names: list[str]
    not_before: datetime
    not_after: datetime
    fingerprint_sha256: str


def _common_names(cert: x509.Certificate) -> list[str]:
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]


def _dns_names(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return [str(name) for name in ext.value.get_values_for_type(x509.DNSName)]


def _spki(public_key: object) -> bytes:
    return public_key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def parse_upload(
    certificate_pem: str, private_key_pem: str, at: datetime | None = None
) -> ParsedCertificate:
    """The leaf is the first certificate of the chain; every refusal names the input field."""
    at = at or datetime.now(UTC)
    try:
        chain = x509.load_pem_x509_certificates(certificate_pem.strip().encode())
    except ValueError:
        raise BadInput(
            "the certificate is not a PEM-encoded X.509 certificate (-----BEGIN CERTIFICATE-----)",
            field=CERT_FIELD,
        ) from None
    if not chain:
        raise BadInput("no certificate found in the PEM text", field=CERT_FIELD)
    leaf = chain[0]
    for child, parent in pairwise(chain):
        if child.issuer != parent.subject:
            raise BadInput(
                "the chain is out of order: each certificate must be followed by its issuer's "
                "(leaf first)",
                field=CERT_FIELD,
            )
    try:
        key = serialization.load_pem_private_key(private_key_pem.strip().encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise BadInput(
            "the private key is not an unencrypted PEM private key (RSA or EC)", field=KEY_FIELD
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise BadInput("only RSA and EC private keys are supported", field=KEY_FIELD)
    if _spki(key.public_key()) != _spki(leaf.public_key()):
        raise BadInput(
            "the private key does not match the certificate's public key", field=KEY_FIELD
        )
    not_before, not_after = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    if not_after <= at:
        raise BadInput(
            f"the certificate expired on {not_after:%Y-%m-%d %H:%M} UTC", field=CERT_FIELD
        )
    if not_before > at:
        raise BadInput(
            f"the certificate is not valid yet: it becomes valid on {not_before:%Y-%m-%d %H:%M} UTC",
            field=CERT_FIELD,
        )
    chain_pem = "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in chain)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return ParsedCertificate(
        chain_pem=chain_pem,
        key_pem=key_pem,
        subject=leaf.subject.rfc4514_string(),
        issuer=leaf.issuer.rfc4514_string(),
        dns_names=_dns_names(leaf) or _common_names(leaf),
        not_before=not_before,
        not_after=not_after,
        fingerprint_sha256=leaf.fingerprint(hashes.SHA256()).hex(),
    )


# --- which names a certificate covers ------------------------------------------------------


def _normalise(name: str) -> str:
    return name.strip().rstrip(".").lower()


def name_matches(pattern: str, host: str) -> bool:
    """Exact DNS name, or a wildcard `*.example.com` standing for exactly one leftmost label."""
    pattern, host = _normalise(pattern), _normalise(host)
    if not pattern or not host:
        return False
    if not pattern.startswith("*."):
        return pattern == host
    suffix = pattern[1:]  # ".example.com"
    if "*" in suffix or not host.endswith(suffix):
        return False
    label = host[: -len(suffix)]
    return bool(label) and "." not in label


def covers(dns_names: list[str], address: str) -> bool:
    """Whether a certificate naming `dns_names` covers a gateway reached at `address`. An IP
    address is never covered: the certificates carry DNS names."""
    try:
        ipaddress.ip_address(address.strip())
        return False
    except ValueError:
        pass
    return any(name_matches(name, address) for name in dns_names)


def expires_in_days(row: Certificate, at: datetime | None = None) -> int:
    delta = row.not_after - (at or datetime.now(UTC))
    return delta.days


def warnings_for(row: Certificate, uncovered_gateways: list[str]) -> list[str]:
    days = expires_in_days(row)
    out: list[str] = []
    if days < 0:
        out.append(f"the certificate expired on {row.not_after:%Y-%m-%d}")
    elif days <= get_settings().certificate_warning_days:
        out.append(f"the certificate expires in {days} day(s), on {row.not_after:%Y-%m-%d}")
    if row.active and uncovered_gateways:
        out.append(
            "gateways not covered by the certificate: " + ", ".join(sorted(uncovered_gateways))
        )
    return out


# --- the service ---------------------------------------------------------------------------


async def certificate_in_scope(actor: Actor, certificate_id: int) -> Certificate:
    require(actor.p, CLOUD_INFRASTRUCTURE, Action.READ)
    row = await Certificate.filter(id=certificate_id).first()
    if row is None:
        raise NotFound("certificate")
    return row


def _clean_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise BadInput("a name is required", field="name")
    if len(name) > 200:
        raise BadInput("the name is longer than 200 characters", field="name")
    return name


async def upload_certificate(
    actor: Actor, name: str, certificate_pem: str, private_key_pem: str
) -> Certificate:
    """The new certificate becomes the active one; the previous one is deactivated in the same
    transaction."""
    p = actor.p
    require(p, CLOUD_INFRASTRUCTURE, Action.CREATE)
    name = _clean_name(name)
    parsed = parse_upload(certificate_pem, private_key_pem)
    async with audited(
        actor, "certificateUpload", "Certificate", organization_id=p.organization_id
    ) as entry:
        if await Certificate.filter(fingerprint_sha256=parsed.fingerprint_sha256).exists():
            raise Conflict("this certificate was already uploaded", field=CERT_FIELD)
        # Lock the active row(s) so two uploads cannot both leave theirs active (PostgreSQL).
        previous = (
            await Certificate.filter(active=True).select_for_update().values_list("id", flat=True)
        )
        await Certificate.filter(active=True).update(active=False)
        row = await Certificate.create(
            name=name,
            certificate_pem=parsed.chain_pem,
            key_encrypted=encrypt_key(parsed.key_pem),
            subject=parsed.subject,
            issuer=parsed.issuer,
            subject_alt_names=parsed.dns_names,
            not_before=parsed.not_before,
            not_after=parsed.not_after,
            fingerprint_sha256=parsed.fingerprint_sha256,
            active=True,
        )
        entry.bind(
            row.id,
            name=name,
            subject=parsed.subject,
            fingerprintSha256=parsed.fingerprint_sha256,
            notAfter=parsed.not_after.isoformat(),
            deactivated=sorted(int(i) for i in previous),  # type: ignore[call-overload]
        )
    return row


async def delete_certificate(actor: Actor, certificate_id: int) -> int:
    p = actor.p
    row = await certificate_in_scope(actor, certificate_id)
    require(p, CLOUD_INFRASTRUCTURE, Action.DELETE)
    async with audited(
        actor, "certificateDelete", "Certificate", row.id, p.organization_id
    ) as entry:
        entry.details.update(name=row.name, fingerprintSha256=row.fingerprint_sha256)
        if row.active:
            raise Conflict(
                "the active certificate cannot be removed: upload its replacement first",
                field="id",
            )
        await row.delete()
    return certificate_id
