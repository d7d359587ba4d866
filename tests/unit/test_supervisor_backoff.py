"""The supervisor's restart delays and exit descriptions."""

from __future__ import annotations

from logstream.supervisor import Backoff, describe_exit


def test_backoff_doubles_to_the_cap_and_resets_after_a_long_run():
    backoff = Backoff(initial_s=1, maximum_s=30, reset_after_s=60)
    delays = [backoff.next_delay(ran_s=0.5) for _ in range(7)]
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    assert backoff.next_delay(ran_s=61) == 1  # it ran a while: a fresh crash, not a loop
    assert backoff.next_delay(ran_s=2) == 2


def test_exit_descriptions():
    assert describe_exit(1) == "exit 1"
    assert describe_exit(-9) == "signal 9 (SIGKILL)"
    assert describe_exit(None) == "gone (not our child)"
