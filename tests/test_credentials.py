"""Credentials: every form loads the same identity; every failure has its own error."""

from __future__ import annotations

import os
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from apns_legacy import Credentials, CredentialsError, Environment, make_test_pki
from apns_legacy.tls import (
    CertificateExpiredError,
    CertificateNotYetValidError,
    KeyMismatchError,
    UnreadableCredentialsError,
    WrongPassphraseError,
)

PASSPHRASE = b"correct horse battery staple"
PEM = serialization.Encoding.PEM


@pytest.fixture(scope="module")
def pki():
    return make_test_pki()


def cert_pem(credentials):
    return credentials.certificate.public_bytes(PEM)


def key_pem(credentials, passphrase=None, fmt=serialization.PrivateFormat.PKCS8):
    encryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return credentials.private_key.private_bytes(PEM, fmt, encryption)


def same_identity(loaded, original):
    assert loaded.certificate == original.certificate
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert loaded.private_key.public_key().public_bytes(PEM, spki) == (
        original.private_key.public_key().public_bytes(PEM, spki)
    )


# -- every form ---------------------------------------------------------------------


def test_pem_separate(pki):
    loaded = Credentials.from_pem(cert_pem(pki.client), key_pem(pki.client))
    same_identity(loaded, pki.client)
    assert loaded.chain == ()


@pytest.mark.parametrize("key_first", [False, True])
def test_pem_combined_with_chain(pki, key_first):
    # The CA comes first in the file on purpose: the leaf is the one matching the key.
    certs = pki.ca_pem() + cert_pem(pki.client)
    blob = key_pem(pki.client) + certs if key_first else certs + key_pem(pki.client)
    loaded = Credentials.from_pem(blob)
    same_identity(loaded, pki.client)
    assert loaded.chain == (pki.ca_certificate,)


@pytest.mark.parametrize(
    "fmt", [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL]
)
def test_encrypted_pem_with_passphrase(pki, fmt):
    encrypted = key_pem(pki.client, PASSPHRASE, fmt)
    assert b"ENCRYPTED" in encrypted
    loaded = Credentials.from_pem(cert_pem(pki.client), encrypted, passphrase=PASSPHRASE)
    same_identity(loaded, pki.client)


def test_passphrase_for_unencrypted_key_is_ignored(pki):
    loaded = Credentials.from_pem(cert_pem(pki.client), key_pem(pki.client), passphrase=b"x")
    same_identity(loaded, pki.client)


def test_pkcs12_with_passphrase(pki):
    data = pki.client.to_pkcs12(PASSPHRASE)
    same_identity(Credentials.from_pkcs12(data, PASSPHRASE), pki.client)


def test_pkcs12_without_passphrase(pki):
    data = pki.client.to_pkcs12(b"")
    same_identity(Credentials.from_pkcs12(data), pki.client)


def test_pkcs12_keeps_the_chain(pki):
    with_chain = Credentials(pki.client.certificate, pki.client.private_key, [pki.ca_certificate])
    loaded = Credentials.from_pkcs12(with_chain.to_pkcs12(PASSPHRASE), PASSPHRASE)
    assert loaded.chain == (pki.ca_certificate,)


def write_forms(pki, folder: Path):
    """Each credential form as files: name -> (cert path, key path or None, passphrase)."""
    client = pki.client
    (folder / "cert.pem").write_bytes(cert_pem(client))
    (folder / "key.pem").write_bytes(key_pem(client))
    (folder / "combined.pem").write_bytes(cert_pem(client) + key_pem(client))
    (folder / "key-enc.pem").write_bytes(key_pem(client, PASSPHRASE))
    (folder / "client.p12").write_bytes(client.to_pkcs12(PASSPHRASE))
    (folder / "aps.cer").write_bytes(client.certificate.public_bytes(serialization.Encoding.DER))
    return {
        "pem separate": (folder / "cert.pem", folder / "key.pem", None),
        "pem combined": (folder / "combined.pem", None, None),
        "pem encrypted": (folder / "cert.pem", folder / "key-enc.pem", PASSPHRASE),
        "pkcs12": (folder / "client.p12", None, PASSPHRASE),
        "der cert + pem key": (folder / "aps.cer", folder / "key.pem", None),
    }


