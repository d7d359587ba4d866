"""The view registry: built-ins, entry points and module:attribute references, with one
clear error for each way a reference can be wrong."""

from __future__ import annotations

import pytest

from logstream.errors import LogstreamError
from logstream.registry import (
    UnknownViewError,
    ViewRegistryError,
    load_reference,
    registered_views,
    resolve_view,
)
from logstream.settings import Settings
from tests.view_package import forget_package, write_view_package

SOURCE = """
from logstream.aggregates import sum_of
from logstream.view import HOUR_MS, View

page_views = View(name="{name}", topics=("page_views",), bucket_ms=HOUR_MS, key="url",
                  aggregates=(sum_of("seconds"),), totals=True)
twin = View(name="likes-by-url", topics=("likes",), bucket_ms=HOUR_MS, key="url")
not_a_view = 42
both = [page_views]
"""


@pytest.fixture
def package(tmp_path, monkeypatch, unique_name):
    """A user package on sys.path (with an entry point), removed afterwards."""
    name = unique_name("userviews").replace("-", "_")
    view_name = f"pv-{name[-8:]}"
    write_view_package(
        tmp_path,
        name,
        SOURCE.format(name=view_name),
        entry_points={view_name: f"{name}.views:page_views"},
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name, view_name
    forget_package(name)


def test_builtins_only_by_default():
    assert list(registered_views(Settings())) == [
        "likes-by-url",
        "likes-by-user",
        "likes-by-window",
    ]


def test_a_view_by_entry_point_and_by_reference_is_the_same_view(package):
    module, view_name = package
    views = registered_views(Settings())
    assert view_name in views  # found by its entry point
    by_reference = resolve_view(f"{module}.views:page_views", Settings())
    assert by_reference is views[view_name]
    assert resolve_view(view_name, Settings()) is by_reference
    # Named in LOGSTREAM_VIEWS as well: still one view, not two with one name.
    setting = Settings(views=f" {module}.views:page_views , {module}.views:both")
    assert registered_views(setting)[view_name] is by_reference


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("noattribute", "must be module:attribute"),
        ("{module}.nothere:x", "cannot import '{module}.nothere'"),
        ("{module}.views:missing", "has no attribute 'missing'"),
        ("{module}.views:not_a_view", "is a int, not a logstream View"),
    ],
)
def test_bad_references_say_what_is_wrong(package, reference, message):
    module, _ = package
    with pytest.raises(ViewRegistryError) as caught:
        load_reference(reference.format(module=module))
    assert message.format(module=module) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_two_views_with_one_name_are_refused(package):
    module, _ = package
    with pytest.raises(ViewRegistryError, match="two views are named 'likes-by-url'"):
        registered_views(Settings(views=f"{module}.views:twin"))
    with pytest.raises(ViewRegistryError, match="already has that name"):
        resolve_view(f"{module}.views:twin", Settings())


def test_a_declaration_error_in_a_user_module_names_the_reference(tmp_path, monkeypatch):
    write_view_package(
        tmp_path, "brokenviews", 'from logstream.view import View\nv = View(name="x")\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(ViewRegistryError, match=r"'brokenviews.views:v': view 'x': topics"):
            load_reference("brokenviews.views:v")
    finally:
        forget_package("brokenviews")


def test_unknown_names_list_the_known_views():
    with pytest.raises(UnknownViewError) as caught:
        resolve_view("nope", Settings())
    assert "known views: likes-by-url, likes-by-user, likes-by-window" in str(caught.value)
    assert isinstance(caught.value, LogstreamError)


def test_the_stack_runs_one_consumer_per_registered_view(package):
    """`make up` / `logstream stack up` start a consumer for every view the settings see."""
    from logstream.cli.stack import _services

    module, view_name = package
    names = {
        spec.name: spec.argv[3:6] for spec in _services(Settings(views=f"{module}.views:both"))
    }  # argv: python -m logstream consume NAME --no-progress [--metrics-port P]
    assert names[f"consume-{view_name}"] == ["consume", view_name, "--no-progress"]
    assert {"ingest", "consume-likes-by-url", "consume-likes-by-window"} <= set(names)
