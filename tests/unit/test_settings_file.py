"""`<data dir>/logstream.env` (written by `broker start --secure`) is read by every command;
the environment wins over it, and a typo in it is an error like in the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from logstream.auth.policy import check_bind
from logstream.errors import ConfigError
from logstream.settings import load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("LOGSTREAM_"):
            monkeypatch.delenv(key)


def test_the_folder_settings_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "logstream.env").write_text(
        "LOGSTREAM_BOOTSTRAP_SERVERS=127.0.0.1:19092\n"
        "LOGSTREAM_KAFKA_SECURITY_PROTOCOL=SASL_SSL\n"
        "LOGSTREAM_KAFKA_SASL_PASSWORD=Fi1eSecret\n"
    )
    settings = load_settings(data_dir=tmp_path)
    assert settings.bootstrap_servers == "127.0.0.1:19092"
    assert settings.kafka_common()["security.protocol"] == "SASL_SSL"
    assert "Fi1eSecret" not in repr(settings)
    monkeypatch.setenv("LOGSTREAM_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LOGSTREAM_BOOTSTRAP_SERVERS", "10.0.0.1:9092")
    assert load_settings().bootstrap_servers == "10.0.0.1:9092"  # the environment wins


def test_a_typo_in_the_settings_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "logstream.env").write_text("LOGSTREAM_BOOTSTRAP_SERVER=x:1\n")
    with pytest.raises(ConfigError):
        load_settings(data_dir=tmp_path)


def test_trusted_network_serves_without_keys_until_a_key_file_exists(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    assert check_bind("0.0.0.0", keys, trust_network=True) is False
    keys.write_text('{"version": 1, "keys": []}')
    assert check_bind("0.0.0.0", keys, trust_network=True) is True


def test_a_settings_file_others_can_write_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "logstream.env"
    path.write_text("LOGSTREAM_BOOTSTRAP_SERVERS=127.0.0.1:19092\n")
    path.chmod(0o600)
    assert load_settings(data_dir=tmp_path).bootstrap_servers == "127.0.0.1:19092"
    path.chmod(0o620)
    with pytest.raises(ConfigError, match="group or others may write it"):
        load_settings(data_dir=tmp_path)
    path.chmod(0o602)
    with pytest.raises(ConfigError, match="group or others may write it"):
        load_settings(data_dir=tmp_path)


def test_a_settings_file_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    path = tmp_path / "logstream.env"
    path.write_text("LOGSTREAM_BOOTSTRAP_SERVERS=10.6.6.6:9092\n")
    path.chmod(0o644)
    if os.getuid() != 0:
        pytest.skip("changing a file's owner needs root")
    os.chown(path, 65534, 65534)
    with pytest.raises(ConfigError, match="not by you"):
        load_settings(data_dir=tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGSTREAM_")}
    done = subprocess.run(
        [sys.executable, "-m", "logstream", "topics", "list"],
        env={**env, "LOGSTREAM_DATA_DIR": str(tmp_path), "PYTHONPATH": os.getcwd()},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: refusing"), done.stderr


def test_trusted_network_needs_keys_when_published_beyond_loopback(tmp_path: Path) -> None:
    """docker-compose passes INGEST_PUBLISH_ADDR: a public publish is no trusted network."""
    keys = tmp_path / "keys.json"
    assert check_bind("0.0.0.0", keys, trust_network=True, published_host="127.0.0.1") is False
    with pytest.raises(ConfigError, match=r"published on 0\.0\.0\.0"):
        check_bind("0.0.0.0", keys, trust_network=True, published_host="0.0.0.0")
    keys.write_text('{"version": 1, "keys": []}')
    assert check_bind("0.0.0.0", keys, trust_network=True, published_host="0.0.0.0") is True


def test_compose_trusts_the_network_only_for_ingest_and_follows_its_publish_address() -> None:
    import yaml

    compose = yaml.safe_load((Path(__file__).parents[2] / "docker-compose.yml").read_text())
    services = compose["services"]
    ingest = services["ingest"]
    assert ingest["environment"]["LOGSTREAM_INGEST_PUBLISHED_HOST"] == (
        "${INGEST_PUBLISH_ADDR:-127.0.0.1}"
    )
    assert any("${INGEST_PUBLISH_ADDR:-127.0.0.1}:8000" in p for p in ingest["ports"])
    assert "/healthz" in " ".join(ingest["healthcheck"]["test"])
    for name, service in services.items():
        if name != "ingest":
            assert "LOGSTREAM_INGEST_TRUST_NETWORK" not in (service.get("environment") or {})
