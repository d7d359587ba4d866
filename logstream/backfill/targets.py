"""What a backfill asks for, parsed from the command line before any broker is contacted.

The modes and their spelling mirror `kafka-consumer-groups --reset-offsets` so that an
operator who knows Kafka's tool knows this one; parsing is kept apart from planning so a
typo fails fast (exit 2) without touching Kafka or the view store.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from logstream.errors import LogstreamError

__all__ = [
    "Mode",
    "Scope",
    "Target",
    "TargetError",
    "format_ms",
    "parse_datetime",
    "parse_duration",
    "parse_scope",
    "read_offsets_csv",
]

TP = tuple[str, int]


class TargetError(LogstreamError):
    """The requested target or scope is malformed (a usage error: exit code 2)."""


class Mode(StrEnum):
    """One reset target, named like the `kafka-consumer-groups` option."""

    TO_EARLIEST = "to-earliest"
    TO_LATEST = "to-latest"
    TO_DATETIME = "to-datetime"
    BY_DURATION = "by-duration"
    TO_OFFSET = "to-offset"
    SHIFT_BY = "shift-by"
    FROM_FILE = "from-file"


@dataclass(frozen=True)
class Target:
    """A parsed target: the mode plus the one value it needs.

    `time_ms` is filled for --to-datetime; for --by-duration `duration_ms` is kept and the
    time is computed against "now" when planning, like Kafka does.
    """

    mode: Mode
    label: str
    time_ms: int | None = None
    duration_ms: int | None = None
    offset: int | None = None
    shift: int | None = None
    file_offsets: dict[TP, int] = field(default_factory=dict)

    def time_at(self, now_ms: int) -> int | None:
        """The event time the target names (datetime and duration modes), else None."""
        if self.mode is Mode.TO_DATETIME:
            return self.time_ms
        if self.mode is Mode.BY_DURATION:
            assert self.duration_ms is not None
            return now_ms - self.duration_ms
        return None

    @classmethod
    def from_options(
        cls,
        *,
        to_earliest: bool = False,
        to_latest: bool = False,
        to_datetime: str | None = None,
        by_duration: str | None = None,
        to_offset: int | None = None,
        shift_by: int | None = None,
        from_file: Path | None = None,
    ) -> Target:
        """Exactly one target from the CLI options, or TargetError."""
        given = [
            name
            for name, value in (
                ("--to-earliest", to_earliest or None),
                ("--to-latest", to_latest or None),
                ("--to-datetime", to_datetime),
                ("--by-duration", by_duration),
                ("--to-offset", to_offset),
                ("--shift-by", shift_by),
                ("--from-file", from_file),
            )
            if value is not None
        ]
        if len(given) != 1:
            raise TargetError(
                "give exactly one target: --to-earliest, --to-latest, --to-datetime DT, "
                "--by-duration D, --to-offset N, --shift-by N or --from-file F"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if to_earliest:
            return cls(Mode.TO_EARLIEST, "--to-earliest")
        if to_latest:
            return cls(Mode.TO_LATEST, "--to-latest")
        if to_datetime is not None:
            ms = parse_datetime(to_datetime)
            return cls(Mode.TO_DATETIME, f"--to-datetime {format_ms(ms)}", time_ms=ms)
        if by_duration is not None:
            return cls(
                Mode.BY_DURATION,
                f"--by-duration {by_duration}",
                duration_ms=parse_duration(by_duration),
            )
        if to_offset is not None:
            if to_offset < 0:
                raise TargetError(f"--to-offset must be >= 0, got {to_offset}")
            return cls(Mode.TO_OFFSET, f"--to-offset {to_offset}", offset=to_offset)
        if shift_by is not None:
            return cls(Mode.SHIFT_BY, f"--shift-by {shift_by}", shift=shift_by)
        assert from_file is not None
        return cls(
            Mode.FROM_FILE, f"--from-file {from_file}", file_offsets=read_offsets_csv(from_file)
        )


def parse_datetime(text: str) -> int:
    """RFC 3339 / ISO 8601 date-time to epoch ms; without a zone it is UTC (as in Kafka)."""
    raw = text.strip()
    if "T" not in raw and " " not in raw:
        raise TargetError(f"--to-datetime {text!r}: expected e.g. 2026-01-02T12:00:00Z")
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise TargetError(
            f"--to-datetime {text!r} is not an RFC 3339 date-time (e.g. 2026-01-02T12:00:00Z)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def format_ms(ms: int) -> str:
    """Epoch ms as RFC 3339 UTC with milliseconds, the form Kafka's tool also accepts."""
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


