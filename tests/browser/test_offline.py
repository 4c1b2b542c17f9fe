"""The app works offline (issue 17): loading the queue and a case asks no host but the server's
own (the favicon used to come from an outside host)."""
from __future__ import annotations

import re
from urllib.parse import urlparse

import pytest

pytest.importorskip("pytest_playwright")
from playwright.sync_api import Page, expect  # noqa: E402

pytestmark = pytest.mark.browser


def host(url: str) -> str | None:
    """The host a request goes to (a blob: URL names its origin; data: goes nowhere)."""
    if url.startswith("data:"):
        return None
    return urlparse(url[len("blob:"):] if url.startswith("blob:") else url).hostname or url


def test_pages_ask_no_host_but_the_app(page: Page, server):
    hosts: set[str] = set()
    page.on("request", lambda request: hosts.add(host(request.url)))
    page.goto(f"{server.url}/")
    expect(page.get_by_role("heading", name="Case queue")).to_be_visible(timeout=90_000)
    page.goto(f"{server.url}/case?user=u000001")
    expect(page.get_by_role("heading", name=re.compile(r"^Case: user "))).to_be_visible(timeout=90_000)
    page.wait_for_timeout(1500)              # late requests (icons, fonts) too
    hosts.discard(None)
    assert hosts and hosts <= {"127.0.0.1"}, f"requests beyond the app: {sorted(hosts - {'127.0.0.1'})}"
    icon = page.locator("link[rel*='icon']").first.get_attribute("href")
    assert icon and host(icon) in (None, "127.0.0.1"), f"favicon from {icon}"


def test_the_queue_opens_by_its_own_address(page: Page, server):
    page.goto(f"{server.url}/queue")
    expect(page.get_by_role("heading", name="Case queue")).to_be_visible(timeout=90_000)
    expect(page.get_by_text("Page not found")).to_have_count(0)
