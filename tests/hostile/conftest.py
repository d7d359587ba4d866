"""The hostile-input suite runs against the integration suite's real broker fixtures."""

from tests.integration.conftest import (  # noqa: F401  (fixtures, found by name)
    admin,
    data_dir,
    kafka_bootstrap,
    make_topic,
    settings,
)
