"""Linked accounts in a real Chromium: open a case, go to its Linked accounts tab, click a linked
user and land on that user's case (issue 14)."""
from __future__ import annotations

import re

import pytest

pytest.importorskip("pytest_playwright")
from playwright.sync_api import Page, expect  # noqa: E402

from analyst.config import Settings  # noqa: E402
from analyst.service import Workbench  # noqa: E402
from tests.browser.conftest import start_server  # noqa: E402

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def linked(browser_home, tmp_path_factory):
    """(user, its riskiest linked user, a server): the pair is read before the app holds the file."""
    wb = Workbench(Settings.from_env(env={"SLEUTH_HOME": str(browser_home)}))
    try:
        pair = None
        for user in wb.queue()["user_id"].astype(str):
            others = [u for e in wb.links(user, max_users=10)["entities"] if e["n_users"] > 1
                      for u in e["users"]]
            if others:
                best = max(others, key=lambda u: -1.0 if u["risk"] is None else u["risk"])
                pair = (user, best["user_id"])
                break
    finally:
        wb.close()
    assert pair is not None, "no queued user shares an entity with anyone"
    srv = start_server(browser_home, tmp_path_factory.mktemp("log") / "streamlit.log",
                       {"SLEUTH_ANALYST": "browser-analyst"})
    try:
        yield (*pair, srv)
    finally:
        srv.stop()


def test_click_a_linked_user_opens_their_case(page: Page, linked, artifacts):
    user, other, server = linked
    page.goto(f"{server.url}/case?user={user}")
    heading = page.get_by_role("heading", name=re.compile(r"^Case: user "))
    expect(heading).to_contain_text(user, timeout=90_000)
    page.get_by_role("tab", name="Linked accounts").click()
    link = page.get_by_role("button", name=other)
    expect(link).to_be_visible(timeout=30_000)
    page.screenshot(path=str(artifacts / "linked_accounts.png"))
    link.click()
    expect(heading).to_contain_text(other, timeout=90_000)
    expect(page).to_have_url(re.compile(r"/case\?user=" + re.escape(other) + "$"), timeout=30_000)
    page.screenshot(path=str(artifacts / "linked_case.png"))
    page.screenshot(path=str(artifacts / "linked_case.png"))
