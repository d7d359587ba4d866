"""View declarations: built-ins keep their exact counters, mistakes fail at import with a
message naming the view and the argument, and a subclass with its own keys still works."""

from __future__ import annotations

import random

import pytest

from consumers import VIEWS
from logstream.aggregates import distinct, latest, sum_of
from logstream.view import DAY_MS, HOUR_MS, MINUTE_MS, View, ViewDeclarationError


def _events(n: int = 500) -> list[tuple[dict[str, object], int]]:
    rng = random.Random(5)
    return [
        (
            {"url": f"https://e/{rng.randrange(20)}", "user_id": f"u{rng.randrange(50)}"},
            rng.randrange(0, 10 * DAY_MS),
        )
        for _ in range(n)
    ]


def test_builtins_make_the_counters_they_always_made():
    """Against the counters written out by hand (the pre-declaration classes' rules)."""
    for event, ts in _events():
        hour, minute = ts - ts % HOUR_MS, ts - ts % MINUTE_MS
        assert list(VIEWS["likes-by-url"].keys(event, ts)) == [("url", event["url"], hour)]
        assert list(VIEWS["likes-by-user"].keys(event, ts)) == [("user", event["user_id"], hour)]
        assert list(VIEWS["likes-by-window"].keys(event, ts)) == [
            ("w", event["url"], minute),
            ("w", "", minute),
        ]
    url, user, window = (VIEWS[n] for n in ("likes-by-url", "likes-by-user", "likes-by-window"))
    assert (url.totals_series, url.time_index, url.bucket_ms) == ({"url"}, True, HOUR_MS)
    assert (user.totals_series, user.time_index, user.bucket_ms) == (set(), False, HOUR_MS)
    assert (window.totals_series, window.time_index, window.bucket_ms) == (set(), False, MINUTE_MS)
    assert [v.key_name for v in (url, user, window)] == ["url", "user_id", "url"]
    assert all(v.on_error == "stop" and v.aggregates == () for v in VIEWS.values())


def test_a_field_key_declaration():
    view = View(
        name="page-views",
        topics=("page_views",),
        bucket_ms=HOUR_MS,
        key="url",
        aggregates=(distinct("visitor_id", name="visitors"), sum_of("seconds"), latest("ref")),
        totals=True,
    )
    assert (view.series, view.key_name, view.totals_series, view.time_index) == (
        ("url",),
        "url",
        frozenset({"url"}),
        True,
    )
    assert list(view.keys({"url": "/a"}, HOUR_MS + 5)) == [("url", "/a", HOUR_MS)]
    assert list(view.keys({"url": 42}, 5)) == [("url", "42", 0)]  # keys are text
    assert list(view.keys({"url": None}, 5)) == []  # a null key: about no key
    with pytest.raises(KeyError):
        view.keys({}, 5)  # a missing field is a bug in the view: the runtime stops on it
    assert view.rankable() == ("count", "visitors", "seconds_sum")
    assert view.aggregate("visitors") is view.aggregates[0]


def test_a_key_function_declares_its_series():
    view = View(
        name="by-pair",
        topics="t",
        bucket_ms=DAY_MS,
        key=lambda e: [("a", e["a"]), ("b", e["b"])],
        series=("a", "b"),
        totals=("b",),
        on_error="dead_letter",
    )
    assert view.topics == ("t",)
    assert list(view.keys({"a": "x", "b": "y"}, DAY_MS + 1)) == [
        ("a", "x", DAY_MS),
        ("b", "y", DAY_MS),
    ]
    assert (view.totals_series, view.on_error, view.key_name) == ({"b"}, "dead_letter", "key")


def test_a_bucket_keys_function_is_called_as_it_is():
    def both(event, event_ms):
        return [("a", event["a"], event_ms - event_ms % 10), ("b", "", 0)]

    view = View(name="raw", topics="t", bucket_ms=10, keys=both, series=("a", "b"))
    assert view.keys is both  # no wrapper on the hot path
    assert view.keys({"a": "x"}, 25) == [("a", "x", 20), ("b", "", 0)]
    for wrong in ({"key": "a"}, {"series": None}):
        with pytest.raises(ViewDeclarationError, match=r"`keys` .* needs `series`"):
            View(
                **{
                    "name": "raw",
                    "topics": "t",
                    "bucket_ms": 10,
                    "keys": both,
                    "series": "a",
                    **wrong,
                }
            )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "has space"}, "view name 'has space' must match"),
        ({"name": "a@v2"}, "view name 'a@v2'"),
        ({"topics": ()}, "topics must be non-empty"),
        ({"topics": 5}, "topics must be a tuple"),
        ({"bucket_ms": 0}, "bucket_ms must be a positive"),
        ({"bucket_ms": 1.5}, "bucket_ms must be a positive"),
        ({"key": None}, "`key` must be an event field name or a function"),
        ({"key": lambda e: []}, "a key function needs `series`"),
        ({"series": ("a", "b")}, "a field key has one series"),
        ({"on_error": "ignore"}, "on_error must be one of stop, dead_letter"),
        ({"aggregates": (sum_of("x"), sum_of("x"))}, "['x_sum'] declared twice"),
        ({"aggregates": (sum_of("x", name="url"),)}, "'url' is the key's name"),
        ({"aggregates": ("x",)}, "'x' is not an aggregate"),
        *[
            ({"aggregates": (sum_of("x", name=taken),)}, f"['{taken}'] would overwrite an answer")
            for taken in ("series", "since", "until", "start", "end", "by", "items", "limit")
        ],
        ({"aggregates": (sum_of("x", name="granularity_ms"),)}, "would overwrite an answer"),
        ({"aggregates": (latest("x", name="size_ms"),)}, "would overwrite an answer"),
        ({"aggregates": (latest("x", name="next_cursor"),)}, "would overwrite an answer"),
        ({"totals": ("nope",)}, "totals names series ['nope']"),
        ({"key_name": "count"}, "key_name 'count' must be an identifier"),
        ({"key": "limit"}, "key_name 'limit' must be an identifier"),
    ],
)
def test_mistakes_fail_at_declaration_naming_the_argument(kwargs, message):
    args = {"name": "v", "topics": ("t",), "bucket_ms": HOUR_MS, "key": "url", **kwargs}
    with pytest.raises(ViewDeclarationError) as caught:
        View(**args)
    assert message in str(caught.value)
    if "name" not in kwargs:
        assert "view 'v'" in str(caught.value)


def test_a_subclass_with_its_own_keys_still_works():
    class Tiny(View):
        name = "tiny"
        topics = ("t",)
        bucket_ms = 10

        def keys(self, event, event_ms):
            return [("n", "", event_ms - event_ms % 10)]

    assert Tiny().keys({}, 25) == [("n", "", 20)]
    assert (Tiny().on_error, Tiny().aggregates, Tiny().namespace("v2")) == ("stop", (), "tiny@v2")

    class NoKeys(View):
        name, topics, bucket_ms = "nokeys", ("t",), 10

    with pytest.raises(ViewDeclarationError, match="must define keys"):
        NoKeys()
