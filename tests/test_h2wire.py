"""The sans-IO HTTP/2 layer: requests, responses, reasons, provider tokens (JWT)."""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import json
import subprocess
import sys
import textwrap

import jwt
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import given
from hypothesis import strategies as st

from apns_legacy.h2wire import (
    AppSettings,
    ProviderKey,
    ProviderTokenCache,
    PushType,
    Reason,
    TokenDecision,
    TokenRejected,
    build_request,
    encode_error_body,
    make_provider_token,
    parse_response,
    reason_from_str,
    verify_provider_token,
)
from apns_legacy.wire import (
    DeviceToken,
    LocalProtocolError,
    Notification,
    PayloadTooLargeError,
    RemoteProtocolError,
)

TOKEN = DeviceToken.from_hex("aa" * 32)
NOW = 1_700_000_000


def note(payload: bytes, **kw: int) -> Notification:
    return Notification(token=TOKEN, payload=payload, **kw)


# -- requests ----------------------------------------------------------------------------


def test_alert_request_headers_and_body():
    payload = b'{"aps":{"alert":"Hello"}}'
    request = build_request(
        note(payload, expiry=1_700_003_600),
        AppSettings(topic="com.example.app", collapse_id="c1"),
        apns_id="eabeae54-14a8-11e5-b60b-1697f925ec7b",
        authorization="x.y.z",
    )
    assert request.headers == (
        (":method", "POST"),
        (":scheme", "https"),
        (":path", "/3/device/" + "aa" * 32),
        ("authorization", "bearer x.y.z"),
        ("apns-topic", "com.example.app"),
        ("apns-push-type", "alert"),
        ("apns-priority", "10"),
        ("apns-expiration", "1700003600"),
        ("apns-collapse-id", "c1"),
        ("apns-id", "eabeae54-14a8-11e5-b60b-1697f925ec7b"),
        ("content-length", str(len(payload))),
    )
    assert request.body == payload
    assert type(request.body) is bytes
    assert request.path == "/3/device/" + "aa" * 32


def test_content_available_only_is_background_priority_5():
    request = build_request(
        note(b'{"aps":{"content-available":1},"k":"v"}'), AppSettings(topic="com.x")
    )
    assert request.push_type is PushType.BACKGROUND
    assert request.priority == 5
    assert ("apns-priority", "5") in request.headers


def test_background_with_priority_10_is_refused():
    with pytest.raises(LocalProtocolError, match=r"apns-priority 10 .* background"):
        build_request(
            note(b'{"aps":{"content-available":1}}'), AppSettings(topic="com.x", priority=10)
        )


def test_voip_topic_has_the_5120_limit():
    body = b'{"aps":{"alert":"' + b"x" * 5000 + b'"}}'
    request = build_request(note(body), AppSettings(topic="com.x.voip"))
    assert request.push_type is PushType.VOIP
    with pytest.raises(PayloadTooLargeError, match="limit for apns-push-type alert is 4096"):
        build_request(note(body), AppSettings(topic="com.x"))
    big = b'{"aps":{"alert":"' + b"x" * 5200 + b'"}}'
    with pytest.raises(PayloadTooLargeError, match="voip is 5120") as info:
        build_request(note(big), AppSettings(topic="com.x.voip"))
    assert info.value.limit == 5120


def test_payload_of_exactly_4096_bytes_passes():
    filler = 4096 - len(b'{"aps":{"alert":""}}')
    body = b'{"aps":{"alert":"' + b"x" * filler + b'"}}'
    assert len(body) == 4096
    assert build_request(note(body), AppSettings(topic="com.x")).body == body
    with pytest.raises(PayloadTooLargeError, match="4097 bytes"):
        build_request(note(body[:-3] + b'x"}}'), AppSettings(topic="com.x"))


def test_pass_topic_allows_empty_aps_other_topics_do_not():
    for body in (b"{}", b'{"aps":{}}'):
        request = build_request(note(body), AppSettings(topic="pass.com.example.card"))
        assert request.push_type is PushType.BACKGROUND
        with pytest.raises(LocalProtocolError, match="no 'aps' content"):
            build_request(note(body), AppSettings(topic="com.x"))
    # An explicit push type is the caller's decision.
    explicit = AppSettings(topic="com.x", push_type=PushType.BACKGROUND)
    assert build_request(note(b"{}"), explicit).priority == 5


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (lambda: AppSettings(priority=7), "apns-priority must be 10, 5 or 1"),
        (
            lambda: AppSettings(collapse_id="x" * 65),
            "apns-collapse-id is 65 bytes; the limit is 64",
        ),
        (lambda: AppSettings(expiration=-1), "apns-expiration -1 is out of range"),
        (lambda: AppSettings(topic=""), "apns-topic is empty"),
        (lambda: AppSettings(topic="a\nb"), "apns-topic has a control character at position 2"),
    ],
)
def test_bad_settings_name_the_header(settings, message):
    with pytest.raises(LocalProtocolError, match=message):
        settings()


