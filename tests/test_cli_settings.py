"""Settings from a file and the environment (feedback, serve), JSON logs, global options
after the command: ``main`` in a worker thread against the simulator over TLS."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import trio

from apns_legacy import open_simulator
from apns_legacy.cli import main
from apns_legacy.cli._main import build_parser

T0 = 1_700_000_000


def token(n: int) -> bytes:
    return n.to_bytes(4, "big") * 8


@pytest.fixture(scope="module")
def cert_dir(tmp_path_factory, pki):
    directory = tmp_path_factory.mktemp("certs")
    pki.write(directory, p12_passphrase=b"secret")
    return directory


async def run_cli(argv: list[str]) -> int:
    with trio.fail_after(30):
        return await trio.to_thread.run_sync(main, argv)


def settings_file(tmp_path, sim, cert_dir, extra: str = "") -> str:
    host, port = sim.feedback_address
    path = tmp_path / "apns-legacy.toml"
    path.write_text(
        f"""
[feedback]
host = "{host}"
port = {port}
cert = "{cert_dir / "client.pem"}"
key = "{cert_dir / "client-key.pem"}"
ca = "{cert_dir / "ca.pem"}"
format = "csv"
{extra}
"""
    )
    return str(path)


def test_global_options_work_after_the_command_too():
    parser = build_parser()
    assert parser.parse_args(["-v", "tokens", "stats", "--db", "x"]).verbose == 1
    assert parser.parse_args(["tokens", "stats", "--db", "x", "-vv"]).verbose == 2
    assert (
        parser.parse_args(
            ["send", "--log-format", "json", "--cert", "c", "--token", "a"]
        ).log_format
        == "json"
    )
    assert parser.parse_args(["send", "--cert", "c", "--token", "a"]).log_format == "text"


async def test_feedback_reads_its_settings_from_a_file(
    pki, cert_dir, tmp_path, capsys, monkeypatch
):
    monkeypatch.delenv("APNS_LEGACY_CONFIG", raising=False)
    async with open_simulator(pki=pki) as sim:
        sim.add_feedback(token(1), T0)
        code = await run_cli(["feedback", "--config", settings_file(tmp_path, sim, cert_dir)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.splitlines()[0] == "token,timestamp,time"  # format = "csv" from the file


async def test_the_environment_beats_the_file_and_the_command_line_beats_both(
    pki, cert_dir, tmp_path, capsys, monkeypatch
):
    async with open_simulator(pki=pki) as sim:
        monkeypatch.setenv("APNS_LEGACY_CONFIG", settings_file(tmp_path, sim, cert_dir))
        monkeypatch.setenv("APNS_LEGACY_FEEDBACK_FORMAT", "jsonl")
        sim.add_feedback(token(1), T0)
        assert await run_cli(["feedback"]) == 0
        assert json.loads(capsys.readouterr().out)["timestamp"] == T0  # jsonl: environment
        sim.add_feedback(token(2), T0)
        assert await run_cli(["feedback", "--format", "csv"]) == 0
        assert capsys.readouterr().out.startswith("token,timestamp,time\n")  # command line


@pytest.mark.parametrize(
    ("extra", "environment", "message"),
    [
        ('colour = "blue"', {}, "[feedback] colour: `feedback` has no --colour"),
        ('every = "soon"', {}, "--every 'soon': give a number with s, m, h or d"),
        ('timeout = "x"', {}, "[feedback] timeout: invalid value 'x'"),
        ("", {"APNS_LEGACY_FEEDBACK_SANDBOX": "maybe"}, "must be true or false, not 'maybe'"),
        ("", {"APNS_LEGACY_FEEDBACK_COLOUR": "x"}, "APNS_LEGACY_FEEDBACK_COLOUR: `feedback` has"),
        (
            "",
            {"APNS_LEGACY_FEEDBACK_FORMAT": "xml"},
            "FORMAT: must be one of jsonl, csv, not 'xml'",
        ),
    ],
)
async def test_bad_settings_are_one_line_and_exit_2(
    pki, cert_dir, tmp_path, capsys, monkeypatch, extra, environment, message
):
    monkeypatch.delenv("APNS_LEGACY_CONFIG", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    async with open_simulator(pki=pki) as sim:
        path = settings_file(tmp_path, sim, cert_dir, extra)
        assert await run_cli(["feedback", "--config", path]) == 2
        assert sim.stats.feedback_connections == 0
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1


def test_a_config_file_for_a_command_that_reads_none_is_refused(tmp_path, capsys):
    assert main(["--config", str(tmp_path / "x.toml"), "tokens", "stats", "--db", "x"]) == 2
    assert "only feedback and serve read settings from a file" in capsys.readouterr().err


def test_a_config_file_that_is_not_toml_is_refused(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text("[feedback\n")
    assert main(["feedback", "--config", str(path)]) == 2
    assert f"--config {path}: not TOML" in capsys.readouterr().err


async def test_json_logs_of_feedback_every(pki, cert_dir, capsys, monkeypatch):
    monkeypatch.delenv("APNS_LEGACY_CONFIG", raising=False)
    async with open_simulator(pki=pki) as sim:
        host, port = sim.feedback_address
        sim.add_feedback(token(1), T0)
        argv = ["feedback", "--host", host, "--port", str(port), "--cert",
                str(cert_dir / "client.pem"), "--key", str(cert_dir / "client-key.pem"),
                "--ca", str(cert_dir / "ca.pem"), "--every", "0.1s", "--count", "2",
                "--log-format", "json"]  # fmt: skip
        code = await run_cli(argv)
    err = capsys.readouterr().err
    assert code == 0, err
    entries = [json.loads(line) for line in err.splitlines()]
    events = [e["event"] for e in entries if e["logger"] == "apns_legacy.cli.feedback"]
    assert events == ["listed", "next-poll", "listed", "empty-list-note", "stopped"]
    listed = next(e for e in entries if e.get("event") == "listed")
    assert listed["tokens"] == 1
    assert listed["level"] == "INFO"
    assert listed["message"] == f"feedback {host}:{port}: 1 token listed"
    assert listed["time"].endswith("+00:00")
    assert entries[-1]["polls"] == 2


def test_serve_reads_its_settings_from_the_environment_and_a_file(tmp_path):
    settings = tmp_path / "settings.toml"
    settings.write_text('[serve]\ngateway-port = 0\nfeedback-port = 0\nfor = "0.1"\n')
    environment = {
        **os.environ,
        "APNS_LEGACY_CONFIG": str(settings),
        "APNS_LEGACY_SERVE_CERT_DIR": str(tmp_path / "certs"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "apns_legacy", "serve"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    ready = json.loads(done.stdout)
    assert ready["cert_dir"] == str(tmp_path / "certs")
    assert not ready["gateway"].endswith(":2195")  # port 0 from the file: a free port