FORMS = ["pem separate", "pem combined", "pem encrypted", "pkcs12", "der cert + pem key"]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("how", ["str path", "Path", "bytes"])
def test_load_detects_the_form(pki, tmp_path, form, how):
    cert, key, passphrase = write_forms(pki, tmp_path)[form]
    if how == "str path":
        cert, key = str(cert), (None if key is None else str(key))
    elif how == "bytes":
        cert, key = cert.read_bytes(), (None if key is None else key.read_bytes())
    same_identity(Credentials.load(cert, key, passphrase=passphrase), pki.client)


# -- properties ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "environments",
    [
        frozenset({Environment.SANDBOX}),
        frozenset({Environment.PRODUCTION}),
        frozenset(Environment),
        frozenset(),
    ],
)
def test_topic_and_environments(pki, environments):
    credentials = pki.issue_client(topic="com.example.other", environments=environments)
    assert credentials.topic == "com.example.other"
    assert credentials.environments == environments


def test_topic_none_without_uid(pki):
    assert pki.server.topic is None
    assert pki.server.environments == frozenset()


def test_repr_and_eq_leave_the_key_out(pki):
    text = repr(pki.client)
    assert "private_key" not in text
    assert "PRIVATE" not in text
    assert "Credentials(" in text
    again = Credentials.from_pem(cert_pem(pki.client), key_pem(pki.client))
    assert again == pki.client


def test_environment_parse():
    assert Environment.parse("development") is Environment.SANDBOX
    assert Environment.parse(" Production ") is Environment.PRODUCTION
    with pytest.raises(ValueError, match="staging"):
        Environment.parse("staging")


# -- each failure is its own error ---------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(UnreadableCredentialsError, match="no such file"):
        Credentials.load(tmp_path / "nope.pem")


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(UnreadableCredentialsError, match="cannot read"):
        Credentials.load(tmp_path)


@pytest.mark.parametrize("garbage", [b"", b"hello world", b"\x00" * 64, b"0\x03\x02\x01\x05"])
def test_garbage(garbage):
    with pytest.raises(UnreadableCredentialsError):
        Credentials.load(garbage)


def test_pem_without_certificate(pki):
    with pytest.raises(UnreadableCredentialsError, match="no PEM certificate"):
        Credentials.from_pem(key_pem(pki.client))


def test_cert_without_key(pki):
    with pytest.raises(UnreadableCredentialsError, match="no private key"):
        Credentials.from_pem(cert_pem(pki.client))


def test_key_file_without_key(pki):
    with pytest.raises(UnreadableCredentialsError, match="no readable private key"):
        Credentials.from_pem(cert_pem(pki.client), cert_pem(pki.client))


def test_der_certificate_needs_a_key(pki):
    der = pki.client.certificate.public_bytes(serialization.Encoding.DER)
    with pytest.raises(UnreadableCredentialsError, match="without a key"):
        Credentials.load(der)


def test_pkcs12_with_separate_key_is_refused(pki):
    with pytest.raises(UnreadableCredentialsError, match="carries its own key"):
        Credentials.load(pki.client.to_pkcs12(PASSPHRASE), key_pem(pki.client))


def test_encrypted_key_without_passphrase(pki):
    with pytest.raises(WrongPassphraseError, match="no passphrase was given"):
        Credentials.from_pem(cert_pem(pki.client), key_pem(pki.client, PASSPHRASE))


def test_encrypted_key_wrong_passphrase(pki):
    with pytest.raises(WrongPassphraseError, match="wrong passphrase"):
        Credentials.from_pem(
            cert_pem(pki.client), key_pem(pki.client, PASSPHRASE), passphrase=b"guess"
        )


def test_pkcs12_wrong_passphrase(pki):
    with pytest.raises(WrongPassphraseError, match="wrong passphrase"):
        Credentials.from_pkcs12(pki.client.to_pkcs12(PASSPHRASE), b"guess")


def test_pkcs12_missing_passphrase(pki):
    with pytest.raises(WrongPassphraseError, match="no passphrase was given"):
        Credentials.from_pkcs12(pki.client.to_pkcs12(PASSPHRASE))


