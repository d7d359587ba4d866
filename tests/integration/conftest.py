"""The session broker: an external one, a testcontainers one, or the local Maven-built one."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from logstream.kafka.admin import TopicSpec, create_topics
from logstream.settings import Settings
from tests.conftest import free_port_pair, local_cluster


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


def _docker_broker() -> Iterator[str]:
    """The official apache/kafka image in KRaft mode, advertised on a fixed free host port."""
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    port = free_port_pair()
    env = {
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": "PLAINTEXT://:9092,CONTROLLER://:9093",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://127.0.0.1:{port}",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        "KAFKA_LOG_MESSAGE_TIMESTAMP_BEFORE_MAX_MS": "9223372036854775807",
    }
    container = DockerContainer("apache/kafka:4.1.1").with_bind_ports(9092, port)
    for key, value in env.items():
        container = container.with_env(key, value)
    with container:
        wait_for_logs(container, "Kafka Server started", timeout=120)
        yield f"127.0.0.1:{port}"


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of a real broker for the whole session."""
    external = os.environ.get("LOGSTREAM_TEST_BOOTSTRAP")
    if external:
        yield external
        return
    if _docker_answers():
        yield from _docker_broker()
        return
    cluster = local_cluster(tmp_path_factory.mktemp("broker"), heap="768m")
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
    """Factory: a fresh topic with a random name, deleted after the test. It returns once
    every partition's leader answers (so watermarks and produce work at once)."""
    created: list[str] = []

    def make(partitions: int = 6, prefix: str = "topic") -> str:
        name = unique_name(prefix)
        create_topics(admin, [TopicSpec(name, partitions, 1, {})], timeout_s=60)
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