def test_bad_apns_id_and_non_json_payload():
    with pytest.raises(LocalProtocolError, match="apns-id 'ABC' is not a lowercase"):
        build_request(note(b'{"aps":{"alert":"x"}}'), AppSettings(), apns_id="ABC")
    with pytest.raises(LocalProtocolError, match="payload is not valid JSON"):
        build_request(note(b"not json"), AppSettings())
    with pytest.raises(LocalProtocolError, match="JSON object, not a JSON list"):
        build_request(note(b"[1]"), AppSettings(push_type=PushType.ALERT))


def test_settings_expiration_and_priority_override_the_notification():
    request = build_request(
        note(b'{"aps":{"alert":"x"}}', expiry=5, priority=10),
        AppSettings(expiration=0, priority=1),
    )
    assert ("apns-expiration", "0") in request.headers
    assert ("apns-priority", "1") in request.headers
    assert "apns-topic" not in dict(request.headers)


@given(
    token=st.binary(min_size=32, max_size=100),
    alert=st.text(max_size=200),
    topic=st.from_regex(r"[a-z]{1,10}(\.[a-z]{1,10}){0,3}", fullmatch=True),
    expiry=st.integers(0, 0xFFFF_FFFF),
)
def test_request_round_trip(token, alert, topic, expiry):
    payload = json.dumps({"aps": {"alert": alert}}).encode()
    n = Notification(
        token=DeviceToken.from_bytes(token, allow_long=True), payload=payload, expiry=expiry
    )
    request = build_request(n, AppSettings(topic=topic))
    headers = dict(request.headers)
    assert bytes.fromhex(headers[":path"].removeprefix("/3/device/")) == token
    assert int(headers["apns-expiration"]) == expiry
    assert headers["apns-topic"] == topic
    assert json.loads(request.body) == {"aps": {"alert": alert}}
    assert int(headers["content-length"]) == len(request.body)


# -- responses ---------------------------------------------------------------------------


def test_success_response():
    response = parse_response(
        [(b":status", b"200"), (b"apns-id", b"eabeae54-14a8-11e5-b60b-1697f925ec7b")], b""
    )
    assert response.ok
    assert response.reason is None
    assert response.apns_id == "eabeae54-14a8-11e5-b60b-1697f925ec7b"
    assert response.timestamp is None


def test_error_response_from_apples_example():
    # Apple's example: 400 with {"reason": "BadDeviceToken"}.
    response = parse_response(
        [(":status", "400"), ("content-type", "application/json"), ("apns-id", "id-1")],
        b'{ "reason" : "BadDeviceToken" }',
    )
    assert response.status == 400
    assert response.reason is Reason.BAD_DEVICE_TOKEN
    assert response.reason.status == 400
    assert "device token is invalid" in response.reason.description


def test_410_timestamp_is_an_aware_utc_datetime_with_milliseconds():
    response = parse_response(
        [(":status", "410")], b'{"reason":"Unregistered","timestamp":1454402113123}'
    )
    assert response.reason is Reason.UNREGISTERED
    assert response.timestamp == dt.datetime(2016, 2, 2, 8, 35, 13, 123000, tzinfo=dt.UTC)
    assert response.timestamp.utcoffset() == dt.timedelta(0)


def test_unknown_reason_is_kept_as_a_string():
    response = parse_response([(":status", "400")], b'{"reason":"SomethingNew"}')
    assert response.reason == "SomethingNew"
    assert not isinstance(response.reason, Reason)
    assert reason_from_str("Shutdown") is Reason.SHUTDOWN


def test_every_reason_has_a_status_and_a_description():
    statuses = {reason.status for reason in Reason}
    assert statuses == {400, 403, 404, 405, 410, 413, 429, 500, 503}
    assert all(reason.description.endswith(".") for reason in Reason)
    assert Reason.TOO_MANY_PROVIDER_TOKEN_UPDATES.status == 429


