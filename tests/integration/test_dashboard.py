"""The dashboard in a real headless browser (Debian's chromium, driven by Playwright): it
loads without console errors, its numbers are the API's, and it follows new events.

It writes its screenshot to its tmp_path; `LOGSTREAM_UPDATE_SCREENSHOT=1` also copies it to
docs/dashboard.png (README's). Under CI (CI=true) a missing chromium is a failure, not a
skip: `.ci/run` installs it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from consumers import VIEWS
from tests.integration.processes import Stack, like, post, run_stack, wait_for

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"
# What the page shows, read in one go (a refresh cannot fall between two reads): returns
# null until the rates of the answer shown are all above zero.
SNAPSHOT = """() => {
  const num = (id) => Number(document.getElementById(id).dataset.value);
  const shown = {
    time: Number(document.getElementById('ingest').dataset.time),
    previous: Number(document.getElementById('ingest').dataset.previous),
    views_time: Number(document.getElementById('views').dataset.time),
    accepted: num('ingest-rate'), rejected: num('reject-rate'), errors: num('error-rate'),
    lag_seconds: Object.fromEntries([...document.querySelectorAll('#view-rows tr')].map(
      (tr) => [tr.dataset.view, Number(tr.querySelector('td.lag-seconds').dataset.value)])),
  };
  return shown.accepted > 0 && shown.rejected > 0 && shown.errors > 0 ? shown : null;
}"""
HOT = "https://example.com/m/0"


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed (apt-get install chromium); CI must run this")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return found


@pytest.fixture
def stack(kafka_bootstrap: str, admin: Any, unique_name: Any, tmp_path: Path) -> Iterator[Stack]:
    yield from run_stack(kafka_bootstrap, admin, unique_name, tmp_path, workers=1)


def caught_up(stack: Stack, accepted: int) -> bool:
    status = httpx.get(f"{stack.base}/v1/status").json()
    return status["ingest"]["events_accepted"] == accepted and all(
        v["lag_offsets"] == 0 for v in status["views"]
    )


def rate(now: dict[str, Any], before: dict[str, Any], key: str) -> float:
    return (now["ingest"][key] - before["ingest"][key]) / (
        (now["time_ms"] - before["time_ms"]) / 1000
    )


def test_dashboard_shows_the_api_numbers_and_follows_new_events(stack: Stack, tmp_path: Path):
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    sent = 0
    for i in range(24):  # the hot URL gets 1 in 3 plus the rest spread over 6 others
        body = like(0) if i % 3 == 0 else like(i)
        assert post(stack.base, "/v1/events/likes", body).status_code == 202
        sent += 1
    wait_for("views caught up", lambda: caught_up(stack, sent))

    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 640})
            page.on(
                "console",
                lambda m: (
                    problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None
                ),
            )
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            answers: dict[int, dict[str, Any]] = {}  # every /v1/status the page got, by time

            def record(route: Any) -> None:
                response = route.fetch()
                body = response.json()
                answers[body["time_ms"]] = body
                route.fulfill(response=response)

            page.route("**/v1/status", record)
            page.goto(f"{stack.base}/dashboard?refresh=500")
            page.wait_for_function(
                f"document.querySelectorAll('#view-rows tr').length === {len(VIEWS)} "
                "&& document.querySelector('#window-chart svg') !== null",
                timeout=30_000,
            )
            # Two refreshes in, the rates exist too; no event arrives meanwhile.
            first = page.get_attribute("#updated", "data-time")
            page.wait_for_function(
                f"document.querySelector('#updated').dataset.time !== '{first}'", timeout=30_000
            )

            status = httpx.get(f"{stack.base}/v1/status").json()
            assert page.get_attribute("#ingest-accepted-total", "data-value") == str(sent)
            assert status["ingest"]["events_accepted"] == sent
            for view in status["views"]:
                row = f"#view-rows tr[data-view='{view['view']}']"
                for cls in ("lag-offsets", "applied", "dead-letters"):
                    key = cls.replace("-", "_")
                    shown = page.get_attribute(f"{row} td.{cls}", "data-value")
                    assert shown == str(view[key]), (view["view"], cls, shown, view[key])
                assert page.get_attribute(f"{row} td.version", "data-value") == view["version"]
            top = httpx.get(f"{stack.base}/v1/views/likes-by-url/top", params={"limit": 10})
            items = top.json()["items"]
            shown_top = page.eval_on_selector_all(
                "#top-urls li", "lis => lis.map(li => [li.dataset.url, Number(li.dataset.count)])"
            )
            assert shown_top == [[item["url"], item["count"]] for item in items]
            assert items[0]["url"] == HOT
            assert page.get_attribute("#window-chart", "data-url") == HOT
            assert page.get_attribute("#window-chart", "data-total") == str(items[0]["count"])

            # New events, rejected events and 5xx answers (a read-your-writes wait that runs
            # out: 504): the page follows without a reload, and its rates are the ones the two
            # /v1/status answers it used give.
            more = 6
            for _ in range(more):
                assert post(stack.base, "/v1/events/likes", like(0)).status_code == 202
                assert post(stack.base, "/v1/events/likes", {"url": "x"}).status_code == 422
                timeout = httpx.get(
                    f"{stack.base}/v1/views/likes-by-url",
                    params={"url": HOT, "wait_for": "0:1000000", "wait_ms": "1"},
                )
                assert timeout.status_code == 504
            sent += more
            shown = page.wait_for_function(SNAPSHOT, timeout=30_000).json_value()
            now, before = answers[shown["time"]], answers[shown["previous"]]
            assert shown["accepted"] == pytest.approx(rate(now, before, "events_accepted"))
            assert shown["rejected"] == pytest.approx(rate(now, before, "events_rejected"))
            errors = 100 * rate(now, before, "errors") / rate(now, before, "requests")
            assert shown["errors"] == pytest.approx(errors)
            assert shown["views_time"] == shown["time"]
            assert shown["lag_seconds"] == {v["view"]: v["lag_seconds"] for v in now["views"]}
            page.wait_for_function(
                f"document.querySelector('#ingest-accepted-total').dataset.value === '{sent}' "
                "&& document.querySelector('#window-chart').dataset.total === "
                f"'{items[0]['count'] + more}'",
                timeout=30_000,
            )
            wait_for("views caught up again", lambda: caught_up(stack, sent))
            page.wait_for_function(
                "[...document.querySelectorAll('#view-rows td.lag-offsets')]"
                ".every(td => td.dataset.value === '0')",
                timeout=30_000,
            )
            picture = tmp_path / "dashboard.png"
            page.screenshot(path=str(picture), full_page=True)
            if os.environ.get("LOGSTREAM_UPDATE_SCREENSHOT") == "1":
                shutil.copyfile(picture, SCREENSHOT)
        finally:
            browser.close()
    assert not problems, problems
