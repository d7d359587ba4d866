"""The API key file: keys are kept only as SHA-256 hashes, compared in constant time.

A key is `lsk_<id>_<secret>`: the id (public, shown by `logstream keys list`) finds the
entry, the SHA-256 of the whole key must equal the stored hash (`hmac.compare_digest`).
The secret has 256 bits of entropy, so a fast hash is enough (no password stretching) and
checking a key costs about a microsecond per request.

The file (`LOGSTREAM_AUTH_KEYS_FILE`, default `<data>/auth/keys.json`, mode 0600) is
rewritten atomically under a lock; a running server rereads it when it changes (checked at
most once a second), so `keys create` and `keys revoke` take effect without a restart.
Once the file exists, even with every key revoked, the server requires a key; and once a
server has required keys it keeps requiring them: a key file that vanishes or cannot be read
later means every key is refused (logged), never that auth turns off.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import os
import secrets
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from logstream.auth.scopes import parse_scope
from logstream.errors import ConfigError

__all__ = ["ApiKey", "KeyFile", "KeyRing", "hash_key"]

KEY_PREFIX = "lsk_"
log = logging.getLogger(__name__)

_FORMAT_VERSION = 1
_RELOAD_EVERY_S = 1.0


def hash_key(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One key as stored: never the secret itself."""

    id: str
    name: str
    scopes: tuple[str, ...]
    hash: str
    created_at: str
    revoked_at: str | None = None
    requests_per_s: float | None = None  # None: the server's default
    events_per_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["scopes"] = list(self.scopes)
        data.pop("extra")
        return {**self.extra, **data}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ApiKey:
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        return cls(
            **{k: v for k, v in data.items() if k in known and k != "scopes"},
            scopes=tuple(data.get("scopes", ())),
            extra={k: v for k, v in data.items() if k not in known},
        )


def _split(token: str) -> str | None:
    """The id part of a well-formed key, else None."""
    if not token.startswith(KEY_PREFIX):
        return None
    key_id, sep, secret = token[len(KEY_PREFIX) :].partition("_")
    return key_id if sep and key_id and secret else None


class KeyFile:
    """Reads and rewrites the key file (CLI side)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def exists(self) -> bool:
        return self.path.exists()

    def load(self) -> list[ApiKey]:
        return _read(self.path)

    def create(
        self,
        name: str,
        scopes: Sequence[str],
        *,
        requests_per_s: float | None = None,
        events_per_s: float | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key; returns it and the only copy of its secret."""
        parsed = tuple(dict.fromkeys(parse_scope(s) for s in scopes))
        if not parsed:
            raise ConfigError("a key needs at least one --scope")
        with self._locked() as keys:
            taken = {k.id for k in keys}
            key_id = secrets.token_hex(6)
            while key_id in taken:
                key_id = secrets.token_hex(6)
            token = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
            key = ApiKey(
                id=key_id,
                name=name,
                scopes=parsed,
                hash=hash_key(token),
                created_at=_now(),
                requests_per_s=requests_per_s,
                events_per_s=events_per_s,
            )
            keys.append(key)
        return key, token

    def revoke(self, key_id: str) -> ApiKey:
        with self._locked() as keys:
            for index, key in enumerate(keys):
                if key.id == key_id:
                    if key.active:
                        keys[index] = replace(key, revoked_at=_now())
                    return keys[index]
        raise ConfigError(f"no key with id {key_id!r} in {self.path} (see `logstream keys list`)")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[list[ApiKey]]:
        """The keys, under an exclusive lock; written back atomically (0600) on success."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            keys = _read(self.path)
            yield keys
            _write(self.path, keys)
        finally:
            os.close(fd)


def _read(path: Path) -> list[ApiKey]:
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigError(f"cannot read the API key file {path}: {exc.strerror}") from exc
    try:
        data = json.loads(raw)
        return [ApiKey.from_json(item) for item in data["keys"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"the API key file {path} is not valid: {exc}") from exc


def _write(path: Path, keys: list[ApiKey]) -> None:
    body = json.dumps({"version": _FORMAT_VERSION, "keys": [k.to_json() for k in keys]}, indent=2)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".keys-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(body + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class KeyRing:
    """The server's view of the key file: looks keys up, rereads the file when it changed."""

    def __init__(self, path: Path, *, clock: Any = time.monotonic, required: bool = False) -> None:
        """`required`: keys are needed from the start even with no file (an exposed bind)."""
        self.path = path
        self._clock = clock
        self._checked_at = float("-inf")
        self._stamp: tuple[int, int, int] | None = None
        self._by_id: dict[str, ApiKey] = {}
        self._enforced = required
        self._refresh(strict=True)  # an unreadable file stops the server from starting

    @property
    def enforced(self) -> bool:
        """Whether requests need a key: the key file exists or existed since the start
        (even if every key is revoked or the file was deleted), or the bind requires it."""
        self._maybe_refresh()
        return self._enforced

    def lookup(self, token: str) -> ApiKey | None:
        """The active key `token` is, else None (unknown, malformed, wrong secret, revoked)."""
        self._maybe_refresh()
        key_id = _split(token)
        key = self._by_id.get(key_id) if key_id is not None else None
        candidate = hash_key(token)
        # Compare even when the id is unknown, so timing does not tell ids apart.
        stored = key.hash if key is not None else "sha256:" + "0" * 64
        if hmac.compare_digest(candidate, stored) and key is not None and key.active:
            return key
        return None

    def _maybe_refresh(self) -> None:
        now = self._clock()
        if now - self._checked_at >= _RELOAD_EVERY_S:
            self._checked_at = now
            self._refresh(strict=False)

    def _refresh(self, *, strict: bool) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            if self._enforced and (self._by_id or self._stamp is not None):
                log.error(
                    "the API key file %s is gone; refusing every key until it is back",
                    self.path,
                )
            self._stamp, self._by_id = None, {}
            return
        except OSError as exc:  # e.g. a folder made unreadable: fail closed
            if strict:
                raise ConfigError(f"cannot read the API key file {self.path}: {exc}") from exc
            if self._by_id or not self._enforced:
                log.error(
                    "cannot read the API key file %s (%s); refusing every key", self.path, exc
                )
            self._stamp, self._by_id, self._enforced = None, {}, True
            return
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return
        # A file that cannot be read keeps auth on with no key accepted: fail closed.
        self._enforced = True
        try:
            keys = _read(self.path)
        except ConfigError as exc:
            self._by_id, self._stamp = {}, None
            if strict:
                raise
            log.error("%s; refusing every key until it is fixed", exc)
            return
        self._by_id = {k.id: k for k in keys}
        self._stamp = stamp
