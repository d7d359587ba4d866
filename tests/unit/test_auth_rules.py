"""The pure rules behind API keys: which scope a path needs, which scopes grant it, when
a bind address needs keys, the token bucket, and the key file keeping hashes only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest_api.rate_limits import RateLimiter, TokenBucket
from logstream.auth.keys import KeyFile, KeyRing
from logstream.auth.policy import check_bind, is_loopback
from logstream.auth.scopes import ADMIN, AUTHENTICATED, grants, parse_scope, required_scope
from logstream.errors import ConfigError


@pytest.mark.parametrize(
    ("path", "needed"),
    [
        ("/healthz", None),
        ("/v1/events/likes", "write:likes"),
        ("/v1/events/likes/batch", "write:likes"),
        ("/v1/events/other", "write:other"),
        ("/v1/events/", "write:*"),
        ("/v1/views", "read:*"),
        ("/v1/views/", "read:*"),
        ("/v1/views/likes-by-url", "read:likes-by-url"),
        ("/v1/views/likes-by-url/top", "read:likes-by-url"),
        ("/docs", AUTHENTICATED),
        ("/openapi.json", AUTHENTICATED),
        ("/v1/schemas", AUTHENTICATED),
        ("/readyz", AUTHENTICATED),
        ("/nowhere", AUTHENTICATED),
        ("/metrics", ADMIN),
        ("/dashboard", None),  # a static page: it asks for a key for its own fetches
        ("/dashboard/app.js", None),
        ("/dashboardx", AUTHENTICATED),
        ("/v1/status", AUTHENTICATED),
        ("//v1/events/likes", AUTHENTICATED),  # no route matches it either
    ],
)
def test_required_scope(path: str, needed: str | None) -> None:
    need = required_scope(path)
    assert (None if need is None else need.scope) == needed


@pytest.mark.parametrize(
    ("granted", "needed", "ok"),
    [
        (["write:likes"], "write:likes", True),
        (["write:likes"], "write:other", False),
        (["write:likes"], "read:likes-by-url", False),
        (["read:likes-by-url"], "read:likes-by-user", False),
        (["read:*"], "read:likes-by-user", True),
        (["read:*"], "write:likes", False),
        (["write:*"], "write:likes", True),
        (["read:likes-by-url"], "read:*", False),
        (["admin"], "write:likes", True),
        (["admin"], ADMIN, True),
        (["write:*", "read:*"], ADMIN, False),
        (["read:likes-by-url"], AUTHENTICATED, True),
    ],
)
def test_grants(granted: list[str], needed: str, ok: bool) -> None:
    assert grants(granted, needed) is ok


@pytest.mark.parametrize("bad", ["", "write", "write:", "delete:likes", "read:a b", "admin:x"])
def test_bad_scopes_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid scope"):
        parse_scope(bad)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("example.com", False),
    ],
)
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_exposed_bind_needs_a_key_file(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    assert check_bind("127.0.0.1", keys) is False
    with pytest.raises(ConfigError, match=r"refusing to serve on 0\.0\.0\.0 without API keys"):
        check_bind("0.0.0.0", keys)
    KeyFile(keys).create("ops", ["admin"])
    assert check_bind("0.0.0.0", keys) is True
    assert check_bind("127.0.0.1", keys) is True  # a key file turns auth on everywhere


def test_key_file_holds_hashes_only_and_revocation_sticks(tmp_path: Path) -> None:
    path = tmp_path / "auth" / "keys.json"
    files = KeyFile(path)
    key, token = files.create("writer", ["write:likes", "write:likes"])
    assert key.scopes == ("write:likes",)
    text = path.read_text()
    assert token not in text and token.split("_", 2)[2] not in text
    assert path.stat().st_mode & 0o777 == 0o600
    now = [0.0]
    ring = KeyRing(path, clock=lambda: now[0])
    assert ring.enforced
    found = ring.lookup(token)
    assert found is not None and found.id == key.id
    assert ring.lookup(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert ring.lookup("lsk_" + key.id + "_") is None
    assert ring.lookup("nonsense") is None
    files.revoke(key.id)
    assert ring.lookup(token) is not None  # not reread yet: at most once a second
    now[0] = 1.5
    assert ring.lookup(token) is None
    assert json.loads(path.read_text())["keys"][0]["revoked_at"]
    with pytest.raises(ConfigError, match="no key with id"):
        files.revoke("ffff")


def test_token_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=2.0, capacity=4.0, tokens=4.0, stamp=0.0)
    assert [bucket.take(1, 0.0) for _ in range(4)] == [0.0] * 4
    assert bucket.take(1, 0.0) == pytest.approx(0.5)
    assert bucket.take(1, 0.5) == 0.0
    # A take larger than the bucket passes only when it is full, and leaves it in debt.
    assert bucket.take(10, 0.5) > 0
    assert bucket.take(10, 10.0) == 0.0
    assert bucket.take(1, 10.0) == pytest.approx(3.5)


def test_rate_limiter_per_key_and_kind(tmp_path: Path) -> None:
    files = KeyFile(tmp_path / "keys.json")
    slow, _ = files.create("slow", ["admin"], requests_per_s=1, events_per_s=3)
    fast, _ = files.create("fast", ["admin"], requests_per_s=0)
    now = [0.0]
    limiter = RateLimiter(5, 100, burst_s=2, clock=lambda: now[0])
    assert [limiter.take_request(slow) for _ in range(3)] == [0, 0, 1]
    assert all(limiter.take_request(fast) == 0 for _ in range(1000))  # 0: unlimited
    assert limiter.take_events(slow, 6) == 0
    assert limiter.take_events(slow, 3) == 1
    now[0] = 1.0
    assert limiter.take_events(slow, 3) == 0


def test_auth_stays_on_when_the_key_file_vanishes(tmp_path: Path) -> None:
    """Deleting (or hiding) the key file of a running server must not turn auth off."""
    path = tmp_path / "auth" / "keys.json"
    now = [0.0]
    ring = KeyRing(path, clock=lambda: now[0])
    assert not ring.enforced  # loopback, no file yet: off
    _, token = KeyFile(path).create("writer", ["write:likes"])
    now[0] = 1.5
    assert ring.enforced and ring.lookup(token) is not None
    path.unlink()
    now[0] = 3.0
    assert ring.enforced, "auth turned off when the key file was deleted"
    assert ring.lookup(token) is None  # every key refused until the file is back


def test_an_exposed_bind_requires_keys_even_without_a_file(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path / "keys.json", required=True)
    assert ring.enforced and ring.lookup("lsk_0000_x") is None
