"""The whole stack over SASL/SCRAM-SHA-512 and TLS: `logstream broker start --secure`, then
ingest -> consumer -> view (exact), lag, backfill and export/import, each as the real
command reading `<data>/logstream.env`; a wrong password is one error line in seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import fastavro
import pytest
import requests
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from tests.conftest import free_port_block
from tests.integration.ingest_server import running_ingest

REPO = Path(__file__).resolve().parents[2]


class Stack:
    """`logstream` commands run against one secure data folder."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def env(self, **extra: str) -> dict[str, str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("LOGSTREAM_")}
        return {**clean, "PYTHONPATH": str(REPO), "LOGSTREAM_DATA_DIR": str(self.data_dir), **extra}

    def run(
        self, *args: str, timeout: float = 300, **extra: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "logstream", *args],
            env=self.env(**extra),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.data_dir,
        )

    def ok(self, *args: str, **extra: str) -> str:
        done = self.run(*args, **extra)
        assert done.returncode == 0, f"{args}: {done.stderr}"
        return done.stdout


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, str]]:
    stack = Stack(tmp_path_factory.mktemp("secure"))
    port = free_port_block(2)
    out = stack.ok(
        "broker", "start", "--secure", "--port", str(port), "--controller-port", str(port + 1)
    )
    try:
        assert "secure: SASL_SSL with SCRAM-SHA-512" in out
        settings_file = stack.data_dir / "logstream.env"
        assert settings_file.stat().st_mode & 0o777 == 0o600
        assert "LOGSTREAM_KAFKA_SECURITY_PROTOCOL=SASL_SSL" in settings_file.read_text()
        stack.ok("topics", "create")
        yield stack, f"127.0.0.1:{port}"
    finally:
        stack.run("broker", "stop")


def test_broker_secrets_are_private_to_their_owner(secure: tuple[Stack, str]) -> None:
    """server.properties holds the admin SCRAM password, the folder the private keys: none
    readable by other local users; the format arguments (passwords) are not left behind."""
    stack, _ = secure
    broker = stack.data_dir / "broker"
    props = sorted(broker.rglob("server.properties"))
    assert props, "no server.properties found"
    for path in props:
        assert path.stat().st_mode & 0o777 == 0o600, path
        assert path.parent.stat().st_mode & 0o077 == 0, path.parent
    folder = broker / "secure"
    assert folder.stat().st_mode & 0o777 == 0o700
    for name in ("ca.key", "broker.key", "broker.pk8", "broker-keystore.pem", "credentials.json"):
        if (folder / name).exists():
            assert (folder / name).stat().st_mode & 0o777 == 0o600, name
    assert not list(broker.rglob("format.args"))


def test_plaintext_clients_are_not_served(secure: tuple[Stack, str]) -> None:
    _, bootstrap = secure
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 3000})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=5)


def test_ingest_views_lag_backfill_and_transfer_over_sasl_ssl(
    secure: tuple[Stack, str], tmp_path: Path
) -> None:
    stack, _ = secure
    with running_ingest(stack.env(), cwd=stack.data_dir, ready_path="/readyz") as base:
        expected: Counter[str] = Counter()
        for i in range(60):
            url = f"https://secure.example/{i % 7}"
            like = {"url": url, "user_id": f"u{i}", "event_id": str(uuid.uuid4())}
            for _ in range(50):  # retried with the same event_id on 503, as clients do
                answer = requests.post(f"{base}/v1/events/likes", json=like, timeout=30)
                if answer.status_code != 503:
                    break
                time.sleep(0.2)
            assert answer.status_code == 202, answer.text
            expected[url] += 1

        def view_counts() -> dict[str, int]:
            counts = {}
            for url in expected:
                answer = requests.get(
                    f"{base}/v1/views/likes-by-url", params={"url": url}, timeout=30
                )
                assert answer.status_code == 200, answer.text
                counts[url] = answer.json()["count"]
            return counts

        stack.ok("consume", "likes-by-url", "--until-caught-up", "--no-progress")
        assert view_counts() == dict(expected)
        lags = json.loads(stack.ok("lag", "likes-by-url", "--json"))
        assert lags and all(row["lag"] == 0 for row in lags)
        assert sum(row["log_end"] for row in lags) == sum(expected.values())

        stack.ok("backfill", "likes-by-url", "--to-earliest", "--execute")
        stack.ok("consume", "likes-by-url", "--until-caught-up", "--no-progress")
        assert view_counts() == dict(expected)  # replayed exactly, over SASL_SSL

        dump = tmp_path / "likes.avro"
        stack.ok("export", "likes", "-o", str(dump))
        stack.ok("topics", "create", LOGSTREAM_TOPIC_PREFIX="copy.")
        stack.ok("import", str(dump), "--topic", "copy.likes")
        again = tmp_path / "copy.avro"
        stack.ok("export", "copy.likes", "-o", str(again))
        with dump.open("rb") as a, again.open("rb") as b:
            original = sorted(r["event"]["event_id"] for r in fastavro.reader(a))  # type: ignore[index]
            copied = sorted(r["event"]["event_id"] for r in fastavro.reader(b))  # type: ignore[index]
        assert len(original) == sum(expected.values()) and copied == original


def test_wrong_password_is_one_line_within_seconds(secure: tuple[Stack, str]) -> None:
    stack, _ = secure
    for command in (["topics", "create"], ["lag"], ["consume", "likes-by-user"]):
        started = time.monotonic()
        done = stack.run(*command, timeout=60, LOGSTREAM_KAFKA_SASL_PASSWORD="not-the-password")
        took = time.monotonic() - started
        assert done.returncode == 1, done
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "refused the credentials of user 'logstream'" in lines[0], lines
        assert "not-the-password" not in done.stderr + done.stdout
        assert took < 20, took
