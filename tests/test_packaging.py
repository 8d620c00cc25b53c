"""Package metadata, the nox sessions, and type checking a user's script."""

from __future__ import annotations

import configparser
import re
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def metadata() -> configparser.ConfigParser:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return config


def test_the_license_file_matches_the_metadata():
    assert metadata()["metadata"]["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n")


def test_classifiers_and_nox_sessions_name_the_same_pythons():
    classifiers = metadata()["metadata"]["classifiers"]
    versions = re.findall(r"Programming Language :: Python :: (3\.\d+)", classifiers)
    assert versions == ["3.11", "3.12", "3.13"]
    listed = subprocess.run(
        [sys.executable, "-m", "nox", "--list", "--noxfile", str(ROOT / "noxfile.py")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert re.findall(r"^[*-] tests-(3\.\d+) ", listed, re.MULTILINE) == versions


def test_the_docs_the_readme_cites_are_in_the_repository():
    readme = (ROOT / "README.md").read_text()
    for name in re.findall(r"\]\((docs/[A-Z]+\.md)", readme):
        assert (ROOT / name).is_file(), name
    for path in [ROOT / "README.md", *ROOT.joinpath("apns_legacy").rglob("*.py")]:
        assert "../shared" not in path.read_text(), path


USER_SCRIPT = """
from apns_legacy import DeviceToken, build_payload
from apns_legacy.client import TokenStore

token: DeviceToken = DeviceToken.from_hex("ab" * 32)
payload: bytes = build_payload(alert="hi")
with TokenStore(":memory:") as store:
    store.register(token)
"""


def test_mypy_strict_finds_the_package_after_the_readme_editable_install(tmp_path):
    # The README's `pip install -e .`, in a new environment that borrows this one's pip
    # and setuptools (no network): mypy follows a plain .pth path, not an import hook.
    environment = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(environment)
    python = environment / "bin" / "python"
    site = subprocess.run(
        [sys.executable, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    their_site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    Path(their_site, "outer.pth").write_text(site + "\n")
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "-e", str(ROOT)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr
    script = tmp_path / "user_script.py"
    script.write_text(USER_SCRIPT)
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental",
         "--python-executable", str(python), str(script)],
        capture_output=True, text=True, cwd=tmp_path, timeout=300, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
