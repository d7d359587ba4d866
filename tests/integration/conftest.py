"""The session broker: an external one, a testcontainers one, or the local Maven-built one."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from logstream.settings import Settings, load_settings
from tests.conftest import free_port_pair


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of a real broker for the whole session."""
    external = os.environ.get("LOGSTREAM_TEST_BOOTSTRAP")
    if external:
        yield external
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("apache/kafka:4.1.1").with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    from logstream.broker.assemble import ensure_kafka_runtime
    from logstream.broker.local import LocalCluster

    settings = load_settings()
    runtime = ensure_kafka_runtime(settings.kafka_version, settings.kafka_cache_dir)
    port = free_port_pair()
    cluster = LocalCluster(
        runtime,
        tmp_path_factory.mktemp("broker"),
        port=port,
        controller_port=port + 1,
        heap="768m",
    )
    cluster.start()
    try:
        yield cluster.bootstrap_servers
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def settings(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings pointing at the session broker, with a private data dir."""
    return Settings(bootstrap_servers=kafka_bootstrap, data_dir=tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def admin(kafka_bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": kafka_bootstrap})


@pytest.fixture
def make_topic(admin: AdminClient, unique_name):
    """Factory: a fresh topic with a random name, deleted after the test."""
    created: list[str] = []

    def make(partitions: int = 6, prefix: str = "topic") -> str:
        name = unique_name(prefix)
        futures = admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1)]
        )
        futures[name].result(timeout=30)
        created.append(name)
        return name

    yield make
    if created:
        for future in admin.delete_topics(created).values():
            with contextlib.suppress(Exception):
                future.result(timeout=30)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"
