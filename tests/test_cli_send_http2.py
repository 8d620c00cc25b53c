"""``apns-legacy send --http2`` as users run it: a subprocess against the in-process HTTP/2
simulator over real TLS on 127.0.0.1 (token auth with a .p8 file, certificate auth with
PEM and .p12 files), the report, the summary, ``--db`` and the exit codes; and every
check made before anything is sent (in-process ``main``)."""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric import ec
from helpers import reaped, run_cli, run_on_terminal, stop_with, write_p8

from apns_legacy.cli import main
from apns_legacy.cli._main import build_parser
from apns_legacy.cli._send import make_plan
from apns_legacy.client import Http2SenderConfig, SenderStats, TokenStore
from apns_legacy.h2wire import ProviderKey
from apns_legacy.simulator import Http2Faults, Http2SimulatorConfig, open_http2_simulator
from apns_legacy.wire import FeedbackItem

P12_PASSPHRASE = "p12-secret"
TEAM = "TEAM123456"
KEY_ID = "KEY1234567"
TOPIC = "com.example.app"
GOOD = "a1" * 32
BAD = "bb" * 32
GONE = "cc" * 32
GONE_MS = 1_454_402_113_123  # 2016-02-02T08:35:13.123Z, Apple's own example
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def token(i: int) -> str:
    return f"{i:064x}"


@pytest.fixture(scope="module")
def certs(tmp_path_factory, pki) -> dict[str, Path]:
    return pki.write(tmp_path_factory.mktemp("certs"), p12_passphrase=P12_PASSPHRASE.encode())


@pytest.fixture(scope="module")
def p8(tmp_path_factory) -> tuple[Path, ProviderKey]:
    """A .p8 file and its key."""
    path = tmp_path_factory.mktemp("key") / f"AuthKey_{KEY_ID}.p8"
    private = write_p8(path)
    return path, ProviderKey(key_id=KEY_ID, team_id=TEAM, private_key=private)


def sim_config(p8, **changes) -> Http2SimulatorConfig:
    _, key = p8
    settings = {"invalid_tokens": [BAD], "uninstalled_tokens": {GONE: GONE_MS}, **changes}
    return Http2SimulatorConfig(provider_keys={(TEAM, KEY_ID): key.public_key}, **settings)


def token_flags(certs, p8, sim) -> list[str]:
    return [
        "--http2", "--host", "127.0.0.1", "--port", str(sim.port), "--ca", str(certs["ca.pem"]),
        "--auth-key", str(p8[0]), "--key-id", KEY_ID, "--team-id", TEAM, "--topic", TOPIC,
    ]  # fmt: skip


def cert_flags(certs, sim) -> list[str]:
    return [
        "--http2", "--host", "127.0.0.1", "--port", str(sim.port), "--ca", str(certs["ca.pem"]),
        "--cert", str(certs["client.pem"]), "--key", str(certs["client-key.pem"]),
    ]  # fmt: skip


async def send(*arguments: str, stdin: bytes = b"", env: dict[str, str] | None = None):
    """Run ``python -m apns_legacy send ...``; the CompletedProcess (stdout/stderr as text)."""
    with trio.fail_after(60):
        return await run_cli("send", *arguments, stdin=stdin, env=env)


def summary_line(stderr: str) -> str:
    return stderr.strip().splitlines()[-1]


# -- sending -----------------------------------------------------------------------------


