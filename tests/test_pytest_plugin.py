"""The installed pytest plugin, as a user gets it: a separate pytest run in a fresh
directory with no conftest.py, finding ``apns_simulator`` through the entry point."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_example() -> str:
    """The test file the README shows under "Testing your code with the simulator"."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Testing your code with the simulator") :]
    match = re.search(r"```python\n(# test_push.py.*?)\n```", section, re.DOTALL)
    assert match is not None
    return match.group(1)


USER_TESTS = """
import trio
from apns_legacy import DeviceToken, Notification, build_payload, client_context, open_sender
from apns_legacy import Credentials, read_feedback


async def test_my_sender_against_the_simulator(apns_simulator):
    token = DeviceToken.from_hex("ab" * 32)
    async with open_sender(
        apns_simulator.client_context(), host=apns_simulator.gateway_address[0],
        port=apns_simulator.gateway_address[1],
    ) as sender:
        await sender.submit(Notification(token=token, payload=build_payload(alert="hi")))
    await apns_simulator.wait_for_accepted(1)
    assert [r.token for r in apns_simulator.accepted] == [token.hex]


async def test_my_feedback_job_with_certificate_files(apns_simulator, apns_cert_files, apns_pki):
    apns_simulator.add_feedback(bytes(32), 1_700_000_000)
    credentials = Credentials.load(apns_cert_files["client.pem"], apns_cert_files["client-key.pem"])
    context = client_context(credentials, ca=str(apns_cert_files["ca.pem"]))
    host, port = apns_simulator.feedback_address
    items = await read_feedback(context, host=host, port=port)
    assert [item.timestamp for item in items] == [1_700_000_000]


async def test_my_http2_code_against_the_http2_simulator(apns_http2_simulator, apns_provider_key):
    from apns_legacy.client import Http2SenderConfig, open_http2_sender
    from apns_legacy.h2wire import AppSettings

    config = Http2SenderConfig(
        host="localhost", port=apns_http2_simulator.port, ca=apns_http2_simulator.pki.ca_pem(),
        provider_key=apns_provider_key, settings=AppSettings(topic="com.example.app"),
    )
    async with open_http2_sender(config) as sender:
        outcome = await sender.submit(
            Notification(token=DeviceToken.from_hex("cd" * 32), payload=build_payload(alert="hi"))
        )
    assert outcome.accepted
    assert [r.token for r in apns_http2_simulator.accepted] == ["cd" * 32]


def test_the_p12_has_the_default_passphrase(apns_cert_files, apns_p12_passphrase):
    credentials = Credentials.load(apns_cert_files["client.p12"], passphrase=apns_p12_passphrase)
    assert credentials.topic == "com.example.app"
"""


def test_the_plugin_gives_a_user_the_fixtures_without_a_conftest(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\ntrio_mode = true\n")
    (tmp_path / "test_user.py").write_text(textwrap.dedent(USER_TESTS))
    (tmp_path / "test_push.py").write_text(readme_example())
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 passed" in done.stdout
