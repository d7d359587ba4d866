"""The hostile-input suite runs against the integration suite's real broker fixtures, and
against a whole stack with keys on (`hostile`, one per test module)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.hostile.stack import HostileStack, run_hostile_stack
from tests.integration.conftest import (  # noqa: F401  (fixtures, found by name)
    admin,
    data_dir,
    kafka_bootstrap,
    make_topic,
    settings,
)


@pytest.fixture(scope="module")
def hostile(kafka_bootstrap, admin, tmp_path_factory) -> Iterator[HostileStack]:  # noqa: F811
    def unique_name(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:8]}"

    yield from run_hostile_stack(kafka_bootstrap, admin, unique_name, tmp_path_factory.mktemp("s"))