async def test_token_auth_200_400_410_reported_with_reason_apns_id_and_timestamp(pki, certs, p8):
    async with open_http2_simulator(sim_config(p8), pki=pki) as sim:
        done = await send(
            *token_flags(certs, p8, sim), "--token", GOOD, "--token", BAD, "--token", GONE,
            "--alert", "Hello", "--report", "-",
        )  # fmt: skip
    assert done.returncode == 1, done.stderr  # rejections: exit 1, as for binary sending
    [record] = sim.accepted
    assert (record.token, record.topic, record.auth, record.team_id) == (GOOD, TOPIC, "token", TEAM)
    assert (record.push_type, record.payload) == ("alert", '{"aps":{"alert":"Hello"}}')
    report = {e["token"]: e for e in map(json.loads, done.stdout.splitlines())}
    assert set(report) == {GOOD, BAD, GONE}
    assert report[GOOD] == {
        "line": 1, "token": GOOD, "outcome": "accepted", "status": None, "reason": None,
        "apns_id": record.apns_id, "timestamp": None, "possible_duplicate": False,
    }  # fmt: skip
    assert (report[BAD]["line"], report[BAD]["outcome"]) == (2, "rejected")
    assert (report[BAD]["status"], report[BAD]["reason"]) == (400, "BadDeviceToken")
    assert report[BAD]["timestamp"] is None
    assert UUID_RE.fullmatch(report[BAD]["apns_id"])
    assert (report[GONE]["status"], report[GONE]["reason"]) == (410, "Unregistered")
    assert datetime.fromisoformat(report[GONE]["timestamp"]) == datetime(
        2016, 2, 2, 8, 35, 13, 123000, tzinfo=UTC
    )
    summary = summary_line(done.stderr)
    assert summary.startswith(
        "sent 3: 1 accepted, 2 rejected (BadDeviceToken 1, Unregistered 1), 0 failed; "
    ), summary
    assert "UNKNOWN_STATUS" not in done.stderr


async def test_headers_from_the_flags_and_exit_0_when_all_are_accepted(pki, certs, p8):
    async with open_http2_simulator(sim_config(p8), pki=pki) as sim:
        done = await send(
            *token_flags(certs, p8, sim), "--token", GOOD, "--payload", '{"aps":{"badge":1}}',
            "--push-type", "alert", "--collapse-id", "news-1", "--priority", "5",
            "--expiry", "1900000000",
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [record] = sim.accepted
    assert (record.push_type, record.collapse_id) == ("alert", "news-1")
    assert (record.priority, record.expiration) == (5, 1_900_000_000)
    assert summary_line(done.stderr).startswith("sent 1: 1 accepted, 0 rejected, 0 failed; ")


async def test_certificate_auth_pem_and_p12_topic_from_the_certificate(pki, certs, p8):
    async with open_http2_simulator(sim_config(p8), pki=pki) as sim:
        pem = await send(*cert_flags(certs, sim), "--token", GOOD, "--alert", "pem")
        p12 = await send(
            "--http2", "--host", "127.0.0.1", "--port", str(sim.port),
            "--ca", str(certs["ca.pem"]), "--cert", str(certs["client.p12"]),
            "--passphrase-env", "APNS_P12", "--token", token(7), "--alert", "p12",
            env={**os.environ, "APNS_P12": P12_PASSPHRASE},
        )  # fmt: skip
    assert (pem.returncode, p12.returncode) == (0, 0), pem.stderr + p12.stderr
    assert [(r.token, r.auth) for r in sim.accepted] == [
        (GOOD, "certificate"),
        (token(7), "certificate"),
    ]
    assert {r.topic for r in sim.accepted} == {pki.client.topic}


async def test_input_file_on_several_connections_with_faults_each_once(pki, certs, p8, tmp_path):
    # 300 lines (one bad), 2 connections, a GOAWAY every 70 answers and a 503 every 50th
    # request: each good line ends once, accepted lines reach the server exactly once.
    lines = [json.dumps({"token": token(n)}) for n in range(1, 301)]
    lines[9] = '{"token": "zz"}'
    lines.append(json.dumps({"token": BAD, "payload": {"aps": {"alert": "own"}}}))
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(lines) + "\n")
    report = tmp_path / "report.jsonl"
    faults = Http2Faults(goaway_after=70, status_every=50, fault_status=503)
    async with open_http2_simulator(sim_config(p8, faults=faults), pki=pki) as sim:
        done = await send(
            *token_flags(certs, p8, sim), "--input", str(source), "--alert", "Hi",
            "--connections", "2", "--report", str(report),
        )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "line 10: token: " in done.stderr
    sent = collections.Counter(r.token for r in sim.accepted)
    assert sent == {token(n): 1 for n in range(1, 301) if n != 10}
    entries = [json.loads(line) for line in report.read_text().splitlines()]
    assert sorted(e["line"] for e in entries) == [n for n in range(1, 302) if n != 10]
    assert collections.Counter(e["outcome"] for e in entries) == {"accepted": 299, "rejected": 1}
    assert sim.stats.goaways >= 4
    assert sim.stats.by_reason.get("ServiceUnavailable", 0) >= 5
    assert summary_line(done.stderr).startswith(
        "sent 300: 299 accepted, 1 rejected (BadDeviceToken 1), 0 failed, 1 skipped (bad input);"
    )


