"""Legacy clients nobody here wrote, through the bridge: ``apns-client`` 0.2.1 (PyPI,
2014) and node-apn 1.7.8 (npm ``apn``), driven by the wrappers in ``contrib/conform/`` as
their documentation says, with two invalid tokens in the middle. Each must see status 8
for exactly those two, replay the rest itself, and "Apple" (the HTTP/2 simulator) must
record every valid notification exactly once.

Needs the peers that ``contrib/conform/install-peers.sh`` installs (a virtual environment
with apns-client 0.2.1 and an old pyOpenSSL; node with apn 1.7.8); set
``APNS_LEGACY_PEERS`` to its folder (default ``/tmp/apns-legacy-peers``). Each client is
skipped, with that reason, when it is missing: CI installs only this project's own
dependencies.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
from pathlib import Path

import pytest
import trio
from bridge_helpers import TOPIC, new_key, open_rig, sim_config, token
from cryptography.hazmat.primitives import serialization

from apns_legacy.tls import make_test_pki

ROOT = Path(__file__).resolve().parent.parent
PEERS = Path(os.environ.get("APNS_LEGACY_PEERS", "/tmp/apns-legacy-peers"))
PYTHON = PEERS / "py" / "bin" / "python"

NODE = shutil.which("node")
NODE_MODULES = PEERS / "node" / "node_modules"
CLIENTS = [
    pytest.param(
        [str(PYTHON), str(ROOT / "contrib" / "conform" / "apns_client_wrapper.py")],
        {},
        id="apns-client-0.2.1",
        marks=pytest.mark.skipif(
            not PYTHON.exists(),
            reason=f"apns-client 0.2.1 is not installed ({PYTHON} missing; run "
            "contrib/conform/install-peers.sh, or set APNS_LEGACY_PEERS)",
        ),
    ),
    pytest.param(
        [str(NODE), str(ROOT / "contrib" / "conform" / "node_apn_wrapper.js")],
        {"NODE_PATH": str(NODE_MODULES)},
        id="node-apn-1.7.8",
        marks=pytest.mark.skipif(
            NODE is None or not (NODE_MODULES / "apn").exists(),
            reason=f"node or apn 1.7.8 is not installed ({NODE_MODULES}/apn missing; run "
            "contrib/conform/install-peers.sh, or set APNS_LEGACY_PEERS)",
        ),
    ),
]

COUNT = 40
INVALID = (11, 27)


@pytest.mark.parametrize(("command", "env"), CLIENTS)
async def test_a_legacy_client_sees_its_status_8_and_apple_gets_each_notification_once(
    tmp_path, command, env
):
    pki = make_test_pki(topic=TOPIC)
    key = new_key()
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "client.pem").write_bytes(
        pki.client.certificate.public_bytes(serialization.Encoding.PEM)
    )
    (certs / "ca.pem").write_bytes(pki.ca_pem())
    (certs / "client-key.pem").write_bytes(
        pki.client.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    workload = tmp_path / "workload.jsonl"
    workload.write_text(
        "".join(
            json.dumps(
                {
                    "index": i,
                    "token": token(i).hex(),
                    "payload": json.dumps({"aps": {"alert": f"n{i}"}}),
                }
            )
            + "\n"
            for i in range(1, COUNT + 1)
        )
    )
    result = tmp_path / "result.jsonl"
    sim = sim_config(key, invalid_tokens=[token(i) for i in INVALID])
    with trio.fail_after(90):
        async with open_rig(pki, key, sim=sim) as rig:
            host, port = rig.bridge.gateway_address
            done = await trio.run_process(
                [
                    *command,
                    host,
                    str(port),
                    str(certs),
                    str(workload),
                    str(result),
                ],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                env={**os.environ, **env},
            )
            assert done.returncode == 0, done.stderr.decode()
            matched = rig.bridge.gateway.replay_matched
            frames = dict(rig.bridge.gateway.by_status)
    lines = [json.loads(line) for line in result.read_text().splitlines()]
    by_index = {line["index"]: line for line in lines}
    assert sorted(by_index) == list(range(1, COUNT + 1))
    rejected = {i: line["status"] for i, line in by_index.items() if line["outcome"] == "rejected"}
    assert rejected == dict.fromkeys(INVALID, 8)
    assert all(by_index[i]["outcome"] == "accepted" for i in by_index if i not in INVALID)
    recorded = collections.Counter(record.token for record in rig.sim.accepted)
    assert set(recorded) == {token(i).hex() for i in range(1, COUNT + 1) if i not in INVALID}
    assert max(recorded.values()) == 1
    assert frames == {8: 2}
    # apns-client resent what followed each failure; the bridge had forwarded it already.
    assert matched > 0
