"""``Http2SimulatorConfig.keep_records``: how much of what the HTTP/2 simulator accepted it
keeps in ``accepted`` (all, none or the first N), while the counters and the
``record_path`` file still see every one. Without it a long run (``serve --http2``)
grew by about 0.7 KB per accepted notification (measured: 52 MB at the start, 193 MB
after 200,000 through the bridge)."""

from __future__ import annotations

import json

import pytest
import trio

from apns_legacy.client import Http2SenderConfig, open_http2_sender
from apns_legacy.h2wire import AppSettings
from apns_legacy.simulator import Http2SimulatorConfig, open_http2_simulator
from apns_legacy.tls import make_test_pki
from apns_legacy.wire import DeviceToken, Notification

TOPIC = "com.example.app"
PAYLOAD = b'{"aps":{"alert":"hi"}}'
COUNT = 12


def token(i: int) -> DeviceToken:
    return DeviceToken.from_bytes(i.to_bytes(32, "big"))


@pytest.fixture(scope="module")
def pki():
    return make_test_pki()


@pytest.mark.parametrize(("keep", "kept"), [(True, COUNT), (False, 0), (5, 5), (0, 0)])
async def test_keep_records_bounds_accepted_not_the_counters_or_the_file(
    key, pki, tmp_path, keep, kept
):
    record = tmp_path / "accepted.jsonl"
    config = Http2SimulatorConfig(
        provider_keys={(key.team_id, key.key_id): key.public_key},
        invalid_tokens=[token(3).value],
        record_path=record,
        keep_records=keep,
    )
    with trio.fail_after(30):
        async with open_http2_simulator(config, pki=pki) as sim:
            sender_config = Http2SenderConfig(
                host="localhost",
                port=sim.port,
                ca=sim.pki.ca_pem(),
                settings=AppSettings(topic=TOPIC),
                provider_key=key,
            )
            async with open_http2_sender(sender_config) as sender:
                outcomes = [
                    await sender.submit(Notification(token=token(i), payload=PAYLOAD))
                    for i in range(COUNT + 1)
                ]
    good = [token(i).value.hex() for i in range(COUNT + 1) if i != 3]
    assert [o.accepted for o in outcomes].count(True) == COUNT
    assert sim.stats.accepted == COUNT
    assert sim.stats.rejected == 1
    assert [r.token for r in sim.accepted] == good[:kept]
    assert [json.loads(line)["token"] for line in record.read_text().splitlines()] == good


@pytest.mark.parametrize("keep", [-1, 2.5, "all"])
def test_keep_records_refuses_what_is_not_a_count(keep):
    with pytest.raises(ValueError, match="keep_records must be True, False or a count"):
        Http2SimulatorConfig(keep_records=keep)