async def test_a_configuration_fault_fails_everything_with_one_message(pki, certs, p8, tmp_path):
    # A key APNs does not know: InvalidProviderToken, once, then every notification fails.
    other = tmp_path / "other.p8"
    write_p8(other)
    async with open_http2_simulator(sim_config(p8), pki=pki) as sim:
        flags = token_flags(certs, (other, None), sim)
        done = await send(*flags, "--token", GOOD, "--token", token(2), "--alert", "x")
    assert done.returncode == 1
    assert sim.accepted == []
    assert (
        "apns-legacy send: gave up: APNs refused the credentials or topic: 403 InvalidProviderToken"
    ) in done.stderr
    assert summary_line(done.stderr).startswith("sent 2: 0 accepted, 0 rejected, 2 failed;")


async def test_an_unreachable_server_fails_every_notification(certs, p8):
    with trio.socket.socket() as listener:  # a port nobody listens on
        await listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
    done = await send(
        "--http2", "--host", "127.0.0.1", "--port", str(port), "--ca", str(certs["ca.pem"]),
        "--auth-key", str(p8[0]), "--key-id", KEY_ID, "--team-id", TEAM, "--topic", TOPIC,
        "--token", GOOD, "--alert", "x", "--connect-attempts", "1",
    )  # fmt: skip
    assert done.returncode == 1
    assert "cannot connect to 127.0.0.1:" in done.stderr
    assert summary_line(done.stderr).startswith("sent 1: 0 accepted, 0 rejected, 1 failed;")


# -- --db --------------------------------------------------------------------------------