def test_pkcs12_garbage():
    with pytest.raises(UnreadableCredentialsError, match="not a PKCS#12"):
        Credentials.from_pkcs12(b"definitely not")


def test_key_mismatch(pki):
    with pytest.raises(KeyMismatchError, match="does not match"):
        Credentials.from_pem(cert_pem(pki.client), key_pem(pki.server))


def test_key_mismatch_on_direct_construction(pki):
    with pytest.raises(KeyMismatchError):
        Credentials(pki.client.certificate, pki.server.private_key)


def test_expired(pki):
    now = datetime.now(UTC)
    old = pki.issue_client(not_before=now - timedelta(days=400), not_after=now - timedelta(days=1))
    pem, key = cert_pem(old), key_pem(old)
    with pytest.raises(CertificateExpiredError, match="expired on"):
        Credentials.from_pem(pem, key)
    with pytest.raises(CertificateExpiredError):
        Credentials.from_pkcs12(old.to_pkcs12(PASSPHRASE), PASSPHRASE)
    assert Credentials.from_pem(pem, key, allow_expired=True).certificate == old.certificate


def test_not_yet_valid(pki):
    now = datetime.now(UTC)
    future = pki.issue_client(
        not_before=now + timedelta(days=1), not_after=now + timedelta(days=30)
    )
    with pytest.raises(CertificateNotYetValidError, match="not valid before"):
        Credentials.from_pem(cert_pem(future), key_pem(future))
    assert Credentials.from_pem(cert_pem(future), key_pem(future), allow_expired=True)


def test_error_types_are_distinct():
    kinds = [
        UnreadableCredentialsError,
        WrongPassphraseError,
        KeyMismatchError,
        CertificateExpiredError,
        CertificateNotYetValidError,
    ]
    for kind in kinds:
        assert issubclass(kind, CredentialsError)
        assert [other for other in kinds if issubclass(kind, other)] == [kind]


def test_messages_never_contain_secrets(pki, tmp_path):
    secret_key = key_pem(pki.client)
    encrypted = key_pem(pki.client, PASSPHRASE)
    attempts = [
        lambda: Credentials.from_pem(cert_pem(pki.client), encrypted, passphrase=b"guess-123"),
        lambda: Credentials.from_pem(cert_pem(pki.client), encrypted),
        lambda: Credentials.from_pkcs12(pki.client.to_pkcs12(PASSPHRASE), b"guess-123"),
        lambda: Credentials.from_pem(cert_pem(pki.server), secret_key),
        lambda: Credentials.from_pem(secret_key),
    ]
    for attempt in attempts:
        with pytest.raises(CredentialsError) as info:
            attempt()
        message = str(info.value)
        assert message
        for secret in (PASSPHRASE, b"guess-123", secret_key, encrypted):
            assert secret.decode() not in message
        body = secret_key.decode().splitlines()[1]
        assert body not in message


# -- nothing touches the disk --------------------------------------------------------

_AUDIT = {"active": False, "writes": []}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _audit(event, args):
    if not _AUDIT["active"]:
        return
    if event == "open":
        path, mode, flags = args
        if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & _WRITE_FLAGS
        ):
            _AUDIT["writes"].append((event, path))
    elif event in ("os.mkdir", "os.rename", "os.link", "os.symlink", "shutil.copyfile"):
        _AUDIT["writes"].append((event, args[0]))


@pytest.fixture(scope="module")
def audit_hook():
    # Audit hooks cannot be removed; this one does nothing unless switched on.
    if not _AUDIT.get("installed"):
        sys.addaudithook(_audit)
        _AUDIT["installed"] = True
    return _AUDIT


