"""The bridge's pure parts: the mapping table, the replay ledger, the configuration file
and the feedback store."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest
from bridge_helpers import readme_example
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from apns_legacy.bridge import (
    BridgeConfigError,
    BridgeMode,
    FeedbackStore,
    ReplayLedger,
    load_config,
    map_outcome,
)
from apns_legacy.bridge._replay import Entry
from apns_legacy.client import Http2Outcome, OutcomeKind
from apns_legacy.tls import Environment, make_test_pki
from apns_legacy.wire import DeviceToken, Notification

NOW = 1_700_000_000.0


def outcome(kind: OutcomeKind, status: int | None = None, reason: str | None = None, ts=None):
    result = Http2Outcome(Notification(token=DeviceToken.from_bytes(bytes(32)), payload=b"{}"))
    result.kind = kind
    result.status = status
    result.reason = reason
    result.timestamp = ts
    return result


GONE = dt.datetime(2016, 2, 2, 8, 35, 13, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("kind", "status", "reason", "exact", "feedback_only"),
    [
        (OutcomeKind.ACCEPTED, None, None, (0, None), (0, None)),
        (
            OutcomeKind.REJECTED,
            410,
            "Unregistered",
            (0, int(GONE.timestamp())),
            (0, int(GONE.timestamp())),
        ),
        (
            OutcomeKind.REJECTED,
            410,
            "ExpiredToken",
            (0, int(GONE.timestamp())),
            (0, int(GONE.timestamp())),
        ),
        (OutcomeKind.REJECTED, 400, "BadDeviceToken", (8, None), (0, int(NOW))),
        (OutcomeKind.REJECTED, 400, "DeviceTokenNotForTopic", (8, None), (0, int(NOW))),
        (OutcomeKind.REJECTED, 413, "PayloadTooLarge", (7, None), (0, None)),
        (OutcomeKind.REJECTED, 413, "", (7, None), (0, None)),
        (OutcomeKind.REJECTED, 400, "MissingDeviceToken", (2, None), (0, None)),
        (OutcomeKind.REJECTED, 404, "BadPath", (2, None), (0, None)),
        (OutcomeKind.REJECTED, 400, "MissingTopic", (3, None), (0, None)),
        (OutcomeKind.REJECTED, 400, "TopicDisallowed", (3, None), (0, None)),
        (OutcomeKind.REJECTED, 400, "BadTopic", (6, None), (0, None)),
        (OutcomeKind.REJECTED, 400, "PayloadEmpty", (4, None), (0, None)),
        (OutcomeKind.REJECTED, 403, "Forbidden", (1, None), (0, None)),
        (OutcomeKind.REJECTED, 400, "BadPriority", (255, None), (0, None)),
        (OutcomeKind.REJECTED, 405, "MethodNotAllowed", (255, None), (0, None)),
        # The HTTP/2 sender's give-ups map by the structured ``apns_reason`` (pinned end
        # to end in test_bridge_reasons.py), never by searching the text: a failure
        # without one is status 1 whatever its message says.
        (
            OutcomeKind.FAILED,
            None,
            "APNs refused the credentials or topic: 400 TopicDisallowed",
            (1, None),
            (0, None),
        ),
        (
            OutcomeKind.FAILED,
            None,
            "503 ServiceUnavailable (after 8 attempts)",
            (1, None),
            (0, None),
        ),
    ],
)
def test_mapping_table(kind, status, reason, exact, feedback_only):
    ts = GONE if status == 410 else None
    for mode, expected in (
        (BridgeMode.EXACT, exact),
        (BridgeMode.SERIAL, exact),
        (BridgeMode.FEEDBACK_ONLY, feedback_only),
    ):
        mapped = map_outcome(outcome(kind, status, reason, ts), mode, NOW)
        assert (mapped.status, mapped.feedback) == expected, mode


def test_410_without_a_timestamp_is_listed_now():
    mapped = map_outcome(outcome(OutcomeKind.REJECTED, 410, "Unregistered"), BridgeMode.EXACT, NOW)
    assert mapped.feedback == int(NOW)


def test_credential_faults_and_bridge_bugs_raise_an_alert():
    for status, reason in ((403, "BadCertificate"), (400, "BadCollapseId")):
        assert map_outcome(
            outcome(OutcomeKind.REJECTED, status, reason), BridgeMode.EXACT, NOW
        ).alert
    assert map_outcome(outcome(OutcomeKind.ACCEPTED), BridgeMode.EXACT, NOW).alert is None


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Owner:
    def __init__(self) -> None:
        self.told: list[Entry] = []

    def resolved(self, entry: Entry) -> None:
        self.told.append(entry)


def key(i: int):
    return (i.to_bytes(32, "big"), b"{}", 0, 10)


def test_ledger_matches_by_content_oldest_first_and_hands_over_the_outcome():
    clock = Clock()
    ledger = ReplayLedger(ttl=60, size=100, clock=clock)
    first, second, repeat = Entry(key(1), None), Entry(key(2), None), Entry(key(1), None)
    ledger.add([first, second, repeat])
    assert len(ledger) == 3
    owner = Owner()
    assert ledger.take(key(1), owner) is first
    assert ledger.take(key(3), owner) is None
    # Resolving after the hand-over tells the new owner.
    first.resolve(8)
    assert owner.told == [first]
    assert ledger.take(key(1), owner) is repeat
    assert ledger.take(key(1), owner) is None
    assert len(ledger) == 1
    assert ledger.matched == 2


def test_ledger_memory_follows_its_size_not_the_traffic():
    ledger = ReplayLedger(ttl=60, size=100, clock=Clock())
    owner = Owner()
    for round_ in range(1000):  # 10,000 entries added and taken within the TTL
        entries = [Entry(key(round_ * 10 + i), None) for i in range(10)]
        ledger.add(entries)
        for entry in entries:
            assert ledger.take(entry.key, owner) is entry
    assert len(ledger) == 0
    assert ledger.backlog <= 64 + 10


def test_a_resolved_entry_forgets_its_owner():
    owner = Owner()
    entry = Entry(key(1), owner)
    entry.resolve(0)
    assert owner.told == [entry]
    assert entry.owner is None
    ledger = ReplayLedger(ttl=60, size=10, clock=Clock())
    ledger.add([entry])
    assert ledger.take(key(1), owner) is entry
    assert entry.owner is None  # resolved already: nobody to tell


def test_ledger_entries_expire_and_the_size_is_bounded():
    clock = Clock()
    ledger = ReplayLedger(ttl=60, size=2, clock=clock)
    ledger.add([Entry(key(i), None) for i in range(5)])
    assert len(ledger) == 2  # the three oldest were pushed out
    assert ledger.take(key(0), Owner()) is None
    assert ledger.take(key(4), Owner()) is not None
    clock.now = 61
    assert len(ledger) == 0
    assert ledger.take(key(3), Owner()) is None
    assert ledger.expired == 4


def test_feedback_store_keeps_the_latest_time_bounds_the_list_and_clears_what_was_read(tmp_path):
    store = FeedbackStore(tmp_path / "f.db", limit=3)
    store.add("a", b"1" * 32, 10)
    store.add("a", b"1" * 32, 5)
    store.add("b", b"2" * 32, 7)
    assert store.pending("a") == [(10, b"1" * 32)]
    for i in range(3, 7):
        store.add("a", bytes([i]) * 32, 100 + i)
    assert store.size("a") == 3
    assert store.dropped == 2
    items = store.pending("a")
    store.add("a", bytes([6]) * 32, 500)  # listed again after the read began: stays
    store.clear("a", items)
    assert store.pending("a") == [(500, bytes([6]) * 32)]
    assert store.sizes() == {"a": 1, "b": 1}
    store.close()
    again = FeedbackStore(tmp_path / "f.db", limit=3)
    assert again.sizes() == {"a": 1, "b": 1}
    again.close()


# -- the configuration file ---------------------------------------------------------------

#: The README's example: the issue's text, which must work as written.
ISSUE_EXAMPLE = readme_example()


@pytest.fixture
def files(tmp_path: Path) -> Path:
    pki = make_test_pki(topic="com.acme.legacy")
    pki.write(tmp_path, p12_passphrase=b"secret")
    (tmp_path / "bridge.pem").write_bytes((tmp_path / "server.pem").read_bytes())
    (tmp_path / "bridge-key.pem").write_bytes((tmp_path / "server-key.pem").read_bytes())
    (tmp_path / "legacy-clients-ca.pem").write_bytes(pki.ca_pem())
    (tmp_path / "extra-trust.pem").write_bytes(pki.ca_pem())
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "AuthKey_ABC123DEFG.p8").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (tmp_path / "bridge.toml").write_text(ISSUE_EXAMPLE)
    return tmp_path


def test_the_issue_example_loads_as_written(files):
    config = load_config(files / "bridge.toml")
    assert config.gateway == ("0.0.0.0", 2195)
    assert config.feedback == ("0.0.0.0", 2196)
    assert config.mode is BridgeMode.EXACT
    assert config.store == files / "bridge.db"
    assert config.upstream.host == "api.push.apple.com"
    assert config.upstream.port == 443
    assert config.upstream.ca is not None
    (app,) = config.apps
    assert app.topic == "com.acme.legacy"
    assert app.provider_key is not None
    assert app.provider_key.key_id == "ABC123DEFG"
    assert app.provider_key.team_id == "DEF123GHIJ"
    assert app.environment is Environment.PRODUCTION
    assert config.metrics is None
    (files / "bridge.toml").write_text(
        ISSUE_EXAMPLE.replace('mode = "exact"', 'mode = "exact"\nmetrics = "127.0.0.1:9102"')
    )
    assert load_config(files / "bridge.toml").metrics == ("127.0.0.1", 9102)


def test_certificate_auth_with_a_passphrase_from_the_environment(files):
    text = ISSUE_EXAMPLE.split("[[app]]")[0] + textwrap.dedent(
        """\
        [[app]]
        topic = "com.acme.legacy"
        cert = "client.p12"
        passphrase_env = "PUSH_P12_PASS"
        environment = "sandbox"
        mode = "serial"
        """
    )
    (files / "bridge.toml").write_text(text)
    config = load_config(files / "bridge.toml", environ={"PUSH_P12_PASS": "secret"})
    (app,) = config.apps
    assert app.credentials is not None
    assert app.credentials.topic == "com.acme.legacy"
    assert app.environment is Environment.SANDBOX
    assert config.mode_of(app) is BridgeMode.SERIAL
    with pytest.raises(
        BridgeConfigError,
        match=r"^\[\[app\]\] 1.passphrase_env: environment variable PUSH_P12_PASS is not set$",
    ):
        load_config(files / "bridge.toml", environ={})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ('mode = "exact"', 'mode = "fast"'),
            r"^bridge.mode: 'fast' is not a mode \(exact \| feedback-only \| serial\)$",
        ),
        (
            ('gateway = "0.0.0.0:2195"', 'gateway = "0.0.0.0"'),
            r"^bridge.gateway: expected HOST:PORT",
        ),
        (
            ('gateway = "0.0.0.0:2195"', 'gateway = "0.0.0.0:70000"'),
            r"^bridge.gateway: port 70000 is outside 0..65535$",
        ),
        (("port = 443", 'port = "443"'), r"^upstream.port: must be a whole number 1..65535$"),
        (
            ('server_key = "bridge-key.pem"', 'server_key = "missing.pem"'),
            r"^bridge.server_cert: .*missing.pem",
        ),
        (
            ('client_ca = "legacy-clients-ca.pem"', 'client_ca = "bridge-key.pem"'),
            r"^bridge.client_ca: .*no PEM certificate",
        ),
        (
            ('auth_key = "AuthKey_ABC123DEFG.p8"', 'auth_key = "nope.p8"'),
            r"^\[\[app\]\] 1.auth_key: cannot read .*nope.p8",
        ),
        (
            ('auth_key = "AuthKey_ABC123DEFG.p8"', 'auth_key = "bridge.pem"'),
            r"^\[\[app\]\] 1.auth_key: auth key is not",
        ),
        (('key_id = "ABC123DEFG"', ""), r"^\[\[app\]\] 1.key_id: required$"),
        (('topic = "com.acme.legacy"', 'topik = "x"'), r"^\[\[app\]\] 1.topik: unknown setting"),
        (('store = "bridge.db"', "store = 5"), r"^bridge.store: must be a string, not 5$"),
        (("[upstream]", "[upstreams]"), r"^upstreams: unknown table"),
        (('ca = "extra-trust.pem"', 'ca = "bridge.db"'), r"^upstream.ca: cannot read"),
    ],
)
def test_bad_configurations_get_one_line_naming_the_field(files, change, message):
    old, new = change
    text = ISSUE_EXAMPLE.replace(old, new)
    assert text != ISSUE_EXAMPLE
    (files / "bridge.toml").write_text(text)
    with pytest.raises(BridgeConfigError, match=message) as info:
        load_config(files / "bridge.toml")
    assert "\n" not in str(info.value)


def test_no_app_and_both_credentials_are_refused(files):
    head = ISSUE_EXAMPLE.split("[[app]]")[0]
    (files / "bridge.toml").write_text(head)
    with pytest.raises(
        BridgeConfigError, match=r"^app: at least one \[\[app\]\] table is required$"
    ):
        load_config(files / "bridge.toml")
    (files / "bridge.toml").write_text(ISSUE_EXAMPLE + 'cert = "client.p12"\n')
    with pytest.raises(BridgeConfigError, match="give exactly one of auth_key"):
        load_config(files / "bridge.toml")
    twice = ISSUE_EXAMPLE + "\n[[app]]" + ISSUE_EXAMPLE.split("[[app]]")[1]
    (files / "bridge.toml").write_text(twice)
    with pytest.raises(BridgeConfigError, match=r"app com\.acme\.legacy: configured twice"):
        load_config(files / "bridge.toml")


def test_the_upstream_host_follows_the_environment_unless_given():
    from apns_legacy.bridge import PRODUCTION_HOST, SANDBOX_HOST, UpstreamConfig

    assert UpstreamConfig().host_for(Environment.PRODUCTION) == PRODUCTION_HOST
    assert UpstreamConfig().host_for(Environment.SANDBOX) == SANDBOX_HOST
    assert UpstreamConfig(host="localhost").host_for(Environment.SANDBOX) == "localhost"


def test_upstream_ca_is_extra_trust_on_top_of_the_systems_roots():
    from cryptography import x509

    from apns_legacy.bridge import UpstreamConfig
    from apns_legacy.bridge._config import system_roots

    ca = make_test_pki().ca_pem()
    assert UpstreamConfig().trust() is None  # the system's store, as the sender does
    assert UpstreamConfig(ca=ca, system_roots=False).trust() == ca
    combined = UpstreamConfig(ca=ca).trust()
    assert combined is not None
    assert combined.startswith(ca)
    # Every certificate parses without a warning (pytest turns warnings into errors).
    found = x509.load_pem_x509_certificates(combined)
    assert len(found) == 1 + system_roots().count(b"-----BEGIN CERTIFICATE-----")


def test_the_store_keeps_ledger_snapshots_and_reads_back_only_live_entries(tmp_path):
    store = FeedbackStore(tmp_path / "l.db")
    rows = [
        ("app|CN=a", b"\x01" * 32, b'{"aps":{}}', None, 10, 0, 1000.0),
        ("app|CN=a", b"\x02" * 32, b'{"aps":{}}', 5, None, 8, 1100.0),
        ("app|CN=b", b"\x03" * 32, b'{"aps":{}}', None, None, None, 1200.0),
    ]
    store.save_ledger(rows)
    store.close()
    again = FeedbackStore(tmp_path / "l.db")
    assert again.load_ledger(999.0) == rows
    assert again.load_ledger(1000.0) == rows[1:]  # expired entries are not read back
    again.save_ledger(rows[2:])  # a snapshot replaces the previous one
    assert again.load_ledger(0.0) == rows[2:]
    again.save_ledger([])
    assert again.load_ledger(0.0) == []


def test_restored_entries_match_replays_expire_and_stay_bounded():
    clock = Clock()
    ledger = ReplayLedger(ttl=60, size=2, clock=clock)
    key = (b"\x01" * 32, b"{}", None, None)
    ledger.restore(key, None, 10.0)  # no answer known when written: at most once
    ledger.restore((b"\x02" * 32, b"{}", None, None), 8, 20.0)
    ledger.restore((b"\x03" * 32, b"{}", None, None), 0, 30.0)
    assert len(ledger) == 2  # size bound: the oldest went
    assert ledger.take(key, Owner()) is None
    failed = ledger.take((b"\x02" * 32, b"{}", None, None), Owner())
    assert failed is not None
    assert failed.status == 8
    assert failed.owner is None
    clock.now = 30.0
    assert len(ledger) == 0  # expired at its restored deadline
    ledger = ReplayLedger(ttl=60, size=2, clock=clock)
    ledger.restore(key, None, 40.0)
    entry = ledger.take(key, Owner())
    assert entry is not None
    assert entry.status == 0
