"""What a view is: a name (= consumer group id), the topics it reads, and how one event
becomes counter keys. It never polls, commits or handles rebalances: the runtime does that.

A view is a declaration, written in any importable module (docs/views.md):

    page_views = View(name="page-views", topics=("page_views",), bucket_ms=HOUR_MS,
                      key="url", aggregates=(sum_of("seconds"),), totals=True)

`key` is an event field (one series, named like the field unless `series` says otherwise)
or a callable returning (series, key) pairs, for several keys or series per event. The
declaration is checked when it is built, so a mistake fails at import with a message
naming the view, not at the first event. Subclassing `View` and overriding `keys` (class
attributes instead of arguments) still works, for views that need code of their own.

A view's state is event-time-bucketed counters (see `logstream.stores.base`), so a backfill
can drop and recompute any time range from `bucket_ms` boundaries on.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from logstream.aggregates import Aggregate, Kind

__all__ = [
    "DAY_MS",
    "HOUR_MS",
    "MINUTE_MS",
    "ON_ERROR_POLICIES",
    "BucketKeyFunction",
    "KeyFunction",
    "OnError",
    "View",
    "ViewDeclarationError",
    "floor_to",
]

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

OnError = Literal["stop", "dead_letter"]
ON_ERROR_POLICIES: tuple[str, ...] = ("stop", "dead_letter")

KeyFunction = Callable[[Mapping[str, Any]], Iterable[tuple[str, str]]]
"""event -> (series, key) pairs; the runtime adds the event's bucket."""
BucketKeyFunction = Callable[[Mapping[str, Any], int], Iterable[tuple[str, str, int]]]
"""(event, event_ms) -> (series, key, bucket_start_ms): the runtime's own contract, for a
view that computes buckets itself (one call less per event than a key function)."""

# A view name is a consumer group id, a store namespace (`name@version`) and a URL segment.
_VIEW_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# Answer fields and query parameters of the query API: the key's name may not shadow them.
_ANSWER_FIELDS = frozenset(
    {
        *("count", "first_at", "last_at", "freshness", "series", "since", "until", "items"),
        *("windows", "by", "limit", "size", "size_ms", "cursor", "next_cursor"),
        *("wait_for", "wait_ms", "granularity_ms"),
    }
)
# An aggregate answers as a field beside these (and windows' start/end): it may not take them.
_AGGREGATE_TAKEN = _ANSWER_FIELDS | {"start", "end", "key"}
RANKABLE_KINDS = frozenset({Kind.SUM, Kind.MIN, Kind.MAX, Kind.DISTINCT})


class ViewDeclarationError(ValueError):
    """A view declaration that cannot work; the message names the view and the argument."""


def floor_to(ts_ms: int, size_ms: int) -> int:
    """The start of the epoch-aligned bucket of `size_ms` holding `ts_ms` (UTC)."""
    return ts_ms - ts_ms % size_ms


