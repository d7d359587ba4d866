"""Generated event ids are canonical random UUIDs, and distinct."""

from __future__ import annotations

import uuid

from ingest_api.event_ids import new_event_id


def test_ids_are_canonical_version_4_uuids() -> None:
    for _ in range(2000):
        text = new_event_id()
        parsed = uuid.UUID(text)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text  # canonical form: lower case, hyphens in place


def test_ids_use_every_variant_digit_and_do_not_repeat() -> None:
    ids = [new_event_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    assert {text[19] for text in ids} == set("89ab")
