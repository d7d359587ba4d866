"""Passwords for `kafka-storage format` travel in a java @argfile, not on the command line
(where `ps` shows them to every local user). That java reads the file back intact is shown
end to end by tests/integration/test_secure_broker.py (the SCRAM users it creates log in)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from logstream.broker.assemble import KafkaRuntime


def test_secret_arguments_go_to_a_private_argfile(tmp_path: Path) -> None:
    if shutil.which("java") is None:
        pytest.skip("no java")
    runtime = KafkaRuntime(tmp_path / "kafka")
    secret = 'S3cret"with\\odd chars'
    argfile = tmp_path / "node" / "format.args"
    command = runtime.java_command(
        "Main", "format", f"--add-scram=SCRAM-SHA-512=[name=a,password={secret}]", argfile=argfile
    )
    assert not any(secret in part for part in command)
    assert command[-1] == f"@{argfile}" and "Main" not in command
    assert argfile.stat().st_mode & 0o777 == 0o600
    lines = argfile.read_text().splitlines()
    assert lines[0] == '"Main"' and lines[1] == '"format"'
    assert lines[2] == '"--add-scram=SCRAM-SHA-512=[name=a,password=S3cret\\"with\\\\odd chars]"'
