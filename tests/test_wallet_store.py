"""The wallet store: registrations, update tags, removal of rejected push tokens, and its
own schema beside the token store's in one SQLite file."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apns_legacy.client import TokenStore
from apns_legacy.wallet import PassStore
from apns_legacy.wire import FeedbackItem, LocalProtocolError

PT = "pass.com.example.card"
TOKEN_A = "a1" * 32
TOKEN_B = "b2" * 32


def put(store: PassStore, serial: str, now: float, data: bytes = b"zip") -> int:
    return store.put_pass(
        pass_type_id=PT,
        serial_number=serial,
        authentication_token="t" * 16,
        pkpass=data,
        content_digest="d",
        now=now,
    )


def register(store: PassStore, device: str, serial: str, token: str = TOKEN_A) -> bool:
    return store.register(
        device_library_id=device, push_token=token, pass_type_id=PT, serial_number=serial, now=5
    )


def test_register_new_then_again_and_token_change():
    with PassStore(":memory:") as store:
        put(store, "S1", 1000)
        assert register(store, "dev1", "S1") is True
        assert register(store, "dev1", "S1", TOKEN_B) is False  # already: token updated
        assert store.push_tokens(PT, "S1") == [TOKEN_B]
        [registration] = store.registrations()
        assert (registration.device_library_id, registration.serial_number) == ("dev1", "S1")
        assert registration.registered_at == datetime.fromtimestamp(5, UTC)


def test_bad_push_token_and_identifier_are_refused():
    with PassStore(":memory:") as store:
        with pytest.raises(LocalProtocolError):
            register(store, "dev1", "S1", token="abc")
        with pytest.raises(ValueError, match="deviceLibraryIdentifier must be 1 to 256"):
            register(store, "", "S1")
        assert store.registrations() == []


def test_tags_increase_even_within_one_second_and_follow_the_clock():
    with PassStore(":memory:") as store:
        assert put(store, "S1", 1000) == 1000
        assert put(store, "S2", 1000) == 1001  # same second: next tag
        assert put(store, "S1", 1000.5) == 1002
        assert put(store, "S1", 5000) == 5000  # clock ahead: the clock
        stored = store.get_pass(PT, "S1")
        assert stored is not None
        assert stored.tag == 5000
        assert stored.pkpass == b"zip"
        assert stored.last_modified == datetime.fromtimestamp(5000, UTC)
        assert [(p.serial_number, p.tag) for p in store.passes()] == [("S1", 5000), ("S2", 1001)]


@given(st.lists(st.tuples(st.sampled_from(["A", "B", "C"]), st.integers(0, 50)), max_size=30))
def test_every_update_gets_a_tag_later_than_all_before(updates):
    with PassStore(":memory:") as store:
        seen: list[int] = []
        for serial, now in updates:
            tag = put(store, serial, now)
            assert tag >= now
            assert all(tag > earlier for earlier in seen)
            seen.append(tag)


def test_updated_since_returns_only_what_changed_after_the_tag():
    with PassStore(":memory:") as store:
        put(store, "S1", 100)
        put(store, "S2", 200)
        put(store, "S3", 300)  # not registered by dev1
        register(store, "dev1", "S1")
        register(store, "dev1", "S2")
        everything = store.updated_since("dev1", PT, None)
        assert everything is not None
        assert (everything.serial_numbers, everything.last_updated) == (["S1", "S2"], "200")
        assert store.updated_since("dev1", PT, 200) is None  # nothing newer
        put(store, "S1", 250)  # tag 301: after S3
        since = store.updated_since("dev1", PT, int(everything.last_updated))
        assert since is not None
        assert (since.serial_numbers, since.last_updated) == (["S1"], "301")
        assert store.updated_since("dev1", "pass.other", None) is None
        assert store.updated_since("nobody", PT, None) is None


def test_unregister_removes_the_device_with_its_last_pass(tmp_path):
    with PassStore(tmp_path / "w.db") as store:
        register(store, "dev1", "S1")
        register(store, "dev1", "S2")
        assert store.unregister(device_library_id="dev1", pass_type_id=PT, serial_number="S1")
        assert not store.unregister(device_library_id="dev1", pass_type_id=PT, serial_number="S1")
        assert [r.serial_number for r in store.registrations()] == ["S2"]
        db = sqlite3.connect(tmp_path / "w.db")
        assert db.execute("SELECT device_library_id FROM wallet_devices").fetchall() == [("dev1",)]
        assert store.unregister(device_library_id="dev1", pass_type_id=PT, serial_number="S2")
        assert store.registrations() == []
        assert db.execute("SELECT COUNT(*) FROM wallet_devices").fetchone() == (0,)
        db.close()


def test_rejected_push_token_loses_every_registration():
    with PassStore(":memory:") as store:
        register(store, "dev1", "S1", TOKEN_A)
        register(store, "dev1", "S2", TOKEN_A)
        register(store, "dev2", "S1", TOKEN_B)
        assert store.remove_push_tokens([TOKEN_A]) == 2
        assert [(r.device_library_id, r.serial_number) for r in store.registrations()] == [
            ("dev2", "S1")
        ]
        assert store.remove_push_tokens([TOKEN_A]) == 0


def test_shares_a_file_with_the_token_store(tmp_path):
    path = tmp_path / "devices.db"
    with TokenStore(path) as tokens:
        tokens.register(TOKEN_A, topic="com.example.app", at=1)
    with PassStore(path) as store:
        put(store, "S1", 100)
    with PassStore(path) as store:  # opening again keeps the data
        assert [p.serial_number for p in store.passes()] == ["S1"]
    with TokenStore(path) as tokens:
        assert [t.hex for t in tokens.active_tokens()] == [TOKEN_A]
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone() == (1,)  # the token store's
    assert db.execute("SELECT version FROM wallet_schema").fetchall() == [(1,)]
    db.close()


def test_a_newer_wallet_schema_is_refused(tmp_path):
    path = tmp_path / "devices.db"
    PassStore(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE wallet_schema SET version = 99")
    db.commit()
    db.close()
    with pytest.raises(sqlite3.DatabaseError, match="wallet schema version 99 is newer"):
        PassStore(path)


def test_one_store_used_from_several_threads(tmp_path):
    # The web service calls in from worker threads while the caller may use the same
    # store: transactions must not interleave ("cannot start a transaction within a
    # transaction" without the store's lock).
    errors: list[BaseException] = []
    with PassStore(tmp_path / "w.db") as store:

        def work(n: int) -> None:
            try:
                for i in range(50):
                    put(store, f"S{n}-{i}", 1000)
                    register(store, f"dev{n}", f"S{n}-{i}", token=f"{n:02x}" * 32)
                    store.updated_since(f"dev{n}", PT, None)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == []
        assert len(store.passes()) == 200
        assert len(store.registrations()) == 200
        assert len({p.tag for p in store.passes()}) == 200


def test_feedback_forgets_devices_unless_registered_again_since():
    with PassStore(":memory:") as store:
        for device, token, at in (("d1", TOKEN_A, 100), ("d2", TOKEN_B, 300)):
            for serial in ("S1", "S2"):
                store.register(
                    device_library_id=device,
                    push_token=token,
                    pass_type_id=PT,
                    serial_number=serial,
                    now=at,
                )
        items = [
            FeedbackItem(timestamp=200, token=bytes.fromhex(TOKEN_A)),  # after d1's: gone
            FeedbackItem(timestamp=300, token=bytes.fromhex(TOKEN_B)),  # tie: kept
            FeedbackItem(timestamp=500, token=bytes(32)),  # nobody's
        ]
        result = store.apply_feedback(items)
        assert (result.removed_devices, result.removed_registrations) == (1, 2)
        assert (result.kept_reregistered, result.unknown) == (1, 1)
        assert {r.device_library_id for r in store.registrations()} == {"d2"}
        again = store.apply_feedback(items)  # the same list twice changes nothing more
        assert (again.removed_devices, again.kept_reregistered, again.unknown) == (0, 1, 2)
