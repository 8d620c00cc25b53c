"""TokenStore: registration, Apple's re-registration rule, transactions, export."""

from __future__ import annotations

import datetime as dt
import io
import json
import sqlite3

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apns_legacy import DeviceToken, FeedbackItem, LocalProtocolError, TokenStore
from apns_legacy.client import FeedbackResult, StoreError

UTC = dt.UTC


def token(n: int) -> bytes:
    return n.to_bytes(2, "big") * 16


def entry(n: int, timestamp: int) -> FeedbackItem:
    return FeedbackItem(timestamp, token(n))


def snapshot(store: TokenStore) -> str:
    out = io.StringIO()
    store.export("all", out, format="jsonl")
    return out.getvalue()


@pytest.fixture
def store():
    with TokenStore(":memory:") as s:
        yield s


def test_register_accepts_hex_bytes_and_device_tokens(store):
    store.register(token(1).hex(), at=100)
    store.register(token(2), at=100, topic="com.example.app")
    store.register(DeviceToken(token(3)), at=dt.datetime(2020, 1, 1, tzinfo=UTC))
    assert [t.value for t in store.active_tokens()] == [token(1), token(2), token(3)]
    device = store.get(token(2))
    assert device is not None
    assert device.topic == "com.example.app"
    assert device.registered_at == dt.datetime.fromtimestamp(100, UTC)
    assert device.active
    assert store.get(token(3)).registered_at == dt.datetime(2020, 1, 1, tzinfo=UTC)
    assert store.get(token(4)) is None


def test_register_many_checks_every_token_before_writing(store):
    with pytest.raises(LocalProtocolError, match="32 bytes"):
        store.register_many([token(1), token(2), b"short"], at=100)
    assert store.counts().total == 0
    assert store.register_many([token(1), token(2)], at=100) == 2
    assert store.counts().total == 2


def test_register_refuses_naive_datetimes(store):
    with pytest.raises(ValueError, match="timezone-aware"):
        store.register(token(1), at=dt.datetime(2020, 1, 1))


def test_feedback_later_than_registration_deactivates_and_keeps_the_row(store):
    store.register(token(1), at=100)
    result = store.apply_feedback([entry(1, 150)], now=300)
    assert result == FeedbackResult(deactivated=1)
    device = store.get(token(1))
    assert device is not None
    assert not device.active
    assert device.deactivated_reason == "feedback"
    assert device.feedback_time == dt.datetime.fromtimestamp(150, UTC)
    assert device.deactivated_at == dt.datetime.fromtimestamp(300, UTC)
    assert list(store.active_tokens()) == []
    assert store.counts().total == 1


def test_reregistered_devices_stay_active(store):
    # Registered again after the app was removed: the feedback entry is stale.
    store.register(token(1), at=100)
    store.register(token(1), at=200)
    store.register(token(2), at=150)  # same second as the entry: the safe side
    result = store.apply_feedback([entry(1, 150), entry(2, 150)])
    assert result == FeedbackResult(skipped_reregistered=2)
    assert [t.value for t in store.active_tokens()] == [token(1), token(2)]


def test_counts_every_kind_of_entry(store):
    store.register_many([token(1), token(2), token(3)], at=100)
    store.apply_feedback([entry(3, 110)], now=120)
    store.register(token(2), at=300)
    result = store.apply_feedback([entry(1, 200), entry(2, 200), entry(3, 200), entry(9, 200)])
    assert result == FeedbackResult(
        deactivated=1, skipped_reregistered=1, unknown=1, already_inactive=1
    )
    assert result.total == 4


def test_running_the_same_feedback_twice_changes_nothing(store):
    store.register_many([token(n) for n in range(10)], at=100)
    store.register(token(3), at=500)
    items = [entry(n, 200) for n in range(12)]
    first = store.apply_feedback(items, now=1000)
    assert first == FeedbackResult(deactivated=9, skipped_reregistered=1, unknown=2)
    before = snapshot(store)
    second = store.apply_feedback(items, now=2000)
    assert second == FeedbackResult(skipped_reregistered=1, unknown=2, already_inactive=9)
    assert snapshot(store) == before


def test_an_interrupted_apply_leaves_the_store_unchanged(store):
    store.register_many([token(n) for n in range(10)], at=100)
    before = snapshot(store)

    def entries_then_crash():
        for n in range(5):
            yield entry(n, 200)
        raise KeyboardInterrupt  # e.g. Ctrl-C while the list is being applied

    with pytest.raises(KeyboardInterrupt):
        store.apply_feedback(entries_then_crash())
    assert snapshot(store) == before
    assert store.counts().active == 10
    # The store is still usable, and the whole list applies afterwards.
    assert store.apply_feedback(entry(n, 200) for n in range(5)).deactivated == 5


