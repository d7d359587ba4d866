"""`logstream keys create|list|revoke` as a user runs them: the key is printed once, never
listed, and the file holds its hash only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def keys(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGSTREAM_")}
    env.update(PYTHONPATH=str(REPO), LOGSTREAM_DATA_DIR=str(tmp_path))
    return subprocess.run(
        [sys.executable, "-m", "logstream", "keys", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_create_list_revoke(tmp_path: Path) -> None:
    made = keys(tmp_path, "create", "--name", "web", "--scope", "write:likes", "--scope", "read:*")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("lsk_") and len(token) > 40
    key_id = token.split("_")[1]
    assert f"created key {key_id} (web): write:likes read:*" in made.stderr

    listed = keys(tmp_path, "list", "--json")
    rows = json.loads(listed.stdout)
    assert [(r["id"], r["name"], r["scopes"], r["revoked_at"]) for r in rows] == [
        (key_id, "web", ["write:likes", "read:*"], None)
    ]
    stored = (tmp_path / "auth" / "keys.json").read_text()
    for text in (listed.stdout, keys(tmp_path, "list").stdout, stored):
        assert token not in text and token.split("_", 2)[2] not in text
    assert "hash" not in listed.stdout

    revoked = keys(tmp_path, "revoke", key_id)
    assert revoked.returncode == 0 and f"revoked key {key_id} (web)" in revoked.stdout
    assert "revoked" in keys(tmp_path, "list").stdout


def test_bad_input_is_one_error_line(tmp_path: Path) -> None:
    for args in (
        ["create", "--name", "x", "--scope", "delete:likes"],
        ["create", "--name", "x", "--scope", "admin", "--requests-per-s", "-1"],
        ["revoke", "nope"],
    ):
        done = keys(tmp_path, *args)
        assert done.returncode == 1, (args, done)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, lines)


def test_scopes_must_name_real_event_types_and_views(tmp_path: Path) -> None:
    for scope in ("write:like", "read:likes-by-urls", "write:likes-by-url"):
        done = keys(
            tmp_path, "create", "--name", "typo", "--scope", "write:likes", "--scope", scope
        )
        assert done.returncode == 1, done.stdout
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: unknown scope target"), lines
        assert scope in lines[0] and "likes-by-url" in lines[0]
    assert not (tmp_path / "auth" / "keys.json").exists()  # nothing was created
    for scopes in (["write:likes", "read:likes-by-window"], ["write:*", "read:*"], ["admin"]):
        args = [a for s in scopes for a in ("--scope", s)]
        assert keys(tmp_path, "create", "--name", "ok", *args).returncode == 0
    later = keys(
        tmp_path, "create", "--name", "later", "--scope", "read:clicks-by-url", "--allow-unknown"
    )
    assert later.returncode == 0, later.stderr
