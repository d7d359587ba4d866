"""Background services for `make up` / `make down`: detached processes with pid files.

Each service runs in its own session (process group), logs to `<data>/logs/<name>.log`
and is tracked by `<data>/run/<name>.pid`, so `down` can stop it, and its children,
from any later shell. Under `logstream stack up` the services are children of one
supervisor (`logstream.supervisor`), which also writes `<data>/run/<name>.json`:
restarts and the last abnormal exit, read here for `stack status`.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from logstream.processes import pid_alive, terminate

__all__ = [
    "SUPERVISOR",
    "ServiceSpec",
    "ServiceState",
    "launch_service",
    "read_pid",
    "service_states",
    "start_services",
    "stop_services",
    "write_json",
]

SUPERVISOR = "supervisor"  # its pid file lives beside the services' but it is not one


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
    restarts: int = 0
    last_exit: str | None = None  # "exit 1", "signal 9 (SIGKILL)"
    last_exit_at: str | None = None  # RFC 3339
    restart_at: str | None = None  # when a crashed service is due to start again
    last_error: str | None = None  # a consumer's view code error (`error: ...` line)


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Replace `path` atomically: a reader never sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)


def _supervision(run_dir: Path, name: str) -> dict[str, Any]:
    try:
        data = json.loads((run_dir / f"{name}.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def service_states(data_dir: Path) -> list[ServiceState]:
    run_dir = data_dir / "run"
    names = set()
    if run_dir.exists():
        names = {p.stem for p in run_dir.glob("*.pid")} | {p.stem for p in run_dir.glob("*.json")}
    states = []
    for name in sorted(names - {SUPERVISOR}):
        pid = read_pid(run_dir / f"{name}.pid")
        info = _supervision(run_dir, name)
        states.append(
            ServiceState(
                name,
                pid,
                pid is not None and pid_alive(pid),
                data_dir / "logs" / f"{name}.log",
                restarts=int(info.get("restarts", 0)),
                last_exit=info.get("last_exit"),
                last_exit_at=info.get("last_exit_at"),
                restart_at=info.get("restart_at"),
                last_error=info.get("last_error"),
            )
        )
    return states


def launch_service(
    spec: ServiceSpec, data_dir: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start one service in its own session, appending to its log; writes its pid file."""
    run_dir, log_dir = data_dir / "run", data_dir / "logs"
    run_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / f"{spec.name}.log").open("ab") as handle:
        process = subprocess.Popen(
            spec.argv,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    (run_dir / f"{spec.name}.pid").write_text(f"{process.pid}\n")
    return process


def start_services(
    specs: list[ServiceSpec], data_dir: Path, env: dict[str, str] | None = None
) -> list[ServiceState]:
    """Start each service not already running, unsupervised; returns the state of each."""
    states = []
    for spec in specs:
        pid = read_pid(data_dir / "run" / f"{spec.name}.pid")
        if pid is None or not pid_alive(pid):
            pid = launch_service(spec, data_dir, env).pid
        states.append(ServiceState(spec.name, pid, True, data_dir / "logs" / f"{spec.name}.log"))
    return states


def stop_services(data_dir: Path, timeout_s: float = 20.0) -> list[str]:
    """SIGTERM every service's process group, SIGKILL after `timeout_s`; returns names stopped.

    Stop the supervisor first (`logstream.supervisor.stop_supervisor`), or it restarts them.
    """
    running = {s.name: s.pid for s in service_states(data_dir) if s.running and s.pid}
    terminate(running.values(), timeout_s)
    stopped = sorted(running)
    run_dir = data_dir / "run"
    for pattern in ("*.pid", "*.json"):
        for path in run_dir.glob(pattern) if run_dir.exists() else []:
            if path.stem != SUPERVISOR:
                path.unlink(missing_ok=True)
    return stopped
