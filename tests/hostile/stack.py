"""The real stack the hostile suite attacks: `logstream ingest` (one worker, so its RSS and
its waiter cap are one process's), one `logstream consume` per view, API keys on, topics
of their own."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from consumers import VIEWS
from logstream.auth.keys import KeyFile
from logstream.kafka.admin import TopicSpec, create_topics
from logstream.settings import Settings
from tests.conftest import free_port_block
from tests.integration.processes import Stack, wait_for

WAITERS_MAX = 16


@dataclass
class HostileStack:
    stack: Stack
    base: str
    prefix: str
    admin_key: str
    reader_key: str
    writer_key: str
    data_dir: Path

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.admin_key}"}

    def server_log(self) -> str:
        return (self.stack.logs / "ingest.log").read_text(errors="replace")

    def server_pid(self) -> int:
        return self.stack.procs["ingest"].pid


def run_hostile_stack(
    kafka_bootstrap: str, admin: Any, unique_name: Any, tmp_path: Path, **env_extra: str
) -> Iterator[HostileStack]:
    prefix = unique_name("hostile") + "."
    create_topics(
        admin,
        [TopicSpec(prefix + "likes", 3, 1, {}), TopicSpec(prefix + "likes.dlq", 1, 1, {})],
        timeout_s=60,
    )
    data_dir = tmp_path / "data"
    settings = Settings(bootstrap_servers=kafka_bootstrap, data_dir=data_dir)
    keys = KeyFile(settings.resolved_auth_keys_file)
    _, admin_key = keys.create("admin", ["admin"])
    _, reader_key = keys.create("reader", ["read:*"])
    _, writer_key = keys.create("writer", ["write:likes"])
    ingest_port = free_port_block(1)
    first = free_port_block(len(VIEWS))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LOGSTREAM_")},
        "LOGSTREAM_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "LOGSTREAM_DATA_DIR": str(data_dir),
        "LOGSTREAM_TOPIC_PREFIX": prefix,
        "LOGSTREAM_FLUSH_INTERVAL_S": "0.2",
        "LOGSTREAM_READ_WAITERS_MAX": str(WAITERS_MAX),
        "LOGSTREAM_READ_WAIT_MAX_S": "5",
        **env_extra,
    }
    stack = Stack(env, ingest_port, {name: first + i for i, name in enumerate(VIEWS)})
    stack.start("ingest", ["ingest", "--port", str(ingest_port), "--workers", "1"])
    for view in VIEWS:
        stack.start_consumer(view)
    running = HostileStack(stack, stack.base, prefix, admin_key, reader_key, writer_key, data_dir)
    try:
        wait_for(
            "ingest ready",
            lambda: httpx.get(f"{stack.base}/readyz", headers=running.headers()).status_code == 200,
        )
        for view in VIEWS:
            wait_for(f"{view} metrics", lambda v=view: bool(stack.consumer(v)))
        yield running
    except BaseException:
        print(stack.log_tail())
        raise
    finally:
        stack.stop_all()
        admin.delete_topics([prefix + "likes", prefix + "likes.dlq"])
