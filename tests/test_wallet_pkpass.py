"""Building and signing passes, checked independently: hashlib for the manifest, the
standard library's zipfile for the layout, and the openssl command line for the
PKCS#7 signature (verified against the test root, through the WWDR-like intermediate
the signature carries)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from apns_legacy.cli import main
from apns_legacy.tls import PASS_TYPE_OID, Credentials
from apns_legacy.wallet import (
    PassError,
    PassSigner,
    PassSource,
    build_pkpass,
    load_wwdr,
    read_pass_directory,
    write_sample_pass,
)

TEAM = "ABCDE12345"


@pytest.fixture
def pass_dir(tmp_path, wallet_pki) -> Path:
    folder = write_sample_pass(
        tmp_path / "S-1",
        pass_type_id=wallet_pki.pass_type_id,
        serial_number="S-1",
        team_id=TEAM,
        authentication_token="0123456789abcdef0123",
        web_service_url="https://passes.example.com/",
    )
    (folder / "en.lproj").mkdir()
    (folder / "en.lproj" / "pass.strings").write_text('"balance" = "Balance";\n')
    (folder / "logo.png").write_bytes(b"\x89PNG not really")
    (folder / ".DS_Store").write_bytes(b"junk")
    (folder / "manifest.json").write_text("{}")  # stale output of an earlier build
    (folder / "signature").write_bytes(b"stale")
    return folder


def openssl(*arguments: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", *arguments], cwd=cwd, capture_output=True, text=True, check=False, timeout=30
    )


def unzip(data: bytes, into: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        archive.extractall(into)
        return {info.filename: archive.read(info) for info in archive.infolist()}


# -- the archive -----------------------------------------------------------------------


def test_manifest_lists_every_file_with_its_sha1(pass_dir, wallet_pki, tmp_path):
    data = build_pkpass(read_pass_directory(pass_dir), wallet_pki.signer())
    entries = unzip(data, tmp_path / "out")
    manifest = json.loads(entries["manifest.json"])
    expected = {"pass.json", "icon.png", "icon@2x.png", "logo.png", "en.lproj/pass.strings"}
    assert set(manifest) == expected  # not manifest.json, signature, or hidden files
    for name, digest in manifest.items():
        assert digest == hashlib.sha1((pass_dir / name).read_bytes()).hexdigest()
        assert entries[name] == (pass_dir / name).read_bytes()


def test_zip_layout_is_what_wallet_expects(pass_dir, wallet_pki):
    data = build_pkpass(read_pass_directory(pass_dir), wallet_pki.signer())
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = archive.infolist()
    names = [info.filename for info in infos]
    # Everything at the top level (no enclosing folder), no directory entries,
    # manifest and signature present once.
    assert sorted(names) == sorted(
        [
            "en.lproj/pass.strings",
            "icon.png",
            "icon@2x.png",
            "logo.png",
            "pass.json",
            "manifest.json",
            "signature",
        ]
    )
    assert not any(name.endswith("/") or name.startswith("S-1/") for name in names)
    assert {info.compress_type for info in infos} == {zipfile.ZIP_DEFLATED}


def test_signature_verifies_with_openssl_against_the_root(pass_dir, wallet_pki, tmp_path):
    data = build_pkpass(read_pass_directory(pass_dir), wallet_pki.signer())
    out = tmp_path / "out"
    unzip(data, out)
    (tmp_path / "root.pem").write_bytes(wallet_pki.pki.ca_pem())
    # The WWDR-like intermediate is not given to openssl: it must come from the
    # signature. "-purpose any": openssl's default S/MIME purpose wants an
    # emailProtection key usage, which pass certificates (like Apple's) do not have.
    verify = [
        "cms", "-verify", "-inform", "DER", "-in", str(out / "signature"), "-binary",
        "-content", str(out / "manifest.json"), "-CAfile", str(tmp_path / "root.pem"),
        "-purpose", "any", "-out", os.devnull,
    ]  # fmt: skip
    result = openssl(*verify, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Verification successful" in result.stderr

    # The same check fails for a manifest changed by one byte.
    manifest = out / "manifest.json"
    manifest.write_bytes(manifest.read_bytes().replace(b'"icon.png"', b'"icon.pnG"'))
    result = openssl(*verify, cwd=tmp_path)
    assert result.returncode != 0
    assert "Verification failure" in result.stderr


def test_signature_carries_the_wwdr_certificate_and_signing_time(pass_dir, wallet_pki, tmp_path):
    data = build_pkpass(read_pass_directory(pass_dir), wallet_pki.signer())
    unzip(data, tmp_path / "out")
    certs = openssl(
        "pkcs7", "-inform", "DER", "-in", "out/signature", "-print_certs", cwd=tmp_path
    )  # fmt: skip
    assert certs.returncode == 0, certs.stderr
    assert "Worldwide Developer Relations" in certs.stdout
    assert f"Pass Type ID: {wallet_pki.pass_type_id}" in certs.stdout
    printed = openssl("cms", "-cmsout", "-print", "-inform", "DER", "-in", "out/signature",
                      cwd=tmp_path)  # fmt: skip
    assert "signingTime" in printed.stdout
    assert "eContent: <ABSENT>" in printed.stdout  # detached


def test_rsa_pass_certificate_signs_too(pass_dir, wallet_pki, tmp_path):
    # Apple's pass certificates have RSA keys; the test PKI's are EC.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(wallet_pki.pass_credentials.certificate.subject)
        .issuer_name(wallet_pki.wwdr.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.UnrecognizedExtension(PASS_TYPE_OID, b"\x05\x00"), critical=False)
        .sign(wallet_pki.wwdr.private_key, hashes.SHA256())
    )
    signer = PassSigner.create(Credentials(certificate, key), wallet_pki.wwdr.certificate)
    unzip(build_pkpass(read_pass_directory(pass_dir), signer), tmp_path / "out")
    (tmp_path / "root.pem").write_bytes(wallet_pki.pki.ca_pem())
    result = openssl(
        "cms", "-verify", "-inform", "DER", "-in", "out/signature", "-binary",
        "-content", "out/manifest.json", "-CAfile", "root.pem", "-purpose", "any",
        "-out", os.devnull, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


# -- refusals --------------------------------------------------------------------------


def _pass_json(**changes: object) -> bytes:
    value: dict[str, object] = {
        "formatVersion": 1,
        "passTypeIdentifier": "pass.com.example.card",
        "serialNumber": "S-1",
        "teamIdentifier": TEAM,
        "organizationName": "Example",
        "description": "A card",
        "authenticationToken": "0123456789abcdef",
    }
    for key, new in changes.items():
        if new is None:
            del value[key]
        else:
            value[key] = new
    return json.dumps(value).encode()


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"icon.png": b"x"}, "pass: no pass.json"),
        ({"pass.json": _pass_json()}, "pass: no icon.png (Wallet requires one)"),
        ({"pass.json": b'{"formatVersion": 1,', "icon.png": b"x"},
         "pass/pass.json: not valid JSON (line 1 column 21: Expecting property name"),
        ({"pass.json": b"[1]", "icon.png": b"x"},
         "pass/pass.json: must be a JSON object, not list"),
        ({"pass.json": b"\xff", "icon.png": b"x"}, "pass/pass.json: not UTF-8 (byte 0)"),
        ({"pass.json": _pass_json(formatVersion=2), "icon.png": b"x"},
         "pass/pass.json: formatVersion must be 1, not 2"),
        ({"pass.json": _pass_json(passTypeIdentifier=None), "icon.png": b"x"},
         "pass/pass.json: passTypeIdentifier is missing"),
        ({"pass.json": _pass_json(serialNumber=None), "icon.png": b"x"},
         "pass/pass.json: serialNumber is missing"),
        ({"pass.json": _pass_json(serialNumber=""), "icon.png": b"x"},
         "pass/pass.json: serialNumber must be a non-empty string, not ''"),
        ({"pass.json": _pass_json(authenticationToken=None), "icon.png": b"x"},
         "pass/pass.json: authenticationToken is missing"),
        ({"pass.json": _pass_json(authenticationToken="short"), "icon.png": b"x"},
         "pass/pass.json: authenticationToken must be a string of at least 16 characters"),
        ({"pass.json": _pass_json(webServiceURL="ftp://x"), "icon.png": b"x"},
         "pass/pass.json: webServiceURL must be an https:// URL, not 'ftp://x'"),
    ],
)  # fmt: skip
def test_bad_pass_content_is_refused_naming_the_field(files, message):
    with pytest.raises(PassError) as caught:
        PassSource.from_files(files)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_missing_directory(tmp_path):
    with pytest.raises(PassError, match="not a directory"):
        read_pass_directory(tmp_path / "nope")


def test_app_push_certificate_is_not_a_pass_certificate(wallet_pki):
    with pytest.raises(PassError, match="is not a Pass Type ID certificate"):
        PassSigner.create(wallet_pki.pki.client, wallet_pki.wwdr.certificate)


def test_wwdr_that_did_not_issue_the_certificate(wallet_pki):
    other = wallet_pki.pki.issue_intermediate("Some other CA")
    with pytest.raises(PassError, match="did not issue the pass certificate"):
        PassSigner.create(wallet_pki.pass_credentials, other.certificate)


def test_pass_of_another_type_or_team_is_refused(wallet_pki):
    signer = wallet_pki.signer()
    other_type = PassSource.from_files(
        {"pass.json": _pass_json(passTypeIdentifier="pass.com.other"), "icon.png": b"x"}
    )
    with pytest.raises(PassError, match="does not match the certificate's pass type ID"):
        build_pkpass(other_type, signer)
    other_team = PassSource.from_files(
        {"pass.json": _pass_json(teamIdentifier="ZZZZZ99999"), "icon.png": b"x"}
    )
    with pytest.raises(PassError, match=r"teamIdentifier 'ZZZZZ99999' does not match .* 'ABCDE"):
        build_pkpass(other_team, signer)


def test_wwdr_reads_pem_and_der(wallet_pki, tmp_path):
    certificate = wallet_pki.wwdr.certificate
    (tmp_path / "wwdr.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "wwdr.cer").write_bytes(certificate.public_bytes(serialization.Encoding.DER))
    (tmp_path / "junk").write_bytes(b"junk")
    assert load_wwdr(tmp_path / "wwdr.pem") == load_wwdr(tmp_path / "wwdr.cer") == certificate
    with pytest.raises(PassError, match="not a PEM or DER certificate"):
        load_wwdr(tmp_path / "junk")


def test_content_digest_follows_the_files(pass_dir):
    before = read_pass_directory(pass_dir).content_digest()
    assert read_pass_directory(pass_dir).content_digest() == before
    (pass_dir / "logo.png").write_bytes(b"new logo")
    assert read_pass_directory(pass_dir).content_digest() != before


# -- the command line ------------------------------------------------------------------


@pytest.fixture
def signing_files(wallet_pki, tmp_path) -> dict[str, Path]:
    pem = serialization.Encoding.PEM
    files = {
        "cert": tmp_path / "pass.pem",
        "key": tmp_path / "pass-key.pem",
        "encrypted-key": tmp_path / "pass-key-enc.pem",
        "p12": tmp_path / "pass.p12",
        "wwdr": tmp_path / "wwdr.pem",
        "app": tmp_path / "app.pem",
        "app-key": tmp_path / "app-key.pem",
    }
    key = wallet_pki.pass_credentials.private_key
    files["cert"].write_bytes(wallet_pki.pass_credentials.certificate.public_bytes(pem))
    files["key"].write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    files["encrypted-key"].write_bytes(
        key.private_bytes(
            pem,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pem-secret"),
        )
    )
    files["p12"].write_bytes(wallet_pki.pass_credentials.to_pkcs12(b"p12-secret"))
    files["wwdr"].write_bytes(wallet_pki.wwdr.certificate.public_bytes(pem))
    files["app"].write_bytes(wallet_pki.pki.client.certificate.public_bytes(pem))
    files["app-key"].write_bytes(
        wallet_pki.pki.client.private_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return files


def run_cli(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "apns_legacy", *arguments],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize("form", ["pem", "encrypted-pem", "p12"])
def test_cli_build_with_each_credential_form(form, pass_dir, signing_files, wallet_pki, tmp_path):
    flags = {
        "pem": ["--cert", str(signing_files["cert"]), "--key", str(signing_files["key"])],
        "encrypted-pem": [
            "--cert", str(signing_files["cert"]), "--key", str(signing_files["encrypted-key"]),
            "--passphrase-env", "PASS_KEY_SECRET",
        ],
        "p12": ["--cert", str(signing_files["p12"]), "--passphrase-env", "PASS_KEY_SECRET"],
    }[form]  # fmt: skip
    secret = "p12-secret" if form == "p12" else "pem-secret"
    output = tmp_path / "card.pkpass"
    result = run_cli(
        "wallet", "build", str(pass_dir), *flags, "--wwdr", str(signing_files["wwdr"]),
        "--output", str(output), env={"PASS_KEY_SECRET": secret},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert "pass.com.example.card serial S-1, 5 files signed" in result.stderr
    unzip(output.read_bytes(), tmp_path / "out")
    (tmp_path / "root.pem").write_bytes(wallet_pki.pki.ca_pem())
    verified = openssl(
        "smime", "-verify", "-inform", "DER", "-in", "out/signature", "-binary",
        "-content", "out/manifest.json", "-CAfile", "root.pem", "-purpose", "any",
        "-out", os.devnull, cwd=tmp_path,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr


def test_cli_build_refusals(pass_dir, signing_files, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    base = ["--wwdr", str(signing_files["wwdr"]), "--output", str(tmp_path / "x.pkpass")]
    pem = ["--cert", str(signing_files["cert"]), "--key", str(signing_files["key"])]
    bad_json = tmp_path / "bad"
    bad_json.mkdir()
    (bad_json / "pass.json").write_text("{nope")
    (bad_json / "icon.png").write_bytes(b"x")
    no_serial = tmp_path / "no-serial"
    no_serial.mkdir()
    (no_serial / "pass.json").write_bytes(_pass_json(serialNumber=None))
    (no_serial / "icon.png").write_bytes(b"x")
    cases = [
        ([str(tmp_path / "empty-missing"), *pem, *base], "not a directory"),
        ([str(bad_json), *pem, *base], "pass.json: not valid JSON (line 1 column 2"),
        ([str(no_serial), *pem, *base], "pass.json: serialNumber is missing"),
        ([str(pass_dir), "--cert", str(signing_files["app"]), "--key",
          str(signing_files["app-key"]), *base], "is not a Pass Type ID certificate"),
        ([str(pass_dir), "--cert", str(signing_files["cert"]), "--key",
          str(signing_files["encrypted-key"]), *base],
         "the private key is encrypted and no passphrase was given (give it with --passphrase-env"),
        ([str(pass_dir), *pem, "--passphrase-env", "NOT_SET_ANYWHERE", *base],
         "--passphrase-env: the environment variable NOT_SET_ANYWHERE is not set"),
        ([str(pass_dir), *pem, "--wwdr", str(signing_files["key"]), "--output", "x"],
         "--wwdr: "),
        ([str(pass_dir), *pem, "--wwdr", str(signing_files["wwdr"]), "--output",
          str(tmp_path / "no-such-dir" / "x.pkpass")],
         "--output: " + str(tmp_path / "no-such-dir" / "x.pkpass") + ": No such file"),
    ]  # fmt: skip
    for arguments, message in cases:
        assert main(["wallet", "build", *arguments]) == 2, arguments
        err = capsys.readouterr().err
        assert err.startswith("apns-legacy wallet: "), err
        assert message in err, (message, err)
        assert err.count("\n") == 1, err
    assert not (tmp_path / "x.pkpass").exists()