async def test_db_skips_dead_tokens_and_applies_bad_tokens_and_410s(pki, certs, p8, tmp_path):
    db = tmp_path / "devices.db"
    gone_before = token(21)  # registered before the 410's time: deactivated
    gone_again = token(22)  # registered again after the 410's time: stays active
    with TokenStore(db) as store:
        store.register_many([token(n) for n in range(1, 31)], at=1_000_000_000)
        store.register(gone_again, at=GONE_MS // 1000 + 60)
        store.deactivate([token(3)], reason="invalid-token", at=1_100_000_000)
    lines = [json.dumps({"token": token(n)}) for n in range(1, 31)]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(lines) + "\n")
    report = tmp_path / "report.jsonl"
    config = sim_config(
        p8,
        invalid_tokens=[token(5), token(6)],
        uninstalled_tokens={gone_before: GONE_MS, gone_again: GONE_MS},
    )
    async with open_http2_simulator(config, pki=pki) as sim:
        done = await send(
            *token_flags(certs, p8, sim), "--input", str(source), "--alert", "hi",
            "--report", str(report), "--db", str(db),
        )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert token(3) not in {r.token for r in sim.accepted}  # deactivated before: not sent
    entries = {e["line"]: e for e in map(json.loads, report.read_text().splitlines())}
    assert sorted(entries) == list(range(1, 31))
    assert entries[3] == {
        "line": 3, "token": token(3), "outcome": "skipped", "status": None,
        "reason": "deactivated in the token store (invalid-token, 2004-11-09T11:33:20Z); not sent",
        "apns_id": None, "timestamp": None, "possible_duplicate": False,
    }  # fmt: skip
    assert (entries[21]["status"], entries[21]["reason"]) == (410, "Unregistered")
    with TokenStore(db) as store:
        bad = [store.get(token(n)) for n in (5, 6)]
        assert all(d is not None and not d.active for d in bad)
        assert {d.deactivated_reason for d in bad if d is not None} == {"invalid-token"}
        gone = store.get(gone_before)
        assert gone is not None
        assert not gone.active
        assert gone.deactivated_reason == "feedback"
        assert gone.feedback_time == datetime.fromtimestamp(GONE_MS // 1000, tz=UTC)
        kept = store.get(gone_again)
        assert kept is not None
        assert kept.active
        assert store.counts().active == 30 - 4
    assert (
        f"--db {db}: 1 deactivated token skipped; 2 tokens rejected as BadDeviceToken, "
        "2 gone (410), 3 deactivated in the store, 1 kept (registered again since the 410)"
    ) in done.stderr
    assert "1 skipped (deactivated in the token store)" in summary_line(done.stderr)


async def test_db_with_token_flags_skips_before_sending(pki, certs, p8, tmp_path):
    db = tmp_path / "devices.db"
    with TokenStore(db) as store:
        store.register_many([GOOD, GONE], at=1_000_000_000)
        store.apply_feedback([FeedbackItem(1_100_000_000, bytes.fromhex(GONE))])
    async with open_http2_simulator(sim_config(p8), pki=pki) as sim:
        done = await send(
            *token_flags(certs, p8, sim), "--token", GOOD, "--token", GONE, "--alert", "x",
            "--db", str(db), "--report", "-",
        )  # fmt: skip
    assert done.returncode == 1
    assert [r.token for r in sim.accepted] == [GOOD]
    outcomes = [json.loads(line)["outcome"] for line in done.stdout.splitlines()]
    assert sorted(outcomes) == ["accepted", "skipped"]


# -- the progress display ------------------------------------------------------------------


async def test_progress_display_on_a_terminal(pki, certs, p8, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"token": token(n)}) + "\n" for n in range(1, 101)))
    async with open_http2_simulator(sim_config(p8), pki=pki) as sim:
        command = [sys.executable, "-m", "apns_legacy", "send", *token_flags(certs, p8, sim),
                   "--input", str(source), "--alert", "tty"]  # fmt: skip
        with trio.fail_after(60):
            code, text = await run_on_terminal(command)
    assert code == 0
    assert re.search(r"\d+ submitted, \d+ accepted, 0 rejected, 0 failed", text), text
    assert "sent 100: 100 accepted, 0 rejected, 0 failed; " in text


# -- the HTTP/2 view of the statistics ------------------------------------------------------


def test_stats_http2_view_names_http_statuses_and_reasons():
    stats = SenderStats(submitted=5, accepted=2, rejected=3)
    stats.rejected_by_status.update({410: 1, 400: 2})
    by_reason = {"Unregistered": 1, "BadDeviceToken": 1, "SomethingNew": 1}
    view = stats.to_http2_json(by_reason)
    assert view["rejected_by_status"] == {"400": 2, "410": 1}
    # By status, then name; a reason Apple adds later (no known status) comes last.
    assert list(view["rejected_by_reason"]) == ["BadDeviceToken", "Unregistered", "SomethingNew"]
    assert "probes" not in view
    assert "unconfirmed" not in view
    assert "assumed" not in view
    assert view["pending"] == 0
    assert view["submitted"] == 5
    # The binary view is unchanged: statuses by their binary names.
    assert stats.to_json()["rejected_by_status"] == {"UNKNOWN_STATUS_400": 2,
                                                      "UNKNOWN_STATUS_410": 1}  # fmt: skip


# -- checked before anything is sent --------------------------------------------------------


