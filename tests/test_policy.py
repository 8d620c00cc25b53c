"""ConnectionPolicy: window sizes and give-up decisions from hand-made Ended records."""

from __future__ import annotations

from apns_legacy.client._policy import CAREFUL_WINDOW, ConnectionPolicy, Ended, EndKind
from apns_legacy.wire import Command


def policy(command: Command = Command.FRAME, window: int = 1000, unproductive: int = 3):
    return ConnectionPolicy(command=command, window_size=window, max_unproductive=unproductive)


def ended(kind: EndKind = EndKind.LOST, **overrides) -> Ended:
    values = {
        "kind": kind,
        "duration": 0.1,
        "written": 10,
        "unknown": 10,
        "progress": False,
        "silent": True,
        "careful": False,
        "reason": "test",
    }
    values.update(overrides)
    return Ended(**values)


ANSWERED = ended(EndKind.ANSWERED, unknown=0, progress=True, silent=False)


def test_full_window_until_something_dies_without_a_word():
    p = policy()
    assert p.window == 1000
    assert not p.careful
    assert p.on_end(ANSWERED) is None
    assert p.window == 1000


def test_silent_death_makes_the_next_connection_careful_then_slow_start():
    p = policy()
    assert p.on_end(ended(duration=5.0, written=100)) is None
    assert p.window == CAREFUL_WINDOW
    assert p.careful
    sizes = []
    for _ in range(8):
        p.on_end(ANSWERED)
        sizes.append(p.window)
    # Doubling up to half of what the dead connection had written, then an eighth a time.
    assert sizes == [2, 4, 8, 16, 32, 50, 56, 63]


def test_growth_never_passes_the_configured_window():
    p = policy(window=10)
    p.on_end(ended(written=1000))
    for _ in range(20):
        p.on_end(ANSWERED)
    assert p.window == 10


def test_stalled_write_is_a_silent_death_too():
    p = policy()
    p.on_end(ended(EndKind.STALLED, duration=20.0, silent=False))
    assert p.careful


def test_wrong_environment_needs_a_careful_connection_to_close_too():
    p = policy()
    # The first quick silent close alone is not enough...
    assert p.on_end(ended()) is None
    # ...a careful connection (a small batch and a probe) closed the same way is.
    verdict = p.on_end(ended(careful=True))
    assert verdict is not None
    assert verdict.permanent
    assert "other environment" in verdict.reason


def test_a_drop_mid_stream_never_reads_as_wrong_environment():
    # A gateway that drops connections after some bytes answers the careful probe.
    p = policy(unproductive=100)
    for _ in range(10):
        assert p.on_end(ended()) is None
        assert p.careful
        assert p.on_end(ended(EndKind.ANSWERED, unknown=0, progress=True, careful=True)) is None


def test_slow_closes_and_resets_are_not_the_wrong_environment_pattern():
    p = policy(unproductive=100)
    for _ in range(5):
        assert p.on_end(ended(duration=3.0, careful=True)) is None  # not quick
        assert p.on_end(ended(silent=False, careful=True)) is None  # a reset


def test_command_0_silent_closes_are_rejections_not_a_diagnosis():
    p = policy(Command.SIMPLE, unproductive=2)
    for _ in range(10):
        assert p.on_end(ended(careful=True)) is None


def test_parallel_connections_dying_together_are_not_unproductive_until_careful_ones_die():
    p = policy(unproductive=2)
    for _ in range(8):  # four slots, twice over, all with big windows
        assert p.on_end(ended(duration=5.0)) is None
    assert p.on_end(ended(duration=5.0, careful=True)) is None
    assert p.on_end(ended(duration=5.0, careful=True)) is not None


def test_unproductive_connections_give_up_then_allow_one_attempt_at_a_time():
    p = policy(unproductive=3)
    unanswered = ended(EndKind.UNCONFIRMED, unknown=0, silent=False, duration=20.0)
    assert p.on_end(unanswered) is None
    assert p.on_end(unanswered) is None
    verdict = p.on_end(unanswered)
    assert verdict is not None
    assert not verdict.permanent
    assert "3 connections in a row" in verdict.reason
    # Later work: one more unproductive connection gives up again at once.
    assert p.on_end(unanswered) is not None
    # Progress resets the count.
    p.on_end(ANSWERED)
    assert p.on_end(unanswered) is None


def test_idle_and_our_own_closes_count_for_nothing():
    p = policy(unproductive=1)
    assert p.on_end(ended(EndKind.IDLE, unknown=0, written=0)) is None
    assert p.on_end(ended(EndKind.CLOSED, unknown=0)) is None
    assert p.window == 1000