def test_loading_writes_no_file(pki, tmp_path, audit_hook, monkeypatch):
    (tmp_path / "in").mkdir()
    forms = write_forms(pki, tmp_path / "in")
    monkeypatch.chdir(tmp_path)
    # A private temp dir (TMPDIR and tempfile's cache), so that other processes
    # using the shared /tmp cannot disturb the comparison.
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(private_tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
    assert tempfile.gettempdir() == str(private_tmp)
    watched = [private_tmp, tmp_path, tmp_path / "in"]

    def listing():
        return {folder: sorted(os.listdir(folder)) for folder in watched}

    before = listing()
    audit_hook["writes"].clear()
    audit_hook["active"] = True
    try:
        for form in FORMS:
            cert, key, passphrase = forms[form]
            Credentials.load(cert, key, passphrase=passphrase)
            Credentials.load(cert.read_bytes(), key and key.read_bytes(), passphrase=passphrase)
        Credentials.from_pkcs12(pki.client.to_pkcs12(PASSPHRASE), PASSPHRASE)
    finally:
        audit_hook["active"] = False
    assert audit_hook["writes"] == []
    assert listing() == before


def test_audit_hook_would_see_a_write(tmp_path, audit_hook):
    # The check above can fail: a write during the window is recorded.
    audit_hook["writes"].clear()
    audit_hook["active"] = True
    try:
        (tmp_path / "probe").write_bytes(b"x")
    finally:
        audit_hook["active"] = False
    assert [event for event, _ in audit_hook["writes"]] == ["open"]


def test_load_reads_a_certificate_issued_elsewhere(tmp_path):
    # A certificate from another CA (not our test PKI) loads too.
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    issued = ca.issue_cert("client.example")
    creds = Credentials.load(issued.private_key_and_cert_chain_pem.bytes())
    assert isinstance(creds.certificate, x509.Certificate)
    assert creds.topic is None


# -- less common shapes ---------------------------------------------------------------


def test_key_matching_none_of_several_certificates(pki):
    blob = cert_pem(pki.client) + pki.ca_pem()
    with pytest.raises(KeyMismatchError, match="any of the 2 certificates"):
        Credentials.from_pem(blob, key_pem(pki.server))


@pytest.mark.parametrize("encrypted", [False, True])
def test_der_key(pki, encrypted):
    der_cert = pki.client.certificate.public_bytes(serialization.Encoding.DER)
    der_key = pki.client.private_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(PASSPHRASE)
        if encrypted
        else serialization.NoEncryption(),
    )
    # a passphrase for an unencrypted DER key is ignored, as for PEM
    same_identity(Credentials.load(der_cert, der_key, passphrase=PASSPHRASE), pki.client)
    if encrypted:
        with pytest.raises(WrongPassphraseError, match="no passphrase"):
            Credentials.load(der_cert, der_key)
        with pytest.raises(WrongPassphraseError, match="wrong passphrase"):
            Credentials.load(der_cert, der_key, passphrase=b"guess")


def test_key_that_cannot_sign(pki):
    from cryptography.hazmat.primitives.asymmetric import x25519

    key = x25519.X25519PrivateKey.generate().private_bytes(
        PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(UnreadableCredentialsError, match="cannot sign"):
        Credentials.from_pem(cert_pem(pki.client), key)


def test_pkcs12_without_key_or_certificate(pki):
    from cryptography.hazmat.primitives.serialization import pkcs12

    no_key = pkcs12.serialize_key_and_certificates(
        b"x", None, pki.client.certificate, None, serialization.NoEncryption()
    )
    with pytest.raises(UnreadableCredentialsError, match="holds no private key"):
        Credentials.from_pkcs12(no_key)
    only_ca = pkcs12.serialize_key_and_certificates(
        b"x", pki.client.private_key, None, [pki.ca_certificate], serialization.NoEncryption()
    )
    with pytest.raises(UnreadableCredentialsError, match="holds no certificate for its key"):
        Credentials.from_pkcs12(only_ca)


def test_pkcs12_with_unlinked_certificate(pki):
    # The leaf is among the "other" certificates, not linked to the key.
    from cryptography.hazmat.primitives.serialization import pkcs12

    data = pkcs12.serialize_key_and_certificates(
        b"x",
        pki.client.private_key,
        None,
        [pki.ca_certificate, pki.client.certificate],
        serialization.NoEncryption(),
    )
    loaded = Credentials.from_pkcs12(data)
    same_identity(loaded, pki.client)
    assert loaded.chain == (pki.ca_certificate,)