@pytest.mark.parametrize(
    ("headers", "body", "message"),
    [
        ([], b"", "no :status"),
        ([(":status", "20")], b"", "not a 3-digit code"),
        ([(":status", "200"), (":status", "200")], b"", "repeats the header :status"),
        ([(":status", "400")], b"<html>", "not JSON"),
        ([(":status", "400")], b'{"why":1}', 'without a JSON {"reason"'),
        ([(":status", "410")], b'{"reason":"Unregistered","timestamp":"x"}', "timestamp 'x'"),
        ([(":status", "410")], b'{"reason":"Unregistered","timestamp":-1}', "timestamp -1"),
        ([(b":status", b"\xff00")], b"", "not ASCII"),
    ],
)
def test_malformed_responses_are_remote_protocol_errors(headers, body, message):
    with pytest.raises(RemoteProtocolError, match=message):
        parse_response(headers, body)


@given(
    reason=st.sampled_from(list(Reason)) | st.from_regex(r"[A-Za-z]{1,30}", fullmatch=True),
    timestamp=st.none() | st.integers(0, 253_402_300_799_999),
)
def test_error_body_round_trip(reason, timestamp):
    status = reason.status if isinstance(reason, Reason) else 400
    response = parse_response([(":status", str(status))], encode_error_body(reason, timestamp))
    assert response.reason == reason
    if timestamp is None:
        assert response.timestamp is None
    else:
        assert round(response.timestamp.timestamp() * 1000) == timestamp


@given(
    headers=st.lists(st.tuples(st.binary(max_size=12), st.binary(max_size=12)), max_size=4),
    body=st.binary(max_size=64),
)
def test_parser_gives_a_response_or_remote_protocol_error(headers, body):
    try:
        parse_response([(b":status", b"400"), *headers], body)
    except RemoteProtocolError:
        pass


# -- provider tokens ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def key() -> ProviderKey:
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return ProviderKey.from_p8(pem, key_id="ABC123DEFG", team_id="DEF123GHIJ")


def b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def test_token_header_and_claims_are_apples(key):
    token = make_provider_token(key, now=NOW)
    header, claims, _ = token.value.split(".")
    assert json.loads(b64decode(header)) == {"alg": "ES256", "kid": "ABC123DEFG"}
    assert json.loads(b64decode(claims)) == {"iss": "DEF123GHIJ", "iat": NOW}
    assert token.issued_at == NOW
    assert token.value not in repr(token)


def test_token_verifies_with_pyjwt(key):
    token = make_provider_token(key, now=NOW)
    claims = jwt.decode(
        token.value, key.public_key, algorithms=["ES256"], options={"verify_iat": False}
    )
    assert claims == {"iss": "DEF123GHIJ", "iat": NOW}