_ISO_DURATION = re.compile(
    r"^P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d{1,3})?)S)?)?$"
)
_SHORT_PART = re.compile(r"(\d+)(ms|w|d|h|m|s)")
_UNIT_MS = {
    "ms": 1,
    "s": 1000,
    "m": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 7 * 86_400_000,
}


def parse_duration(text: str) -> int:
    """A positive duration in ms: ISO 8601 (`PT6H`, `P2D`, `P1DT12H`) or short (`90m`, `1h30m`)."""
    raw = text.strip()
    ms: float | None = None
    iso = _ISO_DURATION.match(raw.upper())
    if iso and raw.upper() not in ("P", "PT"):
        parts = {k: float(v) for k, v in iso.groupdict().items() if v is not None}
        if parts:
            ms = (
                parts.get("weeks", 0) * _UNIT_MS["w"]
                + parts.get("days", 0) * _UNIT_MS["d"]
                + parts.get("hours", 0) * _UNIT_MS["h"]
                + parts.get("minutes", 0) * _UNIT_MS["m"]
                + parts.get("seconds", 0) * _UNIT_MS["s"]
            )
    elif raw and _SHORT_PART.sub("", raw.lower()) == "":
        ms = sum(int(n) * _UNIT_MS[unit] for n, unit in _SHORT_PART.findall(raw.lower()))
    if ms is None:
        raise TargetError(
            f"--by-duration {text!r}: use ISO 8601 (PT6H, P2D, P1DT12H) or 90m, 6h, 2d, 1w"
        )
    if ms <= 0:
        raise TargetError(f"--by-duration {text!r} must be longer than zero")
    return int(ms)


@dataclass(frozen=True)
class Scope:
    """`--topic T` or `--topic T:p1,p2`: which partitions the target applies to."""

    topic: str
    partitions: tuple[int, ...] | None = None


def parse_scope(values: list[str] | None) -> list[Scope]:
    """Parse repeated `--topic` values (Kafka topic names cannot contain ':')."""
    scopes = []
    for value in values or []:
        topic, sep, rest = value.partition(":")
        if not topic:
            raise TargetError(f"--topic {value!r}: expected TOPIC or TOPIC:0,1,2")
        if not sep:
            scopes.append(Scope(topic))
            continue
        try:
            partitions = tuple(sorted({int(p) for p in rest.split(",") if p.strip()}))
        except ValueError:
            raise TargetError(f"--topic {value!r}: partitions must be integers") from None
        if not partitions or min(partitions) < 0:
            raise TargetError(f"--topic {value!r}: expected TOPIC:0,1,2")
        scopes.append(Scope(topic, partitions))
    return scopes


def read_offsets_csv(path: Path) -> dict[TP, int]:
    """`topic,partition,offset` lines (Kafka's `--export` format for one group)."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise TargetError(f"--from-file {path}: {exc.strerror or exc}") from exc
    offsets: dict[TP, int] = {}
    for number, row in enumerate(csv.reader(text.splitlines()), start=1):
        cells = [cell.strip() for cell in row]
        if not cells or cells == [""] or cells[0].startswith("#"):
            continue
        if number == 1 and cells == ["topic", "partition", "offset"]:
            continue
        if len(cells) != 3:
            raise TargetError(f"{path}:{number}: expected topic,partition,offset")
        topic, partition, offset = cells
        try:
            key, value = (topic, int(partition)), int(offset)
        except ValueError:
            raise TargetError(f"{path}:{number}: partition and offset must be integers") from None
        if key[1] < 0 or value < 0:
            raise TargetError(f"{path}:{number}: partition and offset must be >= 0")
        if key in offsets:
            raise TargetError(f"{path}:{number}: {topic}:{partition} is listed twice")
        offsets[key] = value
    if not offsets:
        raise TargetError(f"--from-file {path}: no topic,partition,offset lines")
    return offsets