def run_main(capsys, *arguments: str) -> str:
    """``main(["send", ...])`` must exit 2 with one line on stderr; that line."""
    code = main(["send", *arguments])
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("apns-legacy send: "), lines[0]
    return lines[0]


@pytest.fixture
def files(tmp_path, p8, certs) -> dict[str, str]:
    not_a_key = tmp_path / "not-a-key.p8"
    not_a_key.write_text("hello\n")
    p384 = tmp_path / "p384.p8"
    write_p8(p384, ec.SECP384R1())
    return {
        "p8": str(p8[0]),
        "missing": str(tmp_path / "missing.p8"),
        "not_a_key": str(not_a_key),
        "p384": str(p384),
        "dir": str(tmp_path),
        "cert": str(certs["client.pem"]),
        "key": str(certs["client-key.pem"]),
        "ca": str(certs["ca.pem"]),
    }


def fill(text: str, files: dict[str, str]) -> str:
    for name, value in files.items():
        text = text.replace("{" + name + "}", value)
    return text


TOKEN_AUTH = ["--auth-key", "{p8}", "--key-id", KEY_ID, "--team-id", TEAM, "--topic", TOPIC]
BIG = '{"aps":{"alert":"' + "x" * 4077 + '"}}'  # 4097 bytes
BIGGER = '{"aps":{"alert":"' + "x" * 5101 + '"}}'  # 5121 bytes
assert (len(BIG), len(BIGGER)) == (4097, 5121)


