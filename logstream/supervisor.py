"""Keep the stack's services running: restart one that exits abnormally, with backoff.

Why: nothing else watches `make up`'s processes; a consumer killed by the OOM killer or a
crash would stay down until someone looks. `logstream stack up` starts one detached
supervisor (`logstream stack supervise`) that owns the services as its children:
- a child that exits with a non-zero code or is killed by a signal is started again after
  a backoff: 1 s, doubling up to 30 s for crashes in a row, back to 1 s once a run lasted
  60 s (a crash loop does not spin; a rare crash is healed at once);
- a child that exits 0 stopped on purpose and is left alone;
- a consumer whose view code raised (exit 5, `ViewCodeError`) would fail again at the same
  event until the view is fixed: it is restarted at the longest delay only, and its `error:`
  line is kept in its state for `stack status`, so the loop is visible and slow, and a
  fixed view resumes by itself at the next restart;
- `<data>/run/<name>.pid` and `<data>/run/<name>.json` (restarts, last exit, when it is due
  back) are rewritten on every change, for `logstream stack status`;
- SIGTERM stops the supervisor only. `stack down` stops it first, so it restarts nothing
  that is being stopped, then stops the services.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from logstream.errors import ViewCodeError
from logstream.processes import pid_alive, terminate
from logstream.stack import SUPERVISOR, ServiceSpec, launch_service, read_pid, write_json

__all__ = [
    "Backoff",
    "Supervisor",
    "describe_exit",
    "stop_supervisor",
    "supervisor_pid",
]

log = logging.getLogger(__name__)

TICK_S = 0.2


@dataclass
class Backoff:
    """Delay before a restart: `initial` doubling to `maximum`; reset after a long run."""

    initial_s: float = 1.0
    maximum_s: float = 30.0
    reset_after_s: float = 60.0
    current_s: float = field(init=False, default=0.0)

    def next_delay(self, ran_s: float) -> float:
        if ran_s >= self.reset_after_s or self.current_s == 0.0:
            self.current_s = self.initial_s
        else:
            self.current_s = min(self.current_s * 2, self.maximum_s)
        return self.current_s


def describe_exit(code: int | None) -> str:
    """`exit 1`, `signal 9 (SIGKILL)`, or `gone (not our child)` when unknown."""
    if code is None:
        return "gone (not our child)"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "?"
        return f"signal {-code} ({name})"
    if code == ViewCodeError.exit_code:
        return f"exit {code} (view code error)"
    return f"exit {code}"


def last_error_line(log_path: Path, tail_bytes: int = 65536) -> str | None:
    """The last `error: ...` line a service wrote to its log, if any."""
    try:
        with log_path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - tail_bytes))
            lines = handle.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    return next((line for line in reversed(lines) if line.startswith("error: ")), None)


def _now_rfc3339(offset_s: float = 0.0) -> str:
    return datetime.fromtimestamp(time.time() + offset_s, UTC).isoformat(timespec="seconds")


@dataclass
class _Child:
    spec: ServiceSpec
    process: subprocess.Popen[bytes] | None = None
    pid: int | None = None  # also set for a service adopted from an earlier run
    started_at: float = 0.0
    restarts: int = 0
    last_exit: str | None = None
    last_exit_at: str | None = None
    last_error: str | None = None  # the `error:` line of a view code error
    due_at: float | None = None  # monotonic time of a scheduled restart
    done: bool = False  # exited 0: left alone
    backoff: Backoff = field(default_factory=Backoff)

    def exit_code(self) -> tuple[bool, int | None]:
        """(exited, code); code None when the process was not ours to wait for."""
        if self.process is not None:
            code = self.process.poll()
            return code is not None, code
        return self.pid is None or not pid_alive(self.pid), None


class Supervisor:
    """Runs in the foreground until SIGTERM/SIGINT; see the module docstring."""

    def __init__(self, specs: list[ServiceSpec], data_dir: Path, backoff: Backoff | None = None):
        self.data_dir = data_dir
        self.run_dir = data_dir / "run"
        proto = backoff or Backoff()
        self.children = [
            _Child(
                spec,
                backoff=Backoff(proto.initial_s, proto.maximum_s, proto.reset_after_s),
            )
            for spec in specs
        ]
        self._stopping = False

    def run(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / f"{SUPERVISOR}.pid").write_text(f"{os.getpid()}\n")
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        try:
            for child in self.children:
                self._adopt_or_launch(child)
            while not self._stopping:
                now = time.monotonic()
                for child in self.children:
                    self._check(child, now)
                time.sleep(TICK_S)
        finally:
            (self.run_dir / f"{SUPERVISOR}.pid").unlink(missing_ok=True)

    def _stop(self, _signum: int, _frame: FrameType | None) -> None:
        self._stopping = True

    def _adopt_or_launch(self, child: _Child) -> None:
        """A service still running from before (e.g. the supervisor was restarted) is
        watched by pid rather than started twice."""
        pid = read_pid(self.run_dir / f"{child.spec.name}.pid")
        if pid is not None and pid_alive(pid):
            child.pid, child.started_at = pid, time.monotonic()
            self._write(child)
            return
        self._launch(child)

    def _launch(self, child: _Child) -> None:
        child.process = launch_service(child.spec, self.data_dir)
        child.pid, child.started_at, child.due_at = child.process.pid, time.monotonic(), None
        self._write(child)

    def _check(self, child: _Child, now: float) -> None:
        if child.done:
            return
        if child.due_at is not None:
            if now >= child.due_at:
                child.restarts += 1
                log.warning("restarting %s (restart %d)", child.spec.name, child.restarts)
                try:
                    self._launch(child)
                except OSError as exc:  # e.g. the interpreter vanished: try again later
                    child.last_exit, child.last_exit_at = f"not started: {exc}", _now_rfc3339()
                    child.due_at = now + child.backoff.next_delay(0.0)
                    self._write(child)
            return
        exited, code = child.exit_code()
        if not exited:
            return
        child.last_exit, child.last_exit_at = describe_exit(code), _now_rfc3339()
        child.process = None
        if code == 0:
            child.done = True
            log.warning("%s exited 0: not restarted", child.spec.name)
        else:
            delay = child.backoff.next_delay(now - child.started_at)
            child.last_error = None
            if code == ViewCodeError.exit_code:  # fails again until fixed: slow and loud
                delay = child.backoff.current_s = child.backoff.maximum_s
                child.last_error = last_error_line(
                    self.data_dir / "logs" / f"{child.spec.name}.log"
                )
                log.error("%s: %s", child.spec.name, child.last_error or "view code error")
            child.due_at = now + delay
            log.warning("%s: %s; restart in %.0fs", child.spec.name, child.last_exit, delay)
        self._write(child)

    def _write(self, child: _Child) -> None:
        restart_at = None
        if child.due_at is not None:
            restart_at = _now_rfc3339(child.due_at - time.monotonic())
        write_json(
            self.run_dir / f"{child.spec.name}.json",
            {
                "name": child.spec.name,
                "pid": child.pid,
                "restarts": child.restarts,
                "last_exit": child.last_exit,
                "last_exit_at": child.last_exit_at,
                "last_error": child.last_error,
                "restart_at": restart_at,
            },
        )


def supervisor_pid(data_dir: Path) -> int | None:
    """The running supervisor's pid, else None."""
    pid = read_pid(data_dir / "run" / f"{SUPERVISOR}.pid")
    return pid if pid is not None and pid_alive(pid) else None


def stop_supervisor(data_dir: Path, timeout_s: float = 10.0) -> bool:
    """Stop the supervisor (not its services); True if one was running."""
    pid = supervisor_pid(data_dir)
    if pid is not None:
        terminate([pid], timeout_s)
    with contextlib.suppress(OSError):
        (data_dir / "run" / f"{SUPERVISOR}.pid").unlink()
    return pid is not None
