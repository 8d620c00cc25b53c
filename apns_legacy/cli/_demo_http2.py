"""``apns-legacy demo --http2``: today's APNs path on this machine, with no setup.

In one process: the HTTP/2 simulator on a free loopback port with throwaway
certificates and a throwaway token-signing key (written as a ``.p8`` file, as Apple
hands them out); a token store of demo devices registered yesterday, in a temporary
directory. Then the real command line, ``apns-legacy send --http2`` with token auth,
``--input``, ``--db`` and ``--report``, runs as a subprocess against it (the command is
printed first), while the simulator answers some tokens 400 BadDeviceToken and 410
Unregistered (with a time an hour ago), sends a GOAWAY after every 1,000 answers on a
connection, answers every 700th request 503 and lowers its stream limit to 1 after
each rejection. Five of the uninstalled apps were installed again after that 410 time,
so the store keeps them (the re-registration rule). It ends with a check of the
report, the simulator's record and the store, and a summary table. Exit 0 when every
check held, 1 when one did not.
"""

from __future__ import annotations

import collections
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Final

import attrs
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from rich.console import Console
from rich.table import Table

from ..client import TokenStore
from ..h2wire import ProviderKey
from ..simulator import (
    Http2AcceptedRecord,
    Http2Faults,
    Http2SimulatorConfig,
    open_http2_simulator,
)
from ..tls import make_test_pki
from ._demo_plan import INVALID, REINSTALLED, UNINSTALLED, Plan

TEAM_ID: Final = "TEAM123456"
KEY_ID: Final = "KEY1234567"
TOPIC: Final = "com.example.app"
GOAWAY_AFTER: Final = 1000
STATUS_EVERY: Final = 700
CONNECTIONS: Final = 2


@attrs.frozen
class Http2Check:
    """What the demo checks after the send, each a count that must be as expected."""

    exit_code: int
    report_lines: int
    accepted: int
    bad_device_token: int
    unregistered: int
    with_timestamp: int
    recorded: int
    duplicates: int
    missing: int
    unexpected: int
    deactivated_invalid: int
    deactivated_gone: int
    kept: int

    def problems(self, devices: int) -> list[str]:
        """What did not hold, in words (empty: everything held)."""
        expected = {
            "exit code (1: there were rejections)": (self.exit_code, 1),
            "report lines": (self.report_lines, devices),
            "accepted": (self.accepted, devices - INVALID - UNINSTALLED),
            "rejected BadDeviceToken": (self.bad_device_token, INVALID),
            "rejected Unregistered": (self.unregistered, UNINSTALLED),
            "410s with a timestamp": (self.with_timestamp, UNINSTALLED),
            "recorded by the simulator": (self.recorded, devices - INVALID - UNINSTALLED),
            "recorded twice": (self.duplicates, 0),
            "accepted but not recorded": (self.missing, 0),
            "recorded but not accepted": (self.unexpected, 0),
            "deactivated: invalid token": (self.deactivated_invalid, INVALID),
            "deactivated: 410": (self.deactivated_gone, UNINSTALLED - REINSTALLED),
            "kept: installed again since": (self.kept, REINSTALLED),
        }
        return [
            f"{what}: {got}, expected {want}"
            for what, (got, want) in expected.items()
            if got != want
        ]


def _write_p8(path: Path) -> ProviderKey:
    private = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return ProviderKey(key_id=KEY_ID, team_id=TEAM_ID, private_key=private)


