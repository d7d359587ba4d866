"""Which characters text may hold, in one place for every door into the log and the views.

Two rules, one per door:

- Text coming in (ingest, import) refuses the C0 control characters and DEL, except TAB,
  LF and CR: they are never part of a URL, an id or a name, they hide in logs and
  terminals, and NUL is cut or refused by the stores (`forbidden_control`,
  `control_character_message`, `control_character_errors`).
- A key reaching a view store must not contain NUL: SQLite's JSON-fed upsert cuts a string
  there (three URLs become one) and PostgreSQL refuses it ("text fields cannot contain NUL"),
  so such an event is dead-lettered by the runtime with the reason, never stored
  (`unstorable_key`). Events already in the log, or written straight to Kafka, meet only
  this rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = [
    "ALLOWED_CONTROLS",
    "NUL",
    "UnstorableKeyError",
    "control_character_errors",
    "control_character_message",
    "forbidden_control",
    "shown_name",
    "unstorable_key",
]

ALLOWED_CONTROLS = "\t\n\r"
NUL = "\x00"
# C0 controls (U+0000..U+001F) but TAB, LF, CR; and DEL (U+007F).
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class UnstorableKeyError(ValueError):
    """An event whose counter key no view store can hold; the runtime dead-letters it."""


def forbidden_control(text: str) -> str | None:
    """The first forbidden control character of `text` as `U+XXXX`, or None."""
    found = _FORBIDDEN.search(text)
    return None if found is None else f"U+{ord(found.group()):04X}"


def control_character_message(text: str) -> str | None:
    """Why `text` is refused (its first forbidden control character named), or None."""
    found = forbidden_control(text)
    if found is None:
        return None
    return f"contains the control character {found} (only TAB, LF, CR are allowed)"


def shown_name(name: str) -> str:
    """`name` (a map key in a field path) with each forbidden control written `\\uXXXX`, so
    that an error message never carries the raw character."""
    return _FORBIDDEN.sub(lambda m: f"\\u{ord(m.group()):04x}", name)


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """(path, text) of every string in a record: field values, map keys, array items."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            shown = shown_name(str(key))
            name = f"{path}.{shown}" if path else shown  # never a raw control in a message
            if isinstance(key, str):
                yield name, key
            yield from _strings(item, name)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _strings(item, f"{path}[{i}]")


def control_character_errors(record: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(field, message) for every string field of `record` holding a forbidden control
    character, the field named by its path (`url`, `tags[2]`, `attrs.k`)."""
    errors = []
    for field, text in _strings(record, ""):
        message = control_character_message(text)
        if message is not None:
            errors.append((field, message))
    return errors


def unstorable_key(series: str, key: object) -> UnstorableKeyError:
    """Why an event whose (series, key) holds NUL is dead-lettered (the runtime tests each
    key with `NUL in key` inline: this is its hot path)."""
    return UnstorableKeyError(
        f"key {str(key)[:200]!r} of series {series[:100]!r} contains NUL (U+0000), "
        "which no view store can hold"
    )
