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
    view_registry,
)
from logstream.settings import Settings
from tests.view_package import forget_package, write_view_package

SOURCE = """
from logstream.aggregates import sum_of
from logstream.view import HOUR_MS, View

page_views = View(name="{name}", topics=("page_views",), bucket_ms=HOUR_MS, key="url",
                  aggregates=(sum_of("seconds"),), totals=True)
twin = View(name="likes-by-url", topics=("likes",), bucket_ms=HOUR_MS, key="url")
look_alike = View(name="Likes.By_URL", topics=("likes",), bucket_ms=HOUR_MS, key="url")
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


@pytest.fixture
def plain_package(tmp_path, monkeypatch, unique_name):
    """A user package on sys.path with no entry point: only a reference registers it."""
    name = unique_name("plainviews").replace("-", "_")
    view_name = f"pv-{name[-8:]}"
    write_view_package(tmp_path, name, SOURCE.format(name=view_name))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name, view_name
    forget_package(name)


def test_a_view_by_entry_point_and_by_reference_is_the_same_view(package):
    module, view_name = package
    views = registered_views(Settings())
    assert view_name in views  # found by its entry point
    by_reference = resolve_view(f"{module}.views:page_views", Settings())
    assert by_reference is views[view_name]
    assert resolve_view(view_name, Settings()) is by_reference


def test_logstream_views_alone_registers_a_view(plain_package):
    """No entry point: the view exists only once LOGSTREAM_VIEWS names it."""
    module, view_name = plain_package
    assert view_name not in registered_views(Settings())
    with pytest.raises(UnknownViewError):
        resolve_view(view_name, Settings())
    # Named twice (the view and a list holding it): still one view, not two with one name.
    setting = Settings(views=f" {module}.views:page_views , {module}.views:both")
    views = registered_views(setting)
    assert views[view_name] is resolve_view(view_name, setting)
    assert views[view_name] is resolve_view(f"{module}.views:page_views", setting)


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


def test_two_views_with_one_name_are_refused(plain_package):
    module, _ = plain_package
    for attribute, message in [
        ("twin", "two views are named 'likes_by_url'"),
        ("look_alike", "two views share the store name 'likes_by_url'"),
    ]:
        reference = f"{module}.views:{attribute}"
        registry = view_registry(Settings(views=reference))
        # The built-in keeps its name and store; the newcomer is refused, named.
        assert registry.views["likes-by-url"] is resolve_view("likes-by-url", Settings())
        assert "Likes.By_URL" not in registry.views
        [broken] = registry.broken
        assert message in broken.error and reference in broken.origin
        assert "declared in consumers.likes_by_url" in broken.error
        with pytest.raises(ViewRegistryError, match=message):
            resolve_view(reference, Settings())
    with pytest.raises(ViewRegistryError, match="share the store name"):
        resolve_view("Likes.By_URL", Settings(views=f"{module}.views:look_alike"))


BROKEN_MODULES = {
    "ValueError": 'raise ValueError("bad config")\n',
    "TypeError": "x = 1 + 'a'\n",
    "SyntaxError": "def broken(:\n",
    "NameError": "v = undefined_name\n",
}


@pytest.mark.parametrize("error", sorted(BROKEN_MODULES))
def test_a_broken_user_module_is_one_error_and_the_rest_runs(
    tmp_path, monkeypatch, unique_name, error
):
    """Any exception while importing a user module: one line naming the reference (and the
    entry point); built-ins and other views stay registered; only naming it fails."""
    name = unique_name("brokenmod").replace("-", "_")
    write_view_package(
        tmp_path, name, BROKEN_MODULES[error], entry_points={"broken-ep": f"{name}.views:v"}
    )
    good = unique_name("goodmod").replace("-", "_")
    write_view_package(tmp_path, good, SOURCE.format(name=f"pv-{good[-8:]}"))
    monkeypatch.syspath_prepend(str(tmp_path))
    reference = f"{name}.views:v"
    try:
        with pytest.raises(ViewRegistryError) as caught:
            load_reference(reference)
        assert f"{reference!r}" in str(caught.value) and error in str(caught.value)
        assert "\n" not in str(caught.value)
        settings = Settings(views=f"{reference},{good}.views:page_views")
        registry = view_registry(settings)
        assert {"likes-by-url", "likes-by-user", "likes-by-window", f"pv-{good[-8:]}"} <= set(
            registry.views
        )
        origins = sorted(b.origin for b in registry.broken)
        assert origins == [
            f"LOGSTREAM_VIEWS reference {reference!r}",
            f"entry point 'broken-ep' ({reference}) of group logstream.views",
        ]
        assert all(error in b.error for b in registry.broken)
        assert registered_views(settings) == registry.views
        assert resolve_view("likes-by-url", settings).name == "likes-by-url"
        with pytest.raises(ViewRegistryError, match="entry point 'broken-ep'"):
            resolve_view("broken-ep", settings)
        with pytest.raises(ViewRegistryError, match=error):
            resolve_view(reference, settings)
        # The stack starts the others; the query API is built and lists the broken ones.
        from ingest_api.app import create_app
        from logstream.cli.stack import _services

        services = {spec.name for spec in _services(settings)}
        assert {"ingest", "consume-likes-by-url", f"consume-pv-{good[-8:]}"} <= services
        app = create_app(settings)
        assert [b.origin for b in app.state.broken_views] == [b.origin for b in registry.broken]
    finally:
        forget_package(name)
        forget_package(good)


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


def test_the_stack_runs_one_consumer_per_registered_view(plain_package):
    """`make up` / `logstream stack up` start a consumer for every view the settings see."""
    from logstream.cli.stack import _services

    module, view_name = plain_package
    assert f"consume-{view_name}" not in {spec.name for spec in _services(Settings())}
    names = {
        spec.name: spec.argv[3:6] for spec in _services(Settings(views=f"{module}.views:both"))
    }  # argv: python -m logstream consume NAME --no-progress [--metrics-port P]
    assert names[f"consume-{view_name}"] == ["consume", view_name, "--no-progress"]
    assert {"ingest", "consume-likes-by-url", "consume-likes-by-window"} <= set(names)
