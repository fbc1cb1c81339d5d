"""SSL certificates with real generated X.509 certificates: parsing, validation refusals with
their fields, the one active certificate, gateway coverage by exact and wildcard names,
warnings, and the private key kept encrypted and never returned."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from app.graphql.ids import to_global_id
from app.models import AuditEntry, Certificate, CloudGateway
from app.services.certificates import covers, decrypt_key, name_matches

GA = "Service Provider Global Administrator"
NOW = datetime.now(UTC)

UPLOAD = """
mutation($input: CertificateUploadInput!) {
  certificateUpload(input: $input) {
    id name subject issuer subjectAltNames notBefore notAfter fingerprintSha256 active
    expiresInDays warnings
  }
}"""


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def make_cert(
    key,
    cn: str = "gw.example.com",
    sans: list[str] | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    issuer: x509.Name | None = None,
    issuer_key=None,
    ca: bool = False,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer or subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - timedelta(days=1))
        .not_valid_after(not_after or NOW + timedelta(days=365))
    )
    if sans is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in sans]), critical=False
        )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
    return builder.sign(issuer_key or key, hashes.SHA256())


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def key_pem(key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def upload_vars(cert_pem: str, private_pem: str, name: str = "gateways") -> dict:
    return {"input": {"name": name, "certificatePem": cert_pem, "privateKeyPem": private_pem}}


async def upload(gql, token, cert_pem: str, private_pem: str, name: str = "gateways") -> dict:
    return await gql(UPLOAD, upload_vars(cert_pem, private_pem, name), token=token)


def error(body: dict) -> tuple[str, str | None, str]:
    assert body.get("errors"), body
    ext = body["errors"][0]["extensions"]
    return ext["code"], ext.get("field"), body["errors"][0]["message"]


# --- names --------------------------------------------------------------------------------


def test_name_matching_exact_and_wildcard_one_label() -> None:
    assert name_matches("gw.example.com", "GW.Example.com.")
    assert not name_matches("gw.example.com", "gw2.example.com")
    assert name_matches("*.example.com", "gw.example.com")
    assert not name_matches("*.example.com", "a.gw.example.com")  # exactly one label
    assert not name_matches("*.example.com", "example.com")
    assert not name_matches("*.*.example.com", "a.b.example.com")
    assert not name_matches("gw*.example.com", "gw1.example.com")
    assert covers(["*.example.com"], "gw.example.com")
    assert not covers(["*.example.com", "10.0.0.1"], "10.0.0.1")  # IPs are not DNS names


# --- upload and validation ----------------------------------------------------------------


async def test_rsa_upload_stores_parsed_fields_and_encrypts_the_key(world, gql) -> None:
    key = rsa_key()
    cert = make_cert(key, cn="cloud.example.com", sans=["cloud.example.com", "*.cc.example.com"])
    private = key_pem(key)
    body = await upload(gql, world.token("Provider", GA), pem(cert), private)
    assert "errors" not in body, body
    data = body["data"]["certificateUpload"]
    assert data["subject"] == "CN=cloud.example.com"
    assert data["issuer"] == "CN=cloud.example.com"
    assert data["subjectAltNames"] == ["cloud.example.com", "*.cc.example.com"]
    assert data["fingerprintSha256"] == cert.fingerprint(hashes.SHA256()).hex()
    assert data["active"] is True
    assert data["expiresInDays"] in (363, 364)
    assert data["warnings"] == []
    # The key is nowhere in the answer...
    assert "PRIVATE KEY" not in json.dumps(body)
    body_text = private.split("\n")[1]
    assert body_text not in json.dumps(body)
    # ...and stored encrypted, not as PEM text; decrypting gives the same key back.
    row = await Certificate.get(fingerprint_sha256=data["fingerprintSha256"])
    assert "PRIVATE KEY" not in row.key_encrypted
    assert body_text not in row.key_encrypted
    restored = serialization.load_pem_private_key(decrypt_key(row.key_encrypted), password=None)
    assert restored.private_numbers() == key.private_numbers()  # type: ignore[union-attr]
    # The audit entry records the upload, without the key.
    entry = await AuditEntry.get(action="certificateUpload", outcome="SUCCESS")
    assert entry.object_id == str(row.id)
    assert "PRIVATE KEY" not in json.dumps(entry.details)
    # Reading it back: no field exposes the key.
    read = await gql(
        "query($id: ID!) { certificate(id: $id) { name subject active } }",
        {"id": to_global_id("Certificate", row.id)},
        token=world.token("Provider", GA),
    )
    assert read["data"] == {
        "certificate": {"name": "gateways", "subject": "CN=cloud.example.com", "active": True}
    }


async def test_ec_certificate_without_sans_uses_the_common_name(world, gql) -> None:
    key = ec_key()
    body = await upload(
        gql, world.token("Provider", GA), pem(make_cert(key, cn="gw.example.net")), key_pem(key)
    )
    assert "errors" not in body, body
    assert body["data"]["certificateUpload"]["subjectAltNames"] == ["gw.example.net"]


async def test_expired_certificate_is_refused_with_its_date(world, gql) -> None:
    key = ec_key()
    expired_on = NOW - timedelta(days=3)
    cert = make_cert(key, not_before=NOW - timedelta(days=400), not_after=expired_on)
    code, field, message = error(
        await upload(gql, world.token("Provider", GA), pem(cert), key_pem(key))
    )
    assert (code, field) == ("BAD_USER_INPUT", "certificatePem")
    assert "expired on " + expired_on.strftime("%Y-%m-%d") in message
    assert await Certificate.all().count() == 0


async def test_not_yet_valid_certificate_is_refused(world, gql) -> None:
    key = ec_key()
    starts = NOW + timedelta(days=5)
    cert = make_cert(key, not_before=starts, not_after=NOW + timedelta(days=300))
    code, field, message = error(
        await upload(gql, world.token("Provider", GA), pem(cert), key_pem(key))
    )
    assert (code, field) == ("BAD_USER_INPUT", "certificatePem")
    assert "not valid yet" in message and starts.strftime("%Y-%m-%d") in message


async def test_mismatched_key_is_refused(world, gql) -> None:
    cert = make_cert(ec_key())
    for other in (ec_key(), rsa_key()):
        code, field, message = error(
            await upload(gql, world.token("Provider", GA), pem(cert), key_pem(other))
        )
        assert (code, field) == ("BAD_USER_INPUT", "privateKeyPem")
        assert "does not match" in message


async def test_garbage_is_refused_with_the_field(world, gql) -> None:
    key = ec_key()
    token = world.token("Provider", GA)
    code, field, _ = error(await upload(gql, token, "not a certificate", key_pem(key)))
    assert (code, field) == ("BAD_USER_INPUT", "certificatePem")
    code, field, _ = error(await upload(gql, token, pem(make_cert(key)), "not a key"))
    assert (code, field) == ("BAD_USER_INPUT", "privateKeyPem")


async def test_chain_leaf_first_is_accepted_and_out_of_order_refused(world, gql) -> None:
    ca_key, leaf_key = ec_key(), ec_key()
    ca = make_cert(ca_key, cn="Example Issuing CA", ca=True)
    leaf = make_cert(
        leaf_key, cn="gw.example.com", sans=["gw.example.com"], issuer=ca.subject, issuer_key=ca_key
    )
    token = world.token("Provider", GA)
    code, field, message = error(await upload(gql, token, pem(ca) + pem(leaf), key_pem(leaf_key)))
    # CA first: the CA did not issue the leaf that follows it.
    assert (code, field) == ("BAD_USER_INPUT", "certificatePem"), message
    assert "out of order" in message
    body = await upload(gql, token, pem(leaf) + pem(ca), key_pem(leaf_key))
    assert "errors" not in body, body
    data = body["data"]["certificateUpload"]
    assert data["subject"] == "CN=gw.example.com"
    assert data["issuer"] == "CN=Example Issuing CA"
    row = await Certificate.get(subject="CN=gw.example.com")
    assert row.certificate_pem.count("BEGIN CERTIFICATE") == 2
    # A chain whose second certificate did not issue the first is refused.
    other_ca = make_cert(ec_key(), cn="Someone Else CA", ca=True)
    leaf2_key = ec_key()
    leaf2 = make_cert(leaf2_key, cn="gw2.example.com", issuer=ca.subject, issuer_key=ca_key)
    code, field, message = error(
        await upload(gql, token, pem(leaf2) + pem(other_ca), key_pem(leaf2_key))
    )
    assert (code, field) == ("BAD_USER_INPUT", "certificatePem")
    assert "out of order" in message


async def test_duplicate_is_a_conflict_and_a_new_upload_replaces_the_active_one(world, gql) -> None:
    token = world.token("Provider", GA)
    k1, k2 = ec_key(), ec_key()
    c1 = make_cert(k1, cn="one.example.com")
    first = await upload(gql, token, pem(c1), key_pem(k1), "one")
    assert "errors" not in first, first
    code, field, _ = error(await upload(gql, token, pem(c1), key_pem(k1), "again"))
    assert (code, field) == ("CONFLICT", "certificatePem")
    second = await upload(gql, token, pem(make_cert(k2, cn="two.example.com")), key_pem(k2), "two")
    assert "errors" not in second, second
    listing = await gql("{ certificates { nodes { name active } } }", token=token)
    assert listing["data"]["certificates"]["nodes"] == [
        {"name": "one", "active": False},
        {"name": "two", "active": True},
    ]
    delete = "mutation($id: ID!) { certificateDelete(id: $id) { deletedId } }"
    code, _, message = error(
        await gql(delete, {"id": second["data"]["certificateUpload"]["id"]}, token=token)
    )
    assert code == "CONFLICT" and "active" in message
    body = await gql(delete, {"id": first["data"]["certificateUpload"]["id"]}, token=token)
    assert "errors" not in body, body
    assert await Certificate.all().values_list("name", flat=True) == ["two"]


# --- coverage and warnings ----------------------------------------------------------------


async def test_gateway_coverage_by_exact_and_wildcard_names_and_warnings(world, gql) -> None:
    for name, address in (
        ("exact", "gw.example.com"),
        ("wild", "eu.cc.example.com"),
        ("too-deep", "a.eu.cc.example.com"),
        ("apex", "cc.example.com"),
        ("by-ip", "192.0.2.10"),
    ):
        await CloudGateway.create(name=name, address=address)
    token = world.token("Provider", GA)
    query = "{ cloudGateways { nodes { name coveredByCertificate } } }"
    before = await gql(query, token=token)
    assert all(not n["coveredByCertificate"] for n in before["data"]["cloudGateways"]["nodes"])

    key = ec_key()
    cert = make_cert(
        key,
        cn="gw.example.com",
        sans=["gw.example.com", "*.cc.example.com"],
        not_after=NOW + timedelta(days=10, hours=1),
    )
    body = await upload(gql, token, pem(cert), key_pem(key))
    assert "errors" not in body, body
    after = await gql(query, token=token)
    assert {
        n["name"]: n["coveredByCertificate"] for n in after["data"]["cloudGateways"]["nodes"]
    } == {
        "exact": True,
        "wild": True,
        "too-deep": False,
        "apex": False,
        "by-ip": False,
    }
    warnings = (await gql("{ certificates { nodes { expiresInDays warnings } } }", token=token))[
        "data"
    ]["certificates"]["nodes"][0]
    assert warnings["expiresInDays"] == 10
    assert warnings["warnings"] == [
        f"the certificate expires in 10 day(s), on {cert.not_valid_after_utc:%Y-%m-%d}",
        "gateways not covered by the certificate: apex, by-ip, too-deep",
    ]


async def test_no_warning_far_from_expiry_with_every_gateway_covered(world, gql) -> None:
    await CloudGateway.create(name="gw", address="gw.example.com")
    key = ec_key()
    cert = make_cert(key, sans=["*.example.com"], not_after=NOW + timedelta(days=31, hours=1))
    body = await upload(gql, world.token("Provider", GA), pem(cert), key_pem(key))
    assert body["data"]["certificateUpload"]["warnings"] == [], body


async def test_warning_window_follows_the_setting(world, gql, use_settings) -> None:
    use_settings(certificate_warning_days=60)
    key = ec_key()
    cert = make_cert(key, not_after=NOW + timedelta(days=45, hours=1))
    body = await upload(gql, world.token("Provider", GA), pem(cert), key_pem(key))
    assert body["data"]["certificateUpload"]["warnings"] == [
        f"the certificate expires in 45 day(s), on {cert.not_valid_after_utc:%Y-%m-%d}"
    ]


async def test_staff_without_configuration_rights_cannot_upload_or_read(world, gql) -> None:
    key = ec_key()
    for org, role in (
        ("Provider", "Service Provider Operator"),
        ("R1", GA),
        ("A1", "Company Owner"),
    ):
        body = await upload(gql, world.token(org, role), pem(make_cert(key)), key_pem(key))
        assert error(body)[0] == "FORBIDDEN", (org, role)
        body = await gql("{ certificates { nodes { id } } }", token=world.token(org, role))
        assert error(body)[0] == "FORBIDDEN", (org, role)
    assert await Certificate.all().count() == 0
