"""A worked example of a team's own event type and view on logstream (README, "Your own
event type and view"): `page_view` events, and a view of distinct visitors, summed time on
page and latest referrer per page per hour."""

from pathlib import Path

__all__ = ["SCHEMA_DIR"]

SCHEMA_DIR = Path(__file__).parent / "schemas"
"""The folder holding `page_view.v1.avsc`: add it to LOGSTREAM_SCHEMA_DIR."""
