"""The supervisor's restart delays and exit descriptions (and a view code error's)."""

from __future__ import annotations

import sys
import time

from logstream.stack import ServiceSpec, service_states
from logstream.supervisor import Backoff, Supervisor, describe_exit


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


def _exited(supervisor: Supervisor, child, timeout_s: float = 30.0) -> float:
    """Poll the supervisor's check until it scheduled the child's restart; returns the delay."""
    deadline = time.monotonic() + timeout_s
    while child.due_at is None:
        assert time.monotonic() < deadline, "the service did not exit"
        now = time.monotonic()
        supervisor._check(child, now)
        time.sleep(0.02)
    return child.due_at - now


def test_a_view_code_error_restarts_at_the_longest_delay_and_shows_its_error(tmp_path):
    line = "error: view 'v' raised KeyError: 'x' on t[0] offset 7; stopped there"
    script = f"import sys; print('log line'); print({line!r}, file=sys.stderr); sys.exit(5)"
    crash = "import sys; sys.exit(1)"
    supervisor = Supervisor(
        [
            ServiceSpec("consume-v", [sys.executable, "-c", script]),
            ServiceSpec("consume-w", [sys.executable, "-c", crash]),
        ],
        tmp_path,
        Backoff(initial_s=0.5, maximum_s=20, reset_after_s=60),
    )
    supervisor.run_dir.mkdir(parents=True)
    buggy, crashing = supervisor.children
    for child in supervisor.children:
        supervisor._launch(child)
    assert 19 < _exited(supervisor, buggy) <= 20  # a restart cannot help until it is fixed
    assert _exited(supervisor, crashing) <= 0.5  # a crash is healed at once, as before
    states = {s.name: s for s in service_states(tmp_path)}
    assert states["consume-v"].last_exit == "exit 5 (view code error)"
    assert states["consume-v"].last_error == line
    assert (states["consume-w"].last_exit, states["consume-w"].last_error) == ("exit 1", None)
    assert describe_exit(5) == "exit 5 (view code error)"
