"""Certificate inspection: the summary, its text and JSON forms, and ``cert inspect``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from apns_legacy import Environment, inspect_certificate, make_test_pki
from apns_legacy.cli import main
from apns_legacy.tls import TOPICS_OID, parse_topics_extension

PEM = serialization.Encoding.PEM


@pytest.fixture(scope="module")
def pki():
    return make_test_pki()


def test_summary_of_a_universal_certificate(pki):
    info = inspect_certificate(pki.client.certificate)
    assert info.topic == "com.example.app"
    assert info.environments == frozenset(Environment)
    assert info.topics == (
        "com.example.app",
        "com.example.app.voip",
        "com.example.app.complication",
    )
    assert info.topics_raw is None
    assert not info.is_pass_type
    assert info.subject.startswith("C=US,O=Example Developer,OU=")
    assert "UID=com.example.app" in info.subject
    assert (info.expired, info.not_yet_valid, info.expires_soon) == (False, False, False)
    assert info.status == "valid"
    assert info.not_after.tzinfo is not None
    assert info.not_after == pki.client.certificate.not_valid_after_utc


def test_validity_is_judged_against_now(pki):
    cert = pki.client.certificate
    end = cert.not_valid_after_utc
    soon = inspect_certificate(cert, now=end - timedelta(days=10))
    assert soon.expires_soon
    assert not soon.expired
    assert soon.status == "expires soon"
    assert soon.days_left == 10
    not_soon = inspect_certificate(cert, now=end - timedelta(days=31))
    assert not not_soon.expires_soon
    late = inspect_certificate(cert, now=end + timedelta(seconds=1))
    assert late.expired
    assert not late.expires_soon
    assert late.status == "expired"
    early = inspect_certificate(cert, now=cert.not_valid_before_utc - timedelta(seconds=1))
    assert early.not_yet_valid
    assert early.status == "not yet valid"


def test_pass_type_and_single_environment(pki):
    sandbox = inspect_certificate(pki.issue_client(environments={Environment.SANDBOX}).certificate)
    assert sandbox.environments == {Environment.SANDBOX}
    assert sandbox.topics is None
    passes = inspect_certificate(pki.issue_client(topic="pass.x", pass_type=True).certificate)
    assert passes.is_pass_type


def test_non_apple_certificate(pki):
    info = inspect_certificate(pki.server.certificate)
    assert info.topic is None
    assert info.environments == frozenset()
    assert info.topics is None


# Written by hand from the layout Apple uses (not produced by our encoder):
# SEQUENCE { UTF8 "a.b", SEQUENCE { UTF8 "app" }, UTF8 "a.b.voip", SEQUENCE { UTF8 "voip" } }
GOLDEN_TOPICS = bytes.fromhex(
    " ".join(
        [
            "30 1e",  # SEQUENCE, 30 bytes
            "0c 03 61 2e 62",  # UTF8String "a.b"
            "30 05 0c 03 61 70 70",  # SEQUENCE { UTF8String "app" }
            "0c 08 61 2e 62 2e 76 6f 69 70",  # UTF8String "a.b.voip"
            "30 06 0c 04 76 6f 69 70",  # SEQUENCE { UTF8String "voip" }
        ]
    )
)


def test_topics_golden_vector():
    assert parse_topics_extension(GOLDEN_TOPICS) == ("a.b", "a.b.voip")


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"\x05\x00",  # NULL, not a sequence
        GOLDEN_TOPICS[:-1],  # truncated
        GOLDEN_TOPICS + b"\x00",  # trailing bytes
        bytes.fromhex("3003020101"),  # an INTEGER inside
        bytes.fromhex("30040c02ff00"),  # invalid UTF-8
        bytes.fromhex("3084ffffffff"),  # absurd length
        bytes.fromhex("3080"),  # indefinite length (not DER)
    ],
)
def test_topics_parser_is_defensive(value):
    assert parse_topics_extension(value) is None


def certificate_with_extension(pki, value: bytes) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "odd")]))
        .issuer_name(pki.ca_certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=100))
        .add_extension(x509.UnrecognizedExtension(TOPICS_OID, value), critical=False)
        .sign(pki.ca_key, hashes.SHA256())
    )


def test_unparsable_topics_keep_the_raw_hex(pki):
    info = inspect_certificate(certificate_with_extension(pki, b"\x04\x02hi"))
    assert info.topics is None
    assert info.topics_raw == "04026869"
    assert "(unparsed) 04026869" in info.to_text()


def test_json_and_text(pki):
    info = inspect_certificate(pki.client.certificate)
    data = json.loads(info.to_json())
    assert data["topic"] == "com.example.app"
    assert data["environments"] == ["production", "sandbox"]
    assert data["topics"][0] == "com.example.app"
    assert data["not_after"].endswith("Z")
    assert data["status"] == "valid"
    assert data["expired"] is False
    text = info.to_text()
    assert "Topic:        com.example.app" in text
    assert "Environments: production, sandbox" in text
    assert "Status:       valid (" in text


# -- the command line ----------------------------------------------------------------


@pytest.fixture
def files(pki, tmp_path):
    return pki.write(tmp_path, p12_passphrase=b"p12-secret")


def run(capsys, *argv):
    code = main(["cert", "inspect", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_pem(files, capsys):
    code, out, err = run(capsys, files["client.pem"])
    assert code == 0
    assert "Topic:        com.example.app" in out
    assert err == ""


def test_cli_pem_with_key_and_json(files, capsys):
    code, out, _ = run(capsys, files["client.pem"], "--key", files["client-key.pem"], "--json")
    assert code == 0
    data = json.loads(out)
    assert data["topic"] == "com.example.app"
    assert data["key"] == "matches"
    assert data["chain"] == 0


def test_cli_p12_with_passphrase_env(files, capsys, monkeypatch):
    monkeypatch.setenv("P12_PASS", "p12-secret")
    code, out, _ = run(capsys, files["client.p12"], "--passphrase-env", "P12_PASS")
    assert code == 0
    assert "Private key:  matches the certificate" in out


def test_cli_p12_wrong_passphrase(files, capsys, monkeypatch):
    monkeypatch.setenv("P12_PASS", "nope")
    code, _, err = run(capsys, files["client.p12"], "--passphrase-env", "P12_PASS")
    assert code == 2
    assert "wrong passphrase" in err
    assert "nope" not in err


def test_cli_missing_passphrase_variable(files, capsys, monkeypatch):
    monkeypatch.delenv("NO_SUCH_VAR", raising=False)
    code, _, err = run(capsys, files["client.p12"], "--passphrase-env", "NO_SUCH_VAR")
    assert code == 2
    assert "NO_SUCH_VAR is not set" in err


def test_cli_key_mismatch(files, capsys):
    code, _, err = run(capsys, files["client.pem"], "--key", files["server-key.pem"])
    assert code == 2
    assert "does not match" in err


@pytest.mark.parametrize("name", ["missing.pem", "garbage.bin"])
def test_cli_unreadable(tmp_path, capsys, name):
    (tmp_path / "garbage.bin").write_bytes(b"\x00garbage")
    code, _, err = run(capsys, tmp_path / name)
    assert code == 2
    assert err.startswith("apns-legacy cert: ")


def test_cli_der(pki, tmp_path, capsys):
    path = tmp_path / "aps.cer"
    path.write_bytes(pki.client.certificate.public_bytes(serialization.Encoding.DER))
    code, out, _ = run(capsys, path)
    assert code == 0
    assert "com.example.app" in out


def test_cli_expiring_soon_warns(pki, tmp_path, capsys):
    now = datetime.now(UTC)
    soon = pki.issue_client(not_after=now + timedelta(days=12))
    path = tmp_path / "soon.pem"
    path.write_bytes(soon.certificate.public_bytes(PEM))
    code, out, err = run(capsys, path)
    assert code == 0
    assert "EXPIRES SOON" in out
    assert err.startswith(f"warning: {path}: the certificate expires in 11 days")


def test_cli_expired_exits_1(pki, tmp_path, capsys):
    now = datetime.now(UTC)
    old = pki.issue_client(not_before=now - timedelta(days=30), not_after=now - timedelta(days=2))
    path = tmp_path / "old.pem"
    # with its key: an expired certificate still loads for inspection
    path.write_bytes(
        old.certificate.public_bytes(PEM)
        + old.private_key.private_bytes(
            PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    code, out, err = run(capsys, path)
    assert code == 1
    assert "EXPIRED" in out
    assert "expired on" in err


def test_cli_cert_without_action(capsys):
    assert main(["cert"]) == 2
    assert "choose an action" in capsys.readouterr().err


def test_text_for_a_plain_certificate(pki):
    text = inspect_certificate(pki.server.certificate).to_text()
    assert "Topic:        -" in text
    assert "Topics:       -" in text
    assert "Environments: none" in text


def test_cli_not_yet_valid_exits_1(pki, tmp_path, capsys):
    now = datetime.now(UTC)
    future = pki.issue_client(not_before=now + timedelta(days=2), not_after=now + timedelta(days=9))
    path = tmp_path / "future.pem"
    path.write_bytes(future.certificate.public_bytes(PEM))
    code, out, err = run(capsys, path)
    assert code == 1
    assert "NOT YET VALID" in out
    assert "is not valid before" in err


def test_cli_warns_for_a_certificate_that_is_not_a_push_certificate(pki, tmp_path, capsys):
    # The simulator's server certificate: a TLS server certificate, no UID, no APNs OIDs.
    files = pki.write(tmp_path, p12_passphrase=b"p12-secret")
    code, out, err = run(capsys, files["server.pem"])
    assert code == 0
    assert "Topic:        -" in out
    assert err == (
        f"warning: {files['server.pem']}: not a push certificate (no subject UID and none of "
        "Apple's push extensions): Apple's gateway and feedback service would refuse it\n"
    )
    assert inspect_certificate(pki.client.certificate).is_push_certificate


def test_cli_reports_an_unreadable_file_without_errno(tmp_path, capsys):
    code, _, err = run(capsys, tmp_path / "missing.pem")
    assert code == 2
    missing = tmp_path / "missing.pem"
    assert err == f"apns-legacy cert: {missing}: cannot read (No such file or directory)\n"