SOME_KEY = ["--key-id", "K", "--team-id", "T", "--topic", "t"]
CASES = [
    (["--http2", "--auth-key", "{p8}", "--team-id", TEAM, "--topic", TOPIC],
     "--auth-key needs --key-id ID"),
    (["--http2", "--auth-key", "{p8}", "--key-id", KEY_ID, "--topic", TOPIC],
     "--auth-key needs --team-id ID"),
    (["--http2", "--auth-key", "{p8}", "--key-id", KEY_ID, "--team-id", TEAM],
     "token auth (--auth-key) needs --topic"),
    (["--http2", "--auth-key", "{missing}", *SOME_KEY],
     "--auth-key {missing}: cannot read (No such file or directory)"),
    (["--http2", "--auth-key", "{dir}", *SOME_KEY], "--auth-key {dir}: is a directory"),
    (["--http2", "--auth-key", "{not_a_key}", *SOME_KEY],
     "--auth-key {not_a_key}: auth key is not an unencrypted PEM private key"),
    (["--http2", "--auth-key", "{p384}", *SOME_KEY],
     "--auth-key {p384}: auth key must be a P-256 (ES256) EC private key"),
    (["--http2", *TOKEN_AUTH, "--key", "{key}"], "--key is for --cert"),
    (["--http2", *TOKEN_AUTH, "--passphrase-env", "X"], "--passphrase-env is for --cert"),
    (["--http2", *TOKEN_AUTH, "--cert", "{cert}"], "give --auth-key (token auth) or --cert"),
    (["--http2", "--topic", TOPIC], "--http2 needs --auth-key FILE.p8 --key-id ID"),
    (["--http2", "--cert", "{cert}", "--key-id", KEY_ID], "--key-id is for token auth"),
    (["--http2", "--cert", "{cert}", "--team-id", TEAM], "--team-id is for token auth"),
    (["--http2", *TOKEN_AUTH, "--format", "frame"], "--format is for the binary protocol"),
    (["--http2", *TOKEN_AUTH, "--payload-limit", "100"], "--payload-limit is for the binary"),
    (["--http2", *TOKEN_AUTH, "--assume-accepted"], "--assume-accepted is for the binary"),
    (["--http2", *TOKEN_AUTH, "--no-spare"], "--no-spare is for the binary"),
    (["--http2", *TOKEN_AUTH, "--settle", "1"], "--settle is for the binary protocol"),
    (["--http2", *TOKEN_AUTH, "--probe-timeout", "1"], "--probe-timeout is for the binary"),
    (["--http2", *TOKEN_AUTH, "--write-timeout", "1"], "--write-timeout is for the binary"),
    (["--cert", "{cert}", "--auth-key", "{p8}"], "--auth-key is for the HTTP/2 API; add --http2"),
    (["--cert", "{cert}", "--key-id", KEY_ID], "--key-id is for the HTTP/2 API"),
    (["--cert", "{cert}", "--team-id", TEAM], "--team-id is for the HTTP/2 API"),
    (["--cert", "{cert}", "--topic", TOPIC], "--topic is for the HTTP/2 API"),
    (["--cert", "{cert}", "--push-type", "alert"], "--push-type is for the HTTP/2 API"),
    (["--cert", "{cert}", "--collapse-id", "a"], "--collapse-id is for the HTTP/2 API"),
    ([], "--cert FILE is required (the client certificate; or use --http2)"),
    (["--http2", *TOKEN_AUTH, "--payload", BIG],
     "--payload: payload is 4097 bytes; the limit is 4096 (the HTTP/2 limit; 5120 with "
     "--push-type voip)"),
    (["--http2", *TOKEN_AUTH, "--payload", BIGGER, "--push-type", "voip"],
     "--payload: payload is 5121 bytes; the limit is 5120 (the HTTP/2 limit for VoIP)"),
    (["--http2", *TOKEN_AUTH, "--alert", "x" * 4090], "--alert/--badge/--sound: payload is"),
    (["--http2", *TOKEN_AUTH, "--payload", '{"aps":{}}'], "--payload: payload has no 'aps'"),
    (["--http2", *TOKEN_AUTH, "--collapse-id", "c" * 65], "--collapse-id: apns-collapse-id"),
    (["--http2", *TOKEN_AUTH, "--connections", "0"], "--connections must be 1 to 100"),
    (["--http2", *TOKEN_AUTH, "--connect-timeout", "0"], "--connect-timeout must be more"),
    (["--http2", *TOKEN_AUTH, "--sandbox", "--host", "h"], "give either --sandbox or --host"),
    (["--http2", *TOKEN_AUTH, "--ca", "{missing}"], "--ca {missing}: cannot read"),
    (["--http2", *TOKEN_AUTH, "--ca", "{not_a_key}"], "--ca: "),
    (["--http2", "--cert", "{missing}"], "cannot use the credentials: "),
    (["--http2", "--cert", "{cert}", "--passphrase-env", "APNS_TEST_UNSET_VARIABLE"],
     "--passphrase-env: the environment variable APNS_TEST_UNSET_VARIABLE is not set"),
]  # fmt: skip


@pytest.mark.parametrize(("arguments", "message"), CASES)
def test_checks_before_sending_are_one_line_naming_the_flag(capsys, files, arguments, message):
    arguments = [fill(a, files) for a in arguments]
    if "--payload" not in arguments and "--alert" not in arguments:
        arguments += ["--alert", "x"]
    if "--sandbox" not in arguments:
        # Never Apple's host, and nothing listening: a check that let a case through
        # fails fast here instead of sending.
        arguments += ["--host", "127.0.0.1", "--port", "1"]
    line = run_main(capsys, "--token", GOOD, *arguments)
    assert fill(message, files) in line, line


def test_payload_limit_follows_the_push_type_and_topic(files, capsys):
    # 4097 bytes pass with VoIP (explicit, or a .voip topic); the same ones fail without.
    for extra in (["--push-type", "voip"], ["--topic", TOPIC + ".voip"]):
        args = build_parser().parse_args(
            ["send", "--http2", *(fill(a, files) for a in TOKEN_AUTH), *extra,
             "--token", GOOD, "--payload", BIG]
        )  # fmt: skip
        plan = make_plan(args)
        assert isinstance(plan.config, Http2SenderConfig)
        assert plan.payload_limit == 5120
        assert plan.payload is not None


