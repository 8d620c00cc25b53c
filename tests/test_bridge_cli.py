"""``apns-legacy bridge --config FILE`` in a process of its own, on the README's example
configuration as written (loopback ports and the simulator as upstream swapped in):
the JSON ready line, notifications through it, SIGTERM -> status 10 and exit 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import trio
from bridge_helpers import (
    error_frame,
    frame,
    local_config,
    new_key,
    read_all,
    readme_example,
    sim_config,
    token,
    write_credentials,
)

from apns_legacy.cli import main
from apns_legacy.simulator import open_http2_simulator
from apns_legacy.tls import client_context, make_test_pki, open_tls_stream

TOPIC = "com.acme.legacy"


async def read_until(stream, text: str) -> str:
    """Stderr up to and including ``text`` and the rest of that line (live lines end in
    an erase, not a newline)."""
    seen = bytearray()
    while text.encode() not in seen:
        chunk = await stream.receive_some(1)
        assert chunk, "stderr closed"
        seen += chunk
    while not seen.endswith(b"\x1b[K"):
        seen += await stream.receive_some(1)
    return seen.decode().rpartition("\r")[2]


async def read_line(stream, containing: str) -> str:
    """The next stderr line with ``containing`` in it (others skipped)."""
    line = bytearray()
    while True:
        chunk = await stream.receive_some(1)
        assert chunk, "stderr closed"
        if chunk != b"\n":
            line += chunk
            continue
        # A live status line (rewritten in place, no newline) may come before it.
        text = line.decode().rpartition("\x1b[K")[2]
        line.clear()
        if containing in text:
            return text


async def test_the_readme_example_runs_and_sigterm_sends_status_10(tmp_path):
    pki = make_test_pki(topic=TOPIC)
    key = new_key()
    key = type(key)(key_id="ABC123DEFG", team_id="DEF123GHIJ", private_key=key.private_key)
    write_credentials(tmp_path, pki, key)
    async with open_http2_simulator(sim_config(key, invalid_tokens=[token(3)])) as sim:
        assert sim.pki is not None
        (tmp_path / "upstream-ca.pem").write_bytes(sim.pki.ca_pem())
        config = tmp_path / "bridge.toml"
        config.write_text(local_config(readme_example(), sim, "upstream-ca.pem"))
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "apns_legacy", "bridge", "--config", str(config), "--progress"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            with trio.fail_after(30):
                assert process.stdout is not None
                assert process.stderr is not None
                line = bytearray()
                while not line.endswith(b"\n"):
                    chunk = await process.stdout.receive_some(1)
                    assert chunk, "the bridge exited before its ready line"
                    line += chunk
                ready = json.loads(line)
                assert ready["mode"] == "exact"
                assert ready["apps"] == [TOPIC]
                assert ready["store"] == str(tmp_path / "bridge.db")
                host, _, port = ready["gateway"].rpartition(":")
                context = client_context(pki.client, ca=pki.ca_pem())
                stream = await open_tls_stream(
                    host, int(port), context, server_hostname="localhost"
                )
                await stream.send_all(frame(1, token(1)) + frame(2, token(2)))
                await sim.wait_for_accepted(2)
                process.send_signal(signal.SIGTERM)
                heard = await read_all(stream)
                await stream.aclose()
                assert heard == error_frame(10, 2)
                # The failure of a later connection is status 8, as Apple's.
                assert await process.wait() == 0
                errors = (await process.stderr.receive_some(65536)).decode()
                assert '"stopped"' in errors
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert (tmp_path / "bridge.db").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('key_id = "ABC123DEFG"\n', ""), "[[app]] 1.key_id: required"),
        (('mode = "exact"', 'mode = "fast"'), "bridge.mode: 'fast' is not a mode"),
    ],
)
def test_a_bad_configuration_is_one_line_and_exit_2(tmp_path, capsys, change, message):
    pki = make_test_pki(topic=TOPIC)
    write_credentials(tmp_path, pki, new_key())
    (tmp_path / "extra-trust.pem").write_bytes(pki.ca_pem())
    config = tmp_path / "bridge.toml"
    config.write_text(readme_example().replace(*change))
    assert main(["bridge", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"apns-legacy bridge: --config {config}: {message}")


def test_a_port_in_use_is_exit_2(tmp_path, capsys):
    import socket

    pki = make_test_pki(topic=TOPIC)
    write_credentials(tmp_path, pki, new_key())
    (tmp_path / "extra-trust.pem").write_bytes(pki.ca_pem())
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        text = readme_example().replace('"0.0.0.0:2195"', f'"127.0.0.1:{port}"')
        (tmp_path / "bridge.toml").write_text(text)
        assert main(["bridge", "--config", str(tmp_path / "bridge.toml")]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port} for the gateway: address already in use" in err
    assert os.path.exists(tmp_path / "bridge.toml")
