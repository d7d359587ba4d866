"""Re-queue old data: export a topic to an Avro file, import Avro or NDJSON back into Kafka.

Historical data, data past retention and data from other clusters re-enter the log with
their original keys and event times, so views built from it equal views built from the
original log (see `export` for the file format, `importer` for the rules).
"""

from __future__ import annotations

from logstream.transfer.export import ExportResult, export_schema, export_topic, parse_time_bound
from logstream.transfer.importer import (
    DeliveryFailedError,
    Format,
    ImportRejectedError,
    ImportResult,
    Prepared,
    RecordRejected,
    Rule,
    import_file,
)

__all__ = [
    "DeliveryFailedError",
    "ExportResult",
    "Format",
    "ImportRejectedError",
    "ImportResult",
    "Prepared",
    "RecordRejected",
    "Rule",
    "export_schema",
    "export_topic",
    "import_file",
    "parse_time_bound",
]