def test_apple_hosts_by_default_and_sandbox(files):
    base = ["send", "--http2", *(fill(a, files) for a in TOKEN_AUTH), "--token", GOOD,
            "--alert", "x"]  # fmt: skip
    production = make_plan(build_parser().parse_args(base)).config
    sandbox = make_plan(build_parser().parse_args([*base, "--sandbox"])).config
    assert isinstance(production, Http2SenderConfig)
    assert isinstance(sandbox, Http2SenderConfig)
    assert (production.host, production.port) == ("api.push.apple.com", 443)
    assert (sandbox.host, sandbox.port) == ("api.sandbox.push.apple.com", 443)


def test_a_bad_push_type_is_refused_by_name(capsys, files):
    with pytest.raises(SystemExit) as exc:
        main(["send", "--http2", *(fill(a, files) for a in TOKEN_AUTH), "--push-type", "loud",
              "--token", GOOD, "--alert", "x"])  # fmt: skip
    assert exc.value.code == 2
    assert "--push-type: invalid choice: 'loud'" in capsys.readouterr().err


async def test_a_unique_apns_id_per_notification(pki, certs, p8):
    async with open_http2_simulator(sim_config(p8), pki=pki) as sim:
        done = await send(
            *token_flags(certs, p8, sim), *(f"--token={token(n)}" for n in range(1, 6)),
            "--alert", "x", "--report", "-", "--quiet",
        )  # fmt: skip
    assert done.returncode == 0
    assert done.stderr == ""
    ids = [json.loads(line)["apns_id"] for line in done.stdout.splitlines()]
    assert len(set(ids)) == 5
    assert all(uuid.UUID(i) for i in ids)


