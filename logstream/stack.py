"""Background services for `make up` / `make down`: detached processes with pid files.

Each service runs in its own session (process group), logs to `<data>/logs/<name>.log`
and is tracked by `<data>/run/<name>.pid`, so `down` can stop it, and its children,
from any later shell.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from logstream.processes import pid_alive, terminate

__all__ = ["ServiceSpec", "ServiceState", "service_states", "start_services", "stop_services"]


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    argv: list[str]


@dataclass(frozen=True)
class ServiceState:
    name: str
    pid: int | None
    running: bool
    log: Path


def _pid_of(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def service_states(data_dir: Path) -> list[ServiceState]:
    run_dir = data_dir / "run"
    states = []
    for pid_file in sorted(run_dir.glob("*.pid")) if run_dir.exists() else []:
        pid = _pid_of(pid_file)
        name = pid_file.stem
        states.append(
            ServiceState(
                name, pid, pid is not None and pid_alive(pid), data_dir / "logs" / f"{name}.log"
            )
        )
    return states


def start_services(
    specs: list[ServiceSpec], data_dir: Path, env: dict[str, str] | None = None
) -> list[ServiceState]:
    """Start each service not already running; returns the state of each."""
    run_dir, log_dir = data_dir / "run", data_dir / "logs"
    run_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    states = []
    for spec in specs:
        pid_file = run_dir / f"{spec.name}.pid"
        log = log_dir / f"{spec.name}.log"
        pid = _pid_of(pid_file)
        if pid is None or not pid_alive(pid):
            with log.open("ab") as handle:
                process = subprocess.Popen(
                    spec.argv,
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    env={**os.environ, **(env or {})},
                )
            pid = process.pid
            pid_file.write_text(f"{pid}\n")
        states.append(ServiceState(spec.name, pid, True, log))
    return states


def stop_services(data_dir: Path, timeout_s: float = 20.0) -> list[str]:
    """SIGTERM every service's process group, SIGKILL after `timeout_s`; returns names stopped."""
    running = {s.name: s.pid for s in service_states(data_dir) if s.running and s.pid}
    terminate(running.values(), timeout_s)
    stopped = sorted(running)
    for pid_file in (data_dir / "run").glob("*.pid") if (data_dir / "run").exists() else []:
        pid_file.unlink(missing_ok=True)
    return stopped