def test_an_idle_drop_makes_probes_come_sooner():
    p = ConnectionPolicy(
        command=Command.FRAME, window_size=1000, max_unproductive=3, confirm_after=1.0
    )
    p.on_end(ended(quiet_for=0.05))  # dropped mid-write: says nothing about idleness
    assert p.confirm_after == 1.0
    p.on_end(ended(quiet_for=0.6, duration=5.0))
    assert p.confirm_after == 0.3
    p.on_end(ended(quiet_for=2.0, duration=5.0))
    assert p.confirm_after == 0.3


def test_frequent_rejections_size_the_window_to_the_runs_between_them():
    p = policy(window=200_000)
    rejected_after = ended(EndKind.ANSWERED, unknown=0, progress=True, silent=False,
                           rejected=True, accepted=49)  # fmt: skip
    p.on_end(rejected_after)
    assert p.window == 100  # twice the run of 50 (49 accepted, then the rejected one)
    for _ in range(10):
        p.on_end(rejected_after)
    assert p.window == 100
    # A window confirmed without a rejection doubles it back.
    p.on_end(ANSWERED)
    assert p.window == 200
    # Never below a floor, whatever the rate.
    p.on_end(ended(EndKind.ANSWERED, unknown=0, progress=True, silent=False, rejected=True))
    for _ in range(20):
        p.on_end(ended(EndKind.ANSWERED, unknown=0, progress=True, silent=False, rejected=True))
    assert p.window == 16


def test_a_run_between_rejections_counts_the_clean_windows_in_between():
    p = policy(window=200_000)
    p.on_end(ended(EndKind.ANSWERED, unknown=0, progress=True, silent=False,
                   rejected=True, accepted=199))  # fmt: skip
    assert p.window == 400
    # A window confirmed clean, then the next rejection 9 notifications later: the run
    # is 191 + 9 + 1 = 201, not 10.
    p.on_end(ended(EndKind.ANSWERED, unknown=0, progress=True, silent=False, accepted=191))
    p.on_end(ended(EndKind.ANSWERED, unknown=0, progress=True, silent=False,
                   rejected=True, accepted=9))  # fmt: skip
    assert p.window == 401  # twice 0.7 x 200 + 0.3 x 201


def test_a_window_fitted_to_rejections_stays_below_what_silent_drops_allowed():
    # A gateway that drops every connection after about 100 notifications, and a stale
    # device list: the run between rejections (500) must not lift the window past the
    # drop. Found by CI: four connections dying together three times failed a third of
    # a run that one connection at a time delivers.
    p = policy(window=200_000)
    p.on_end(ended(written=100, unknown=100))
    assert p.window == CAREFUL_WINDOW
    p.on_end(ended(EndKind.ANSWERED, unknown=0, progress=True, silent=False,
                   rejected=True, accepted=499))  # fmt: skip
    assert p.window == 50  # half of what the dropped connection carried, not 1000
    # Without a silent drop the run alone decides.
    q = policy(window=200_000)
    q.on_end(ended(EndKind.ANSWERED, unknown=0, progress=True, silent=False,
                   rejected=True, accepted=499))  # fmt: skip
    assert q.window == 1000


def test_the_first_window_starts_small_and_doubles_to_the_configured_one():
    # One connection starts at the configured window (a single connection throughout).
    assert policy(window=200_000).window == 200_000
    p = ConnectionPolicy(
        command=Command.FRAME, window_size=200_000, max_unproductive=3, connections=4
    )
    assert p.window == 1024
    sizes = []
    while p.window < 200_000:
        p.on_end(ANSWERED)
        sizes.append(p.window)
    assert sizes == [2048, 4096, 8192, 16384, 32768, 65536, 131072, 200_000]
    # A small configured window is used as is.
    assert (
        ConnectionPolicy(
            command=Command.FRAME, window_size=100, max_unproductive=3, connections=4
        ).window
        == 100
    )


def test_windows_stay_below_the_drop_point_until_many_clean_connections_forget_it():
    # A gateway that closes every connection after about 125 notifications: growing
    # past that again (TCP's congestion avoidance) loses every parallel window at once.
    p = policy(window=200_000)
    p.on_end(ended(written=128, unknown=128))
    sizes = []
    for _ in range(63):
        p.on_end(ANSWERED)
        sizes.append(p.window)
    assert max(sizes) == 112  # seven eighths of the window that died
    assert sizes[:7] == [2, 4, 8, 16, 32, 64, 72]
    # The 64th clean connection in a row forgets it: the drop may have been a one-off.
    p.on_end(ANSWERED)
    assert p.window > 112
    # A careful connection's death (one notification) sets no drop point (it would
    # be 2, and keep every later window at 2).
    q = policy(window=200_000)
    q.on_end(ended(written=1, unknown=1, careful=True))
    for _ in range(30):
        q.on_end(ANSWERED)
    assert q.window > 2
