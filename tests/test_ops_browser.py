"""The ops page in headless Chromium (Debian's ``chromium``, driven by Playwright) on demo data.

Skipped locally when Chromium or Playwright is missing; under ``CI=true`` their absence fails.
The screenshot goes to the test's tmp_path, and to ``$NOTIFIER_SCREENSHOT_DIR/ops.png`` if set.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from notifier.serving import RunningServer, serve_in_thread
from tests.test_ops import TOKEN, DemoRun, demo_database, ops_app

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = os.environ.get("NOTIFIER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _missing_tools() -> str | None:
    if shutil.which(CHROMIUM) is None:
        return f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401, PLC0415 - optional test dependency
    except ImportError:
        return "Playwright for Python is not installed (pip install playwright)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    missing = _missing_tools()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the browser test: {missing}")
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - optional dependency

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    # One backend is enough here: the page's queries run on both in test_ops.py.
    with demo_database("sqlite", tmp_path_factory.mktemp("demo")) as run:
        yield run


@pytest.fixture(scope="module")
def server(demo: DemoRun) -> Iterator[RunningServer]:
    with serve_in_thread(ops_app(demo.runtime)) as running:
        yield running


def _page(browser: Browser, **context: Any) -> Page:
    return browser.new_context(viewport={"width": 1360, "height": 900}, **context).new_page()


def test_browser_is_challenged_for_basic_auth_and_the_token_opens_the_page(
    browser: Browser, server: RunningServer
) -> None:
    """No or wrong credentials: Chromium's auth challenge fails; the token as password loads."""
    for credentials in (None, {"username": "ops", "password": "wrong-password"}):
        refused = _page(browser, http_credentials=credentials)
        outcome = _navigate(refused, server.url + "/ops")
        # Chromium either gives up on a challenge it cannot answer or shows the 401 itself.
        assert "ERR_INVALID_AUTH_CREDENTIALS" in outcome or outcome == "HTTP 401 ops token required"
        refused.context.close()
    signed_in = _page(browser, http_credentials={"username": "ops", "password": TOKEN})
    response = signed_in.goto(server.url + "/ops")
    assert response is not None
    assert response.status == 200
    assert signed_in.locator("svg.cost-chart").count() == 3
    signed_in.context.close()


def test_ops_page_renders_chart_and_log_then_filters(
    browser: Browser, server: RunningServer, tmp_path: Path
) -> None:
    """Chart bars and log rows render; choosing status=failed leaves the two failures; screenshot."""
    page = _page(browser, extra_http_headers={"Authorization": f"Bearer {TOKEN}"})
    page.goto(server.url + "/ops")
    charts = page.locator("svg.cost-chart")
    assert charts.count() == 3
    assert page.locator('svg.cost-chart[data-currency="INR"] rect.bar').count() >= 4
    assert page.locator("svg.cost-chart .legend-item").count() >= 3
    rows = page.locator("#log tr.msg")
    assert rows.count() > 30
    assert "•" in rows.first.inner_text()  # the masked phone
    box = charts.first.bounding_box()
    assert box is not None
    assert box["width"] > 350
    assert box["height"] > 200
    _screenshot(page, tmp_path / "ops.png")

    page.select_option('select[name="status"]', "failed")
    page.click('button[type="submit"]')
    page.wait_for_url("**/ops?*status=failed*")
    assert rows.count() == 2
    assert "131026" in page.locator("#log").inner_text()
    _screenshot(page, tmp_path / "ops-failed.png")
    page.context.close()


def _navigate(page: Page, url: str) -> str:
    from playwright.sync_api import Error  # noqa: PLC0415 - optional dependency

    try:
        response = page.goto(url)
    except Error as error:
        return str(error)
    if response is None:
        return "no response"
    return f"HTTP {response.status} {response.text()}"


def _screenshot(page: Page, path: Path) -> None:
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    folder = os.environ.get("NOTIFIER_SCREENSHOT_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(folder) / path.name)
