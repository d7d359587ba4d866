"""The dashboard works with API keys on: its page is public (static, no data), it asks once
for a key, keeps it in the tab's sessionStorage and sends it with its fetches; without a
key it shows nothing of the data."""

from __future__ import annotations

import httpx

from consumers import VIEWS
from tests.integration.test_dashboard import chromium_path


def test_the_dashboard_asks_for_a_key_once_and_uses_it(hostile):
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    assert httpx.get(hostile.base + "/dashboard").status_code == 200  # no key needed
    assert httpx.get(hostile.base + "/v1/status").status_code == 401  # the data does
    prompts: list[str] = []

    def answer(dialog) -> None:
        prompts.append(dialog.message)
        dialog.accept(hostile.reader_key)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page()
            page.on("dialog", answer)
            page.goto(f"{hostile.base}/dashboard?refresh=300")
            page.wait_for_function(
                f"document.querySelectorAll('#view-rows tr').length === {len(VIEWS)}",
                timeout=30_000,
            )
            first = page.get_attribute("#updated", "data-time")
            page.wait_for_function(  # a later refresh uses the kept key, asks nothing
                f"document.querySelector('#updated').dataset.time !== '{first}'", timeout=30_000
            )
            assert page.evaluate("sessionStorage.getItem('logstream.api_key')") == (
                hostile.reader_key
            )
            assert hostile.reader_key not in page.url
        finally:
            browser.close()
    assert len(prompts) == 1, prompts
