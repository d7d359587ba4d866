"""The alert rules are valid Prometheus rules and behave as `alerts.test.yml` says, checked by
Prometheus's own `promtool` (Debian package `prometheus`): the lag alert fires for the
current version of a view only, the consumer-down alert after 1 min."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing (apt-get install prometheus); CI must run it")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return found


@pytest.mark.parametrize(
    "args",
    [("check", "rules", "alerts.yml"), ("test", "rules", "alerts.test.yml")],
    ids=["check", "test"],
)
def test_promtool(args: tuple[str, ...]):
    done = subprocess.run(
        [promtool(), *args], cwd=RULES, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