async def test_tokens_deactivate_applies_an_http2_report_later(pki, certs, p8, tmp_path, capsys):
    # Without --db while sending, the report does the same afterwards.
    db = tmp_path / "devices.db"
    later = token(9)  # 410 too, but registered again after the 410's time
    with TokenStore(db) as store:
        store.register_many([GOOD, BAD, GONE, later], at=1_000_000_000)
        store.register(later, at=GONE_MS // 1000 + 1)
    report = tmp_path / "report.jsonl"
    config = sim_config(p8, uninstalled_tokens={GONE: GONE_MS, later: GONE_MS})
    async with open_http2_simulator(config, pki=pki) as sim:
        done = await send(
            *token_flags(certs, p8, sim), "--token", GOOD, "--token", BAD, "--token", GONE,
            "--token", later, "--alert", "x", "--report", str(report),
        )  # fmt: skip
    assert done.returncode == 1, done.stderr
    with report.open("a") as file:  # a 410 line without its time cannot be applied
        file.write(json.dumps({"token": token(10), "status": 410, "reason": "Unregistered"}))
        file.write("\n")
    code = main(["tokens", "deactivate", "--db", str(db), "--from-report", str(report)])
    captured = capsys.readouterr()
    assert code == 1  # the bad line
    assert "line 5: timestamp: missing on a 410 line" in captured.err
    assert captured.out.splitlines() == [
        "1 token rejected as invalid (status 8) in the report: 1 deactivated, 0 unknown or "
        "already inactive",
        "2 tokens gone (410) in the report: 1 deactivated, 1 registered again since, 0 unknown "
        "or already inactive",
    ]
    with TokenStore(db) as store:
        states = {t: store.get(t) for t in (GOOD, BAD, GONE, later)}
    assert {t: (d.active, d.deactivated_reason) for t, d in states.items() if d} == {
        GOOD: (True, None),
        BAD: (False, "invalid-token"),
        GONE: (False, "feedback"),
        later: (True, None),
    }


async def test_input_lines_apns_would_refuse_are_bad_lines(pki, certs, p8, tmp_path):
    lines = [
        json.dumps({"token": token(1)}),
        json.dumps({"token": token(2), "payload": {"aps": {}}}),  # no content, no push type
        json.dumps({"token": token(3), "payload": {"aps": {"alert": "x" * 4090}}}),
        json.dumps({"token": token(4), "payload": {"aps": {"content-available": 1}}}),
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(lines) + "\n")
    async with open_http2_simulator(sim_config(p8), pki=pki) as sim:
        done = await send(
            *token_flags(certs, p8, sim), "--input", str(source), "--alert", "Hi",
            "--report", "-",
        )  # fmt: skip
    assert done.returncode == 1
    assert "line 2: payload: payload has no 'aps' content" in done.stderr
    assert "line 3: payload: payload is 4110 bytes; the limit is 4096" in done.stderr
    assert sorted((r.token, r.push_type, r.priority) for r in sim.accepted) == [
        (token(1), "alert", 10),
        (token(4), "background", 5),  # inferred: content-available only
    ]
    assert sorted(json.loads(line)["line"] for line in done.stdout.splitlines()) == [1, 4]
    assert summary_line(done.stderr).startswith(
        "sent 2: 2 accepted, 0 rejected, 0 failed, 2 skipped (bad input);"
    )


async def test_sigterm_stops_the_input_and_settles_what_was_submitted(pki, certs, p8, tmp_path):
    report = tmp_path / "report.jsonl"
    async with open_http2_simulator(sim_config(p8), pki=pki) as sim:
        command = [sys.executable, "-m", "apns_legacy", "send", *token_flags(certs, p8, sim),
                   "--input", "-", "--alert", "hi", "--report", str(report)]  # fmt: skip
        process = await trio.lowlevel.open_process(
            command, stdin=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert process.stdin is not None
        assert process.stderr is not None
        async with reaped(process):
            with trio.fail_after(30):
                lines = "".join(json.dumps({"token": token(n)}) + "\n" for n in range(1, 41))
                await process.stdin.send_all(lines.encode())
                await sim.wait_for_accepted(40)
                # stdin stays open: only the signal ends the input.
                code, stderr = await stop_with(process, signal.SIGTERM)
                assert code == 128 + signal.SIGTERM
    text = stderr.decode()
    assert "SIGTERM: no more input" in text
    assert "sent 40: 40 accepted, 0 rejected, 0 failed; " in text
    assert "stopped after input line 40: resume from line 41" in text
    entries = [json.loads(line) for line in report.read_text().splitlines()]
    assert sorted(e["line"] for e in entries) == list(range(1, 41))


def test_certificate_for_the_other_environment_is_warned_about(files, capsys):
    # The session's test certificate is for the sandbox only; Apple's production HTTP/2
    # host would answer 403 BadCertificateEnvironment. Only checked: nothing connects.
    base = ["send", "--http2", "--cert", files["cert"], "--key", files["key"], "--token", GOOD,
            "--alert", "x"]  # fmt: skip
    make_plan(build_parser().parse_args(base))
    assert capsys.readouterr().err == (
        "warning: the certificate is for sandbox only, but api.push.apple.com is the "
        "production server (use --sandbox)\n"
    )
    make_plan(build_parser().parse_args([*base, "--sandbox"]))
    assert capsys.readouterr().err == ""


async def test_no_secret_in_verbose_logs(pki, certs, p8):
    # -v -v with JSON logs, a rejection and a GOAWAY after every answer (new connections,
    # the token sent again): neither the provider token (a JWT starts "eyJ", base64 of
    # '{"') nor the key's PEM body appears anywhere.
    config = sim_config(p8, faults=Http2Faults(goaway_after=1))
    async with open_http2_simulator(config, pki=pki) as sim:
        done = await send(
            "-v", "-v", "--log-format", "json", *token_flags(certs, p8, sim),
            "--token", GOOD, "--token", BAD, "--alert", "x", "--report", "-",
        )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert '"logger": "apns_legacy.sender.http2"' in done.stderr  # there were logs to check
    key_body = "".join(p8[0].read_text().splitlines()[1:-1])
    for output in (done.stdout, done.stderr):
        assert "eyJ" not in output
        assert key_body[:40] not in output
