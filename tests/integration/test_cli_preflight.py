"""The `logstream` command's own argument handling and its Kafka pre-flight check:
`--debug` as another option's value is that value, and a secured setup whose broker is down
does not wait out the pre-flight deadline before the command runs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from logstream.cli.main import split_debug
from logstream.kafka.preflight import CHECK_TIMEOUT_S, check_kafka_access
from logstream.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_debug_is_the_flag_only_when_it_is_no_option_value() -> None:
    assert split_debug(["views", "--debug"]) == (["views"], True)
    assert split_debug(["--debug", "views"]) == (["views"], True)
    args = ["keys", "create", "--name", "--debug", "--scope", "admin"]
    assert split_debug(args) == (args, False)
    assert split_debug(["keys", "create", "--name", "x", "--debug"]) == (
        ["keys", "create", "--name", "x"],
        True,
    )


def test_a_key_can_be_named_like_the_debug_flag(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGSTREAM_")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "logstream",
            "keys",
            "create",
            "--name",
            "--debug",
            "--scope",
            "admin",
        ],
        env={**env, "LOGSTREAM_DATA_DIR": str(tmp_path), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    listed = subprocess.run(
        [sys.executable, "-m", "logstream", "keys", "list"],
        env={**env, "LOGSTREAM_DATA_DIR": str(tmp_path), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "--debug" in listed.stdout, listed.stdout


def test_preflight_gives_up_at_once_when_the_broker_is_down(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        bootstrap_servers=f"127.0.0.1:{_closed_port()}",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="u",
        kafka_sasl_password="p4ssword",
    )
    started = time.monotonic()
    check_kafka_access(settings)  # returns: a down broker is the command's to handle
    took = time.monotonic() - started
    assert took < CHECK_TIMEOUT_S / 2, f"the pre-flight waited {took:.1f}s for a down broker"