def test_an_interrupted_apply_is_invisible_to_other_connections(tmp_path):
    path = tmp_path / "devices.db"
    with TokenStore(path) as store:
        store.register_many([token(n) for n in range(4)], at=100)

        def entries_then_crash():
            yield entry(0, 200)
            yield entry(1, 200)
            # Another process sees nothing of this transaction while it runs.
            with TokenStore(path, timeout=0.1) as other:
                assert other.counts().active == 4
            raise RuntimeError("disk on fire")

        with pytest.raises(RuntimeError, match="disk on fire"):
            store.apply_feedback(entries_then_crash())
    with TokenStore(path) as reopened:
        assert reopened.counts().active == 4


def test_registration_after_the_feedback_time_reactivates(store):
    store.register(token(1), at=100)
    store.apply_feedback([entry(1, 200)], now=300)
    store.register(token(1), at=150)  # an old registration arriving late: still gone
    assert not store.get(token(1)).active
    store.register(token(1), at=250)
    device = store.get(token(1))
    assert device.active
    assert device.deactivated_reason is None
    assert device.registered_at == dt.datetime.fromtimestamp(250, UTC)


def test_registered_at_never_moves_backwards(store):
    store.register(token(1), at=500)
    store.register(token(1), at=100)
    assert store.get(token(1)).registered_at == dt.datetime.fromtimestamp(500, UTC)
    assert store.apply_feedback([entry(1, 300)]) == FeedbackResult(skipped_reregistered=1)


def test_deactivate_for_another_reason(store):
    store.register_many([token(1), token(2)], at=100)
    assert store.deactivate([token(1), token(9)], reason="invalid-token", at=200) == 1
    assert store.counts().by_reason == {"invalid-token": 1}
    assert store.apply_feedback([entry(1, 300)]) == FeedbackResult(already_inactive=1)
    store.register(token(1), at=200)
    assert store.get(token(1)).active
    with pytest.raises(ValueError, match="apply_feedback"):
        store.deactivate([token(2)], reason="feedback")


def test_deactivated_since_and_counts(store):
    store.register_many([token(n) for n in range(5)], at=100)
    store.apply_feedback([entry(0, 200)], now=1000)
    store.apply_feedback([entry(1, 200), entry(2, 200)], now=2000)
    assert [d.token.value for d in store.deactivated()] == [token(0), token(1), token(2)]
    assert [d.token.value for d in store.deactivated(since=1500)] == [token(1), token(2)]
    since = dt.datetime.fromtimestamp(2001, UTC)
    assert list(store.deactivated(since=since)) == []
    counts = store.counts()
    assert (counts.total, counts.active, counts.deactivated) == (5, 2, 3)
    assert counts.by_reason == {"feedback": 3}


def test_export_csv_and_jsonl(store):
    store.register(token(1), at=100, topic="com.example.app")
    store.register(token(2), at=100)
    store.apply_feedback([entry(2, 200)], now=300)

    out = io.StringIO()
    assert store.export("deactivated", out, format="csv") == 1
    lines = out.getvalue().splitlines()
    assert lines[0] == (
        "token,topic,registered_at,active,deactivated_at,deactivated_reason,feedback_time"
    )
    assert lines[1] == (
        f"{token(2).hex()},,1970-01-01T00:01:40Z,0,1970-01-01T00:05:00Z,feedback,"
        "1970-01-01T00:03:20Z"
    )

    out = io.StringIO()
    assert store.export("active", out, format="jsonl") == 1
    (row,) = [json.loads(line) for line in out.getvalue().splitlines()]
    assert row == {
        "token": token(1).hex(),
        "topic": "com.example.app",
        "registered_at": "1970-01-01T00:01:40Z",
        "active": True,
        "deactivated_at": None,
        "deactivated_reason": None,
        "feedback_time": None,
    }

    empty = io.StringIO()
    with TokenStore(":memory:") as nothing:
        assert nothing.export("all", empty) == 0
    assert empty.getvalue().count("\n") == 1  # the header alone
    with pytest.raises(ValueError, match="format"):
        store.export("all", io.StringIO(), format="xml")  # type: ignore[arg-type]


def test_the_store_persists_and_refuses_a_newer_schema(tmp_path):
    path = tmp_path / "devices.db"
    with TokenStore(path) as store:
        store.register(token(1), at=100)
    with TokenStore(path) as store:
        assert [t.value for t in store.active_tokens()] == [token(1)]
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(sqlite3.DatabaseError, match="newer"):
        TokenStore(path)


