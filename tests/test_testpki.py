"""The throwaway test PKI: Apple-shaped client certificates, files written and read back."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from apns_legacy import Credentials, Environment, TestPKI, make_test_pki
from apns_legacy.tls import (
    PASS_TYPE_OID,
    PKI_FILES,
    PRODUCTION_OID,
    SANDBOX_OID,
    TOPICS_OID,
    parse_topics_extension,
)


@pytest.fixture(scope="module")
def pki():
    return make_test_pki()


def common_name(credentials):
    return credentials.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def oids(credentials):
    return {extension.oid for extension in credentials.certificate.extensions}


def test_default_client_is_universal(pki):
    client = pki.client
    assert client.topic == "com.example.app"
    assert client.environments == frozenset(Environment)
    assert common_name(client) == "Apple Push Services: com.example.app"
    assert {SANDBOX_OID, PRODUCTION_OID, TOPICS_OID} <= oids(client)
    raw = client.certificate.extensions.get_extension_for_oid(TOPICS_OID).value.value
    assert parse_topics_extension(raw) == (
        "com.example.app",
        "com.example.app.voip",
        "com.example.app.complication",
    )
    subject = client.certificate.subject
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value
    eku = client.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]


@pytest.mark.parametrize(
    ("environments", "prefix", "present", "absent"),
    [
        ({Environment.SANDBOX}, "Apple Development IOS Push Services", SANDBOX_OID, PRODUCTION_OID),
        (
            {Environment.PRODUCTION},
            "Apple Production IOS Push Services",
            PRODUCTION_OID,
            SANDBOX_OID,
        ),
    ],
)
def test_single_environment_clients(pki, environments, prefix, present, absent):
    # a plain tuple/set is accepted as well as a frozenset
    client = pki.issue_client(topic="com.example.one", environments=tuple(environments))
    assert common_name(client) == f"{prefix}: com.example.one"
    assert present in oids(client)
    assert absent not in oids(client)
    assert TOPICS_OID not in oids(client)
    assert client.environments == frozenset(environments)


def test_pass_type_client(pki):
    client = pki.issue_client(topic="pass.com.example.card", pass_type=True)
    assert common_name(client) == "Pass Type ID: pass.com.example.card"
    assert PASS_TYPE_OID in oids(client)


def test_validity_window_is_honoured(pki):
    now = datetime.now(UTC).replace(microsecond=0)
    client = pki.issue_client(not_before=now - timedelta(days=2), not_after=now - timedelta(days=1))
    assert client.certificate.not_valid_after_utc == now - timedelta(days=1)


def test_certificates_chain_to_the_ca(pki):
    for credentials in (pki.client, pki.server, pki.issue_client(topic="x.y")):
        credentials.certificate.verify_directly_issued_by(pki.ca_certificate)
    assert b"BEGIN CERTIFICATE" in pki.ca_pem()
    assert "not Apple" in pki.ca_certificate.subject.rfc4514_string()


def test_server_names(pki):
    san = pki.server.certificate.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]


def test_custom_topic_and_names():
    pki = make_test_pki(
        topic="org.example.legacy",
        environments=[Environment.SANDBOX],
        server_names=("gateway.test", "10.0.0.1"),
    )
    assert pki.client.topic == "org.example.legacy"
    assert pki.client.environments == {Environment.SANDBOX}
    assert pki.server.certificate.subject.rfc4514_string() == "CN=gateway.test"


def test_write_and_load(pki, tmp_path):
    paths = pki.write(tmp_path / "certs", p12_passphrase=b"pw")
    assert tuple(paths) == PKI_FILES
    assert sorted(p.name for p in (tmp_path / "certs").iterdir()) == sorted(PKI_FILES)
    for name in ("server-key.pem", "client-key.pem", "client.p12"):
        assert stat.S_IMODE(paths[name].stat().st_mode) == 0o600
    loaded = TestPKI.load(tmp_path / "certs")
    assert loaded.ca_certificate == pki.ca_certificate
    assert loaded.server == pki.server
    assert loaded.client == pki.client
    assert loaded.ca_key is None
    with pytest.raises(ValueError, match="without the CA key"):
        loaded.issue_client()
    p12 = Credentials.load(paths["client.p12"], passphrase=b"pw")
    assert p12 == pki.client


def test_write_overwrites(pki, tmp_path):
    pki.write(tmp_path, p12_passphrase=b"a")
    other = make_test_pki()
    other.write(tmp_path, p12_passphrase=b"b")
    assert TestPKI.load(tmp_path).client == other.client


def test_repr_hides_keys(pki):
    text = repr(pki)
    assert "ca_key" not in text
    assert "PRIVATE" not in text


def test_intermediate_issues_clients_that_carry_it_as_chain(pki):
    wwdr = pki.issue_intermediate()
    assert wwdr.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    wwdr.certificate.verify_directly_issued_by(pki.ca_certificate)
    client = pki.issue_client(topic="pass.x.y", pass_type=True, issuer=wwdr)
    client.certificate.verify_directly_issued_by(wwdr.certificate)
    assert client.chain == (wwdr.certificate,)
    assert "not Apple" in wwdr.certificate.subject.rfc4514_string()


def test_issue_client_with_a_given_rsa_key():
    from cryptography.hazmat.primitives.asymmetric import rsa

    pki = make_test_pki()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    creds = pki.issue_client(topic="com.example.rsa", key=key)
    assert isinstance(creds.certificate.public_key(), rsa.RSAPublicKey)
    assert creds.private_key is key
    assert creds.topic == "com.example.rsa"
