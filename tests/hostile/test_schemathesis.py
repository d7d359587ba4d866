"""Schemathesis over every route of a real server (broker, consumers, keys on), with every
check (`--checks all`) and an admin key: at least 3,000 cases, no 5xx, no answer outside the
documented status codes, content types, headers and bodies, and every schema-invalid request
refused. `schemathesis.toml` beside this file says which answer a schema-valid request may
get besides 2xx (a 422 for rules JSON Schema cannot state) and why.

Run by its CLI (`st run`): schemathesis' pytest plugin does not run on pytest 9."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

CONFIG = Path(__file__).with_name("schemathesis.toml")
MIN_CASES = 3_000
MAX_EXAMPLES = 150  # per operation and phase: ~3,200 cases in about a minute here


def test_the_documented_errors_are_the_shared_shape(hostile):
    """Every documented 4xx/5xx is the `{"error": ...}` body (a batch's 503 adds what was
    written, /readyz's 503 is its readiness report); view reads document 503 and 504."""
    spec = httpx.get(hostile.base + "/openapi.json", headers=hostile.headers()).json()
    own = {("/v1/events/likes/batch", "503"): "BatchFailed", ("/readyz", "503"): "Readiness"}
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            for status, answer in responses.items():
                if status.startswith(("4", "5")):
                    ref = answer["content"]["application/json"]["schema"]["$ref"]
                    want = own.get((path, status), "ErrorBody")
                    assert ref == f"#/components/schemas/{want}", (method, path, status)
            if path.startswith("/v1/views/"):
                assert {"401", "403", "422", "429", "503", "504"} <= set(responses), path


def test_schemathesis_finds_nothing(hostile, tmp_path):
    started = time.monotonic()
    run = subprocess.run(
        [
            str(Path(sys.executable).with_name("st")),
            "--config-file",
            str(CONFIG),
            "run",
            f"{hostile.base}/openapi.json",
            "--checks",
            "all",
            "--header",
            f"Authorization: Bearer {hostile.admin_key}",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--workers",
            "2",
            "--suppress-health-check",
            "all",
            "--generation-database",
            "none",
            "--no-color",
            "--report",
            "junit",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,  # its caches (.schemathesis/) stay out of the repository
    )
    took = time.monotonic() - started
    summary = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
    print(f"\nschemathesis: {summary.group(0) if summary else '?'} in {took:.0f} s")
    # Schemathesis 4.32.5's coverage phase sometimes fails inside itself (a KeyError in its
    # own generator, no request involved): that is reported as an error, not a finding.
    assert "Failures:" not in run.stdout, run.stdout[-6000:]
    errors = run.stdout.split("ERRORS", 1)[1] if "ERRORS" in run.stdout else ""
    assert run.returncode == 0 or "schemathesis/" in errors, run.stdout[-6000:]
    assert summary is not None and int(summary.group(1)) >= MIN_CASES, run.stdout[-2000:]
    assert int(summary.group(2)) == int(summary.group(1))
    log = hostile.server_log()
    assert "Traceback" not in log, log[-3000:]