@given(
    registrations=st.dictionaries(
        st.integers(0, 20), st.lists(st.integers(0, 50), min_size=1, max_size=3), max_size=15
    ),
    feedback=st.lists(st.tuples(st.integers(0, 25), st.integers(0, 60)), max_size=20),
)
def test_apply_feedback_matches_a_plain_model(registrations, feedback):
    # Model: last registration = max of the times; an entry deactivates an active
    # device only when it is strictly later; inactive devices stay inactive.
    registered = {n: max(times) for n, times in registrations.items()}
    active = dict.fromkeys(registered, True)
    expected = dict.fromkeys(("deactivated", "skipped_reregistered", "unknown"), 0)
    expected["already_inactive"] = 0
    for n, ts in feedback:
        if n not in registered:
            expected["unknown"] += 1
        elif not active[n]:
            expected["already_inactive"] += 1
        elif ts > registered[n]:
            active[n] = False
            expected["deactivated"] += 1
        else:
            expected["skipped_reregistered"] += 1

    with TokenStore(":memory:") as store:
        for n, times in registrations.items():
            for at in times:
                store.register(token(n), at=at)
        result = store.apply_feedback(entry(n, ts) for n, ts in feedback)
        assert result == FeedbackResult(**expected)
        assert {t.value for t in store.active_tokens()} == {
            token(n) for n, is_active in active.items() if is_active
        }
        again = store.apply_feedback(entry(n, ts) for n, ts in feedback)
        assert again.deactivated == 0


def test_create_false_refuses_what_is_not_a_token_store(tmp_path):
    with pytest.raises(StoreError, match="no token store there"):
        TokenStore(tmp_path / "missing.db", create=False)
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    with pytest.raises(StoreError, match="an empty file"):
        TokenStore(empty, create=False)
    assert empty.read_bytes() == b""  # not turned into a store
    text = tmp_path / "notes.txt"
    text.write_text("hello " * 100)
    with pytest.raises(StoreError, match="file is not a database"):
        TokenStore(text, create=False)
    with pytest.raises(StoreError, match="not a token store"):
        TokenStore(text)  # creating cannot help either
    with TokenStore(tmp_path / "real.db") as store:
        store.register(token(1))
    with TokenStore(tmp_path / "real.db", create=False) as store:
        assert store.counts().total == 1
        assert store.check() == []


def test_check_reports_a_damaged_page(tmp_path):
    path = tmp_path / "devices.db"
    with TokenStore(path) as store:
        store.register_many([n.to_bytes(4, "big") * 8 for n in range(3000)])
    with open(path, "r+b") as file:
        file.seek(4096 * 5)
        file.write(b"\xff" * 4096)
    with TokenStore(path) as store:
        assert store.check() != []


def test_inactive_among_finds_the_deactivated_tokens_in_batches(store):
    tokens = [f"{n:064x}" for n in range(1, 1201)]
    store.register_many(tokens, at=100)
    dead = {tokens[n] for n in (0, 499, 500, 1199)}  # on both sides of a 500-token batch
    store.deactivate(sorted(dead), reason="invalid-token", at=200)
    store.apply_feedback([FeedbackItem(300, bytes.fromhex(tokens[7]))], now=301)
    store.deactivate([tokens[9]], reason="invalid-token", at=200)
    store.register(tokens[9], at=250)  # registered again since: active, so not listed
    asked = [*tokens, f"{9999:064x}", tokens[0]]  # unknown and repeated tokens too
    found = store.inactive_among(DeviceToken.from_hex(t) for t in asked)
    assert {token.hex for token in found} == dead | {tokens[7]}
    assert found[DeviceToken.from_hex(tokens[7])].deactivated_reason == "feedback"
    assert found[DeviceToken.from_hex(tokens[0])].deactivated_reason == "invalid-token"
    assert store.inactive_among([]) == {}


def test_check_names_each_problem_on_one_line(tmp_path):
    """quick_check answers one row with several problems under a heading; check() gives
    one problem per item, each one line (what the CLI prints after "damaged (...)")."""
    path = tmp_path / "devices.db"
    with TokenStore(path) as store:
        store.register_many([n.to_bytes(4, "big") * 8 for n in range(3000)], at=1_700_000_000)
        assert store.check() == []
    with open(path, "r+b") as file:  # the cell pointers of a page in the middle
        file.seek(4096 * 4 + 100)
        file.write(b"\x00" * 200)
    with TokenStore(path) as store:
        problems = store.check()
    assert problems
    assert all(problem and "\n" not in problem for problem in problems)
    assert not any(problem.startswith("***") for problem in problems)