def test_token_signature_verifies_with_cryptography_directly(key):
    # An ES256 check written here from RFC 7518 3.4, not PyJWT's: the signature is the
    # raw 32-byte R and 32-byte S over "header.claims", SHA-256, P-256.
    token = make_provider_token(key, now=NOW)
    signing_input, _, signature = token.value.rpartition(".")
    raw = b64decode(signature)
    assert len(raw) == 64
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    key.public_key.verify(der, signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    with pytest.raises(InvalidSignature):
        key.public_key.verify(der, signing_input.encode() + b"x", ec.ECDSA(hashes.SHA256()))


def test_verify_accepts_fresh_and_refuses_stale_forged_and_unknown(key):
    keys = {("DEF123GHIJ", "ABC123DEFG"): key.public_key}
    token = make_provider_token(key, now=NOW).value
    verified = verify_provider_token(token, keys, now=NOW + 3600)
    assert (verified.team_id, verified.key_id, verified.issued_at) == (
        "DEF123GHIJ",
        "ABC123DEFG",
        NOW,
    )
    with pytest.raises(TokenRejected) as info:
        verify_provider_token(token, keys, now=NOW + 3601)
    assert info.value.reason is Reason.EXPIRED_PROVIDER_TOKEN
    other = ProviderKey(
        key_id="ABC123DEFG",
        team_id="DEF123GHIJ",
        private_key=ec.generate_private_key(ec.SECP256R1()),
    )
    for bad in (
        make_provider_token(other, now=NOW).value,  # signed by another key
        jwt.encode(
            {"iss": "DEF123GHIJ", "iat": NOW},
            "s" * 32,
            algorithm="HS256",
            headers={"kid": "ABC123DEFG"},
        ),
        "not.a.token",
        make_provider_token(key, now=NOW + 600).value,  # in the future
    ):
        with pytest.raises(TokenRejected) as info:
            verify_provider_token(bad, keys, now=NOW)
        assert info.value.reason is Reason.INVALID_PROVIDER_TOKEN
    with pytest.raises(TokenRejected, match="no key 'ABC123DEFG' is registered for team"):
        verify_provider_token(token, {}, now=NOW)


def test_from_p8_refuses_other_keys():
    rsa_like = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(LocalProtocolError, match="P-256"):
        ProviderKey.from_p8(rsa_like, key_id="A1", team_id="B2")
    with pytest.raises(LocalProtocolError, match="not an unencrypted PEM"):
        ProviderKey.from_p8(b"garbage", key_id="A1", team_id="B2")
    with pytest.raises(LocalProtocolError, match="key_id"):
        ProviderKey(key_id="a b", team_id="B2", private_key=ec.generate_private_key(ec.SECP256R1()))


def test_cache_reuses_for_50_minutes_then_refreshes(key):
    cache = ProviderTokenCache(key)
    assert cache.decide(NOW) is TokenDecision.MAKE
    first = cache.token(NOW)
    assert cache.token(NOW + 49 * 60 + 59) is first
    assert cache.decide(NOW + 50 * 60) is TokenDecision.REFRESH
    second = cache.token(NOW + 50 * 60)
    assert second.issued_at == NOW + 50 * 60
    assert second.value != first.value


def test_cache_never_refreshes_within_20_minutes_even_when_told_stale(key):
    cache = ProviderTokenCache(key)
    first = cache.token(NOW)
    assert cache.decide(NOW + 20 * 60 - 1, stale=True) is TokenDecision.REUSE
    assert cache.token(NOW + 20 * 60 - 1, stale=True) is first
    assert cache.decide(NOW + 20 * 60, stale=True) is TokenDecision.REFRESH
    assert cache.decide(NOW + 20 * 60) is TokenDecision.REUSE
    assert cache.token(NOW + 20 * 60, stale=True).issued_at == NOW + 20 * 60


@given(steps=st.lists(st.tuples(st.integers(0, 4000), st.booleans()), max_size=40))
def test_cache_tokens_are_never_closer_than_20_minutes_nor_older_than_50(key, steps):
    cache = ProviderTokenCache(key)
    now = NOW
    issued: list[int] = []
    for delta, stale in steps:
        now += delta
        token = cache.token(now, stale=stale)
        if not issued or issued[-1] != token.issued_at:
            issued.append(token.issued_at)
        assert now - token.issued_at < 50 * 60
    assert all(b - a >= 20 * 60 for a, b in itertools.pairwise(issued))


def test_cache_timing_is_checked():
    with pytest.raises(LocalProtocolError, match="min_interval"):
        ProviderTokenCache(
            ProviderKey(
                key_id="A", team_id="B", private_key=ec.generate_private_key(ec.SECP256R1())
            ),
            min_interval=3000,
            refresh_after=60,
        )


def test_h2wire_pulls_in_no_io_modules():
    code = textwrap.dedent(
        """
        import sys
        import apns_legacy.h2wire
        banned = ("trio", "OpenSSL", "asyncio")
        print(" ".join(sorted(m for m in banned if m in sys.modules)))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_verify_also_accepts_a_der_signature_as_apns_does(key):
    # Java's SHA256withECDSA (Pushy) and Apple's sample token carry DER signatures;
    # APNs accepts them (HTTP2.md 2), so the simulator's check does too.
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "ES256", "kid": key.key_id}).encode())
    claims = b64(json.dumps({"iss": key.team_id, "iat": NOW}).encode())
    der = key.private_key.sign(f"{header}.{claims}".encode(), ec.ECDSA(hashes.SHA256()))
    assert der[0] == 0x30
    token = f"{header}.{claims}.{b64(der)}"
    keys = {(key.team_id, key.key_id): key.public_key}
    assert verify_provider_token(token, keys, now=NOW).issued_at == NOW
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, key.public_key, algorithms=["ES256"], options={"verify_iat": False})
    forged = f"{header}.{b64(json.dumps({'iss': key.team_id, 'iat': NOW + 1}).encode())}.{b64(der)}"
    with pytest.raises(TokenRejected, match="InvalidProviderToken"):
        verify_provider_token(forged, keys, now=NOW + 1)
