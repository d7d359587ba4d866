"""logstream: an event log on Apache Kafka with replayable, exactly-once materialized views.

Importing this package has no side effects: no environment is read and no broker is contacted.
"""

from __future__ import annotations

from logstream.errors import LogstreamError

__all__ = ["LogstreamError", "__version__"]

__version__ = "0.1.0"
