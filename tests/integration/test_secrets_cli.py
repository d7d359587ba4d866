"""The CLI prints one `error:` line with every password masked, ours or a library's error,
and a traceback only with `--debug` (masked too). Runs `logstream` as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

REPO = Path(__file__).resolve().parents[2]
PG_DSN = os.environ.get("LOGSTREAM_TEST_PG_DSN")
SECRET = "Zq9-very-secret-pw"


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LOGSTREAM_")}
    return subprocess.run(
        [sys.executable, "-m", "logstream", *args],
        env={**clean, "PYTHONPATH": str(REPO), "LOGSTREAM_DATA_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def with_password(dsn: str, database: str | None = None) -> str:
    parts = urlsplit(dsn)
    netloc = f"{parts.username or 'postgres'}:{SECRET}@{parts.hostname}:{parts.port or 5432}"
    return urlunsplit((parts.scheme, netloc, f"/{database}" if database else parts.path, "", ""))


def assert_one_masked_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, done
    assert SECRET not in done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://bob:{SECRET}@127.0.0.1:1/views",  # nothing listens
        f"postgresql://bob:{SECRET}@127.0.0.1:notaport/views",  # libpq rejects the DSN
    ],
)
def test_store_errors_are_one_masked_line(tmp_path: Path, url: str) -> None:
    for command in (["views"], ["lag"]):
        line = assert_one_masked_line(run(tmp_path, *command, LOGSTREAM_STORE_URL=url))
        assert "Traceback" not in line


def test_debug_prints_a_masked_traceback(tmp_path: Path) -> None:
    url = f"postgresql://bob:{SECRET}@127.0.0.1:1/views"
    done = run(tmp_path, "views", "--debug", LOGSTREAM_STORE_URL=url)
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert SECRET not in done.stderr + done.stdout
    assert done.stderr.strip().splitlines()[-1].startswith("error: ")


@pytest.mark.skipif(not PG_DSN, reason="LOGSTREAM_TEST_PG_DSN not set")
def test_postgres_refusal_is_one_masked_line(tmp_path: Path) -> None:
    """A real server's refusal (a database that does not exist) names no password."""
    assert PG_DSN is not None
    url = with_password(PG_DSN, "no_such_db_for_logstream")
    line = assert_one_masked_line(run(tmp_path, "views", LOGSTREAM_STORE_URL=url))
    assert "no_such_db_for_logstream" in line