class View:
    """A view declaration; instances are stateless and shared by the runtime and the API.

    The runtime reads `name`, `topics`, `bucket_ms`, `totals_series`, `time_index`,
    `event_id_field`, `event_time_field`, `aggregates`, `on_error` and calls `keys`; the
    query API also reads `series` and `key_name`.
    """

    name: str
    topics: tuple[str, ...]
    bucket_ms: int
    totals_series: frozenset[str] = frozenset()
    # Keep a (series, bucket) index: only a view that ranks keys over an event-time range
    # (`top` with since/until) needs it, and every other view writes twice as fast without.
    time_index: bool = False
    # The record field that identifies an event: a later copy with the same value within
    # the deduplication horizon is not applied (see logstream.runtime.dedupe). None: off.
    event_id_field: str | None = "event_id"
    # The record field holding the event time, read only for a record written without a
    # timestamp (an event at time 0: librdkafka cannot write 0, see kafka.timestamps).
    event_time_field: str | None = "occurred_at"
    # What each (series, key, bucket) keeps besides count, first and last event time.
    aggregates: tuple[Aggregate, ...] = ()
    # An exception raised by the view's code: "stop" the consumer at that offset (nothing
    # after the last good batch is committed), or "dead_letter" the event and go on.
    on_error: OnError = "stop"
    # The series the keys land in (the query API's `series` parameter) and the name of the
    # key in answers and query strings.
    series: tuple[str, ...] = ()
    key_name: str = "key"
    description: str = ""

    def __init__(
        self,
        name: str | None = None,
        topics: Iterable[str] | str | None = None,
        bucket_ms: int | None = None,
        *,
        key: str | KeyFunction | None = None,
        keys: BucketKeyFunction | None = None,
        series: Iterable[str] | str | None = None,
        key_name: str | None = None,
        aggregates: Iterable[Aggregate] = (),
        totals: bool | Iterable[str] = False,
        time_index: bool | None = None,
        on_error: OnError = "stop",
        event_id_field: str | None = "event_id",
        event_time_field: str | None = "occurred_at",
        description: str = "",
    ) -> None:
        """Declare a view; a subclass that sets class attributes calls this with nothing."""
        self._key_field: str | None = None
        self._key_function: KeyFunction | None = None
        self._bucket_keys: BucketKeyFunction | None = None
        # Where the declaration was written, for error messages (two views, one name).
        self._declared_in: str = sys._getframe(1).f_globals.get("__name__", "?")
        if name is None and topics is None and bucket_ms is None and key is keys is None:
            self._check_subclass()
            return
        self.name = _check_name(name)
        where = f"view {self.name!r}"
        self.topics = _check_topics(where, topics)
        self.bucket_ms = _check_bucket(where, bucket_ms)
        declared_series = _check_series(where, series)
        if keys is not None:
            if key is not None or not callable(keys) or not declared_series:
                raise ViewDeclarationError(
                    f"{where}: `keys` (event, event_ms) -> [(series, key, bucket_start_ms)] "
                    "is a function, instead of `key`, and needs `series`"
                )
            self._bucket_keys = keys
            self.series = declared_series
            self.key_name = key_name or "key"
        elif isinstance(key, str) and key:
            if len(declared_series) > 1:
                raise ViewDeclarationError(f"{where}: a field key has one series, not several")
            self._key_field = key
            self.series = declared_series or (key,)
            self.key_name = key_name or key
        elif callable(key):
            if not declared_series:
                raise ViewDeclarationError(
                    f"{where}: a key function needs `series`, the series names it returns"
                )
            self._key_function = key
            self.series = declared_series
            self.key_name = key_name or "key"
        elif type(self).keys is View.keys:
            raise ViewDeclarationError(
                f"{where}: `key` must be an event field name or a function "
                f"event -> [(series, key), ...], not {key!r}"
            )
        else:  # a subclass computes keys itself
            self.series = declared_series
            self.key_name = key_name or "key"
        if not _IDENT.match(self.key_name) or self.key_name in _ANSWER_FIELDS:
            raise ViewDeclarationError(
                f"{where}: key_name {self.key_name!r} must be an identifier and not one of "
                f"{sorted(_ANSWER_FIELDS)} (name the key in answers with key_name=...)"
            )
        self.aggregates = _check_aggregates(where, aggregates, self.key_name)
        if totals is True:
            self.totals_series = frozenset(self.series)
        elif totals is False:
            self.totals_series = frozenset()
        else:
            self.totals_series = frozenset(_check_series(where, totals))
            unknown = self.totals_series - set(self.series)
            if unknown:
                raise ViewDeclarationError(
                    f"{where}: totals names series {sorted(unknown)} the view does not have"
                )
        self.time_index = bool(self.totals_series) if time_index is None else bool(time_index)
        if on_error not in ON_ERROR_POLICIES:
            raise ViewDeclarationError(
                f"{where}: on_error must be one of {', '.join(ON_ERROR_POLICIES)}, not {on_error!r}"
            )
        self.on_error = on_error
        self.event_id_field = event_id_field or None
        self.event_time_field = event_time_field or None
        self.description = description
        if self._bucket_keys is not None:  # the runtime calls it as it is
            self.keys = self._bucket_keys  # type: ignore[method-assign,assignment]
        elif type(self).keys is View.keys:  # the hot path: one closure, no attribute lookups
            self.keys = _compiled_keys(  # type: ignore[method-assign,assignment]
                self.series[0], self._key_field, self._key_function, self.bucket_ms
            )

    def _check_subclass(self) -> None:
        """A subclass declaring class attributes must still name, place and key itself."""
        cls = type(self)
        if cls is View:
            raise ViewDeclarationError("View(...) needs name, topics, bucket_ms and key")
        if type(self).keys is View.keys:
            raise ViewDeclarationError(f"{cls.__name__}: a View subclass must define keys()")
        for attribute in ("name", "topics", "bucket_ms"):
            if not hasattr(self, attribute):
                raise ViewDeclarationError(f"{cls.__name__}: missing class attribute {attribute}")

    def keys(self, event: Mapping[str, Any], event_ms: int) -> Iterable[tuple[str, str, int]]:
        """The (series, key, bucket_start_ms) counters one event adds 1 to.

        A declaration replaces this with `_compiled_keys` (same answers, faster); a
        subclass overrides it."""
        compiled = _compiled_keys(
            self.series[0], self._key_field, self._key_function, self.bucket_ms
        )
        return compiled(event, event_ms)

    def namespace(self, version: str | None = None) -> str:
        """Store namespace: the name, or `name@version` for a side-by-side rebuild."""
        return self.name if not version else f"{self.name}@{version}"

    def aggregate(self, name: str) -> Aggregate | None:
        """The declared aggregate called `name`, if any."""
        return next((a for a in self.aggregates if a.name == name), None)

    def rankable(self) -> tuple[str, ...]:
        """What `top` can rank by: `count` and every sum/min/max/distinct aggregate."""
        return ("count", *(a.name for a in self.aggregates if a.kind in RANKABLE_KINDS))

    def __repr__(self) -> str:
        return f"View(name={self.name!r}, topics={self.topics!r}, bucket_ms={self.bucket_ms})"


