"""``apns-legacy demo --bridge``: the bridge end to end on this machine, with no setup.

In one process: throwaway certificates (a CA for the legacy client and the bridge's
server certificate, a client certificate for the topic) and a throwaway ES256 signing
key; the HTTP/2 APNs simulator as "Apple", knowing that key, with some invalid
tokens (400 BadDeviceToken) and some uninstalled apps (410 Unregistered); the bridge
in ``exact`` mode in front of it; the project's *binary* sender pushing every device
through the bridge on two connections; then the bridge's feedback port. It checks
that Apple (the simulator) recorded each valid notification exactly once, that the
sender saw status 8 for exactly the invalid tokens, and that the feedback service
listed exactly the uninstalled ones. Exit 0 when all of that held.
"""

from __future__ import annotations

import collections
import hashlib
import random
import time
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.asymmetric import ec
from rich.console import Console

from ..bridge import AppConfig, BridgeConfig, BridgeMode, UpstreamConfig, open_bridge
from ..client import Outcome, SenderConfig, open_sender, read_feedback
from ..h2wire import ProviderKey
from ..simulator import Http2SimulatorConfig, open_http2_simulator
from ..tls import client_context, make_test_pki
from ..wire import DeviceToken, Notification, build_payload

TOPIC: Final = "com.example.legacy"
INVALID: Final = 10
UNINSTALLED: Final = 20
GONE_MS: Final = 1_700_000_000_123


async def demo_bridge(console: Console, devices: int, workdir: Path) -> bool:
    """Run the bridge demo; True when every check held."""
    say = console.print
    started = time.monotonic()
    tokens = [
        DeviceToken(hashlib.sha256(b"apns-legacy bridge demo %d" % n).digest())
        for n in range(devices)
    ]
    special = random.Random(2196).sample(tokens, INVALID + UNINSTALLED)
    invalid, uninstalled = set(special[:INVALID]), set(special[INVALID:])

    pki = make_test_pki(topic=TOPIC)
    key = ProviderKey(
        key_id="DEMOKEY123",
        team_id="DEMOTEAM12",
        private_key=ec.generate_private_key(ec.SECP256R1()),
    )
    sim_config = Http2SimulatorConfig(
        provider_keys={(key.team_id, key.key_id): key.public_key},
        invalid_tokens=[t.value for t in invalid],
        uninstalled_tokens={t.value.hex(): GONE_MS for t in uninstalled},
    )
    async with open_http2_simulator(sim_config) as sim:
        assert sim.pki is not None
        say(
            f"1. HTTP/2 APNs simulator (as Apple) on {sim.address[0]}:{sim.address[1]}: "
            f"{INVALID} invalid tokens (400 BadDeviceToken), {UNINSTALLED} uninstalled "
            "apps (410 Unregistered)"
        )
        config = BridgeConfig(
            gateway=("127.0.0.1", 0),
            feedback=("127.0.0.1", 0),
            server=pki.server,
            client_ca=[pki.ca_certificate],
            mode=BridgeMode.EXACT,
            store=workdir / "bridge.db",
            apps=[AppConfig(topic=TOPIC, provider_key=key)],
            upstream=UpstreamConfig(
                host="localhost", port=sim.port, ca=sim.pki.ca_pem(), retry_delay=0.05
            ),
        )
        async with open_bridge(config) as bridge:
            gateway, feedback = bridge.gateway_address, bridge.feedback_address
            say(
                f"2. bridge: gateway {gateway[0]}:{gateway[1]}, feedback "
                f"{feedback[0]}:{feedback[1]}, mode exact, app {TOPIC} with a .p8 key"
            )
            outcomes: list[Outcome] = []
            context = client_context(pki.client, ca=pki.ca_pem())
            say(f"3. the binary sender pushes {devices} notifications through it (2 connections)")
            send_started = time.monotonic()
            async with open_sender(
                context,
                host=gateway[0],
                port=gateway[1],
                server_hostname="localhost",
                config=SenderConfig(connections=2),
                on_outcome=outcomes.append,
            ) as sender:
                await sender.submit_many(
                    Notification(token=token, payload=build_payload(alert=f"Hi {n}", badge=1))
                    for n, token in enumerate(tokens)
                )
            send_seconds = time.monotonic() - send_started
            items = await read_feedback(
                context, host=feedback[0], port=feedback[1], server_hostname="localhost"
            )
            matched = bridge.gateway.replay_matched
            stopped = bridge.stats

        recorded = collections.Counter(record.token for record in sim.accepted)
    rejected = {o.notification.token for o in outcomes if o.status == 8}
    accepted = {o.notification.token for o in outcomes if o.accepted}
    valid = set(tokens) - invalid - uninstalled  # 410s are not recorded as delivered
    twice = sum(1 for n in recorded.values() if n > 1)
    missing = sum(1 for t in valid if recorded[t.value.hex()] == 0)
    listed = {item.token for item in items}
    say(
        f"4. sender: {len(accepted)} accepted, {len(rejected)} rejected with status 8 "
        f"(invalid token), {len(outcomes) - len(accepted) - len(rejected)} other, "
        f"in {send_seconds:.1f}s; {matched} replayed notifications recognised by the "
        "bridge and not sent to Apple again"
    )
    say(
        f"5. Apple (the simulator) recorded {sum(recorded.values())} notifications: "
        f"{twice} twice, {missing} valid ones missing"
    )
    say(
        f"6. feedback port: {len(items)} tokens listed with Apple's 410 time "
        f"({items[0].time.isoformat() if items else '-'}); upstream answers: "
        + ", ".join(f"{k} {v}" for k, v in sorted(stopped.upstream.items()))
    )
    checks = {
        "every notification has an outcome": len(outcomes) == devices,
        "status 8 for exactly the invalid tokens": rejected == invalid,
        "each valid notification reached Apple exactly once": twice == 0 and missing == 0,
        "the feedback list is exactly the uninstalled apps": listed
        == {t.value for t in uninstalled},
    }
    for name, ok in checks.items():
        say(f"   {'yes' if ok else 'NO '}  {name}")
    held = all(checks.values())
    say(f"done in {time.monotonic() - started:.1f}s: {'all checks held' if held else 'FAILED'}")
    return held