async def demo_http2(console: Console, devices: int, workdir: Path) -> bool:
    """Run the HTTP/2 demo in ``workdir``; whether every check held."""
    started = time.monotonic()
    say = console.print
    plan = Plan.make(devices)
    db_path = workdir / "devices.db"
    record_path = workdir / "accepted.jsonl"
    report_path = workdir / "report.jsonl"
    input_path = workdir / "devices.jsonl"
    key_path = workdir / f"AuthKey_{KEY_ID}.p8"
    ca_path = workdir / "ca.pem"
    for path in (record_path, report_path):
        path.unlink(missing_ok=True)

    key = _write_p8(key_path)
    pki = make_test_pki()
    ca_path.write_bytes(pki.ca_pem())
    now = time.time()
    gone_at = int((now - 3600) * 1000)  # APNs noted these apps gone an hour ago
    config = Http2SimulatorConfig(
        provider_keys={(TEAM_ID, KEY_ID): key.public_key},
        invalid_tokens=[t.value for t in plan.invalid],
        uninstalled_tokens={t.value.hex(): gone_at for t in plan.uninstalled},
        lower_after_rejection=True,
        faults=Http2Faults(goaway_after=GOAWAY_AFTER, status_every=STATUS_EVERY),
        record_path=record_path,
    )
    async with open_http2_simulator(config, pki=pki) as sim:
        say(
            f"1. HTTP/2 simulator: 127.0.0.1:{sim.port} (throwaway certificates; provider key "
            f"{TEAM_ID}/{KEY_ID} registered, written to {key_path})"
        )
        say(
            f"   scripted: {INVALID} tokens answered 400 BadDeviceToken, {UNINSTALLED} answered "
            f"410 Unregistered (gone an hour ago), a GOAWAY after every {GOAWAY_AFTER} answers "
            f"on a connection, 503 for every {STATUS_EVERY}th request, the stream limit 1 after "
            "each rejection"
        )
        with TokenStore(db_path) as store:
            store.register_many(plan.tokens, topic=TOPIC, at=now - 86_400)
            # Installed again after APNs noted them gone: the store must keep them.
            store.register_many(plan.uninstalled[:REINSTALLED], topic=TOPIC, at=now - 600)
        input_path.write_text("".join(json.dumps({"token": t.hex}) + "\n" for t in plan.tokens))
        say(
            f"2. token store: {devices} devices registered yesterday ({REINSTALLED} of the "
            f"uninstalled ones again 10 minutes ago), in {db_path}; input: {input_path}"
        )
        arguments = [
            "send", "--http2", "--host", "127.0.0.1", "--port", str(sim.port),
            "--ca", str(ca_path), "--auth-key", str(key_path), "--key-id", KEY_ID,
            "--team-id", TEAM_ID, "--topic", TOPIC, "--input", str(input_path),
            "--alert", "Hello from HTTP/2", "--connections", str(CONNECTIONS),
            "--db", str(db_path), "--report", str(report_path),
        ]  # fmt: skip
        say("3. sending with the command line:")
        say("   apns-legacy " + shlex.join(arguments), markup=False)
        console.file.flush()
        send_started = time.monotonic()
        # Its stderr (progress, summary, the store's line) goes straight to ours.
        done = await trio.run_process(
            [sys.executable, "-m", "apns_legacy", *arguments], check=False, stdout=sys.stderr
        )
        send_time = time.monotonic() - send_started
        stats = sim.stats
        say(
            f"   send exited {done.returncode} after {send_time:.1f} s; the simulator saw "
            f"{stats.connections} connections, {stats.goaways} GOAWAYs, "
            f"{stats.by_reason.get('ServiceUnavailable', 0)} answered 503"
        )
        check = _check(done.returncode, report_path, db_path, sim.accepted, plan)
    problems = check.problems(devices)
    verdict = "held" if not problems else "BROKEN"
    say(
        f"4. check: {check.report_lines} report lines for {devices} input lines; accepted "
        f"{check.accepted}, BadDeviceToken {check.bad_device_token}, Unregistered "
        f"{check.unregistered} ({check.with_timestamp} with their time); the simulator "
        f"recorded {check.recorded}, {check.duplicates} twice, {check.missing} accepted ones "
        f"missing, {check.unexpected} unexpected; the store deactivated "
        f"{check.deactivated_invalid} invalid and {check.deactivated_gone} gone, kept "
        f"{check.kept} installed again: {verdict}"
    )
    for problem in problems:
        say(f"   NOT AS EXPECTED: {problem}", markup=False)
    table = Table(title="apns-legacy demo --http2", show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("count", justify="right")
    for what, count in (
        ("devices registered", devices),
        ("notifications accepted (200)", check.accepted),
        ("rejected: 400 BadDeviceToken", check.bad_device_token),
        ("rejected: 410 Unregistered", check.unregistered),
        ("GOAWAYs", stats.goaways),
        ("503s retried", stats.by_reason.get("ServiceUnavailable", 0)),
        ("deactivated: invalid token", check.deactivated_invalid),
        ("deactivated: 410", check.deactivated_gone),
        ("kept: installed again since the 410", check.kept),
    ):
        table.add_row(what, str(count))
    table.add_row("checks", verdict)
    table.add_row("wall time", f"{time.monotonic() - started:.1f} s")
    console.print(table)
    return not problems


def _check(
    exit_code: int,
    report_path: Path,
    db_path: Path,
    accepted: list[Http2AcceptedRecord],
    plan: Plan,
) -> Http2Check:
    entries = [json.loads(line) for line in report_path.read_text().splitlines()]
    by_reason = collections.Counter(e["reason"] for e in entries if e["outcome"] == "rejected")
    accepted_tokens = {e["token"] for e in entries if e["outcome"] == "accepted"}
    recorded = collections.Counter(record.token for record in accepted)
    with TokenStore(db_path) as store:
        by_deactivation = store.counts().by_reason
        kept = sum(
            1
            for t in plan.uninstalled[:REINSTALLED]
            if (device := store.get(t)) is not None and device.active
        )
    return Http2Check(
        exit_code=exit_code,
        report_lines=len(entries),
        accepted=len(accepted_tokens),
        bad_device_token=by_reason["BadDeviceToken"],
        unregistered=by_reason["Unregistered"],
        with_timestamp=sum(1 for e in entries if e["status"] == 410 and e["timestamp"]),
        recorded=sum(recorded.values()),
        duplicates=sum(n - 1 for n in recorded.values() if n > 1),
        missing=len(accepted_tokens - recorded.keys()),
        unexpected=len(recorded.keys() - accepted_tokens),
        deactivated_invalid=by_deactivation.get("invalid-token", 0),
        deactivated_gone=by_deactivation.get("feedback", 0),
        kept=kept,
    )