def _compiled_keys(
    series: str, field: str | None, function: KeyFunction | None, bucket_ms: int
) -> Callable[[Mapping[str, Any], int], Iterable[tuple[str, str, int]]]:
    """`keys` of a declaration, closed over its constants (it runs once per event).

    A field key whose value is null adds nothing (the event is about no key); other values
    are used as text."""
    if field is not None:

        def field_keys(event: Mapping[str, Any], event_ms: int) -> tuple[tuple[str, str, int], ...]:
            value = event[field]
            if value is None:
                return ()
            if value.__class__ is not str:
                value = str(value)
            return ((series, value, event_ms - event_ms % bucket_ms),)

        return field_keys
    assert function is not None  # __init__ guarantees a field or a function

    def function_keys(event: Mapping[str, Any], event_ms: int) -> list[tuple[str, str, int]]:
        bucket = event_ms - event_ms % bucket_ms
        return [(name, key, bucket) for name, key in function(event)]

    return function_keys


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not _VIEW_NAME.match(name):
        raise ViewDeclarationError(
            f"view name {name!r} must match {_VIEW_NAME.pattern} "
            "(it is the consumer group id and a URL segment)"
        )
    return name


def _check_topics(where: str, topics: object) -> tuple[str, ...]:
    if isinstance(topics, str):
        topics = (topics,)
    if not isinstance(topics, Iterable):
        raise ViewDeclarationError(f"{where}: topics must be a tuple of topic names")
    names = tuple(topics)
    if not names or not all(isinstance(t, str) and t for t in names):
        raise ViewDeclarationError(f"{where}: topics must be non-empty topic names, not {names!r}")
    return names


def _check_bucket(where: str, bucket_ms: object) -> int:
    if isinstance(bucket_ms, bool) or not isinstance(bucket_ms, int) or bucket_ms <= 0:
        raise ViewDeclarationError(
            f"{where}: bucket_ms must be a positive whole number of ms (e.g. HOUR_MS), "
            f"not {bucket_ms!r}"
        )
    return bucket_ms


def _check_series(where: str, series: object) -> tuple[str, ...]:
    if series is None:
        return ()
    if isinstance(series, str):
        series = (series,)
    if not isinstance(series, Iterable):
        raise ViewDeclarationError(f"{where}: series must be series names")
    names = tuple(series)
    if not all(isinstance(s, str) and s for s in names) or len(set(names)) != len(names):
        raise ViewDeclarationError(f"{where}: series must be distinct non-empty names: {names!r}")
    return names


def _check_aggregates(where: str, aggregates: object, key_name: str) -> tuple[Aggregate, ...]:
    if isinstance(aggregates, Aggregate):
        aggregates = (aggregates,)
    if not isinstance(aggregates, Iterable):
        raise ViewDeclarationError(f"{where}: aggregates must be a tuple of sum_of(...), ...")
    found = tuple(aggregates)
    for item in found:
        if not isinstance(item, Aggregate):
            raise ViewDeclarationError(
                f"{where}: {item!r} is not an aggregate (use sum_of, min_of, max_of, latest, "
                "distinct from logstream.aggregates)"
            )
    names = [a.name for a in found]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ViewDeclarationError(f"{where}: aggregate name(s) {twice} declared twice")
    if key_name in names:
        raise ViewDeclarationError(f"{where}: aggregate name {key_name!r} is the key's name")
    taken = sorted(set(names) & _AGGREGATE_TAKEN)
    if taken:
        raise ViewDeclarationError(
            f"{where}: aggregate name(s) {taken} would overwrite an answer field or query "
            f"parameter of the view's routes (none of {sorted(_AGGREGATE_TAKEN)}): "
            'name it otherwise, e.g. sum_of("seconds", name="seconds_total")'
        )
    return found
