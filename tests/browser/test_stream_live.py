"""Streaming in a real Chromium (issue 16): the app streams a drop folder (SLEUTH_STREAM); an
analyst has a case open, new events for that user are dropped, and the page says "risk changed"
on its own, without a reload; one click loads the new events."""
from __future__ import annotations

import json
import re

import pytest

pytest.importorskip("pytest_playwright")
from playwright.sync_api import Page, expect  # noqa: E402

from analyst.config import Settings  # noqa: E402
from analyst.service import Workbench  # noqa: E402
from tests.browser.conftest import start_server  # noqa: E402
from tests.test_streaming import new_events  # noqa: E402

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def live(browser_home, tmp_path_factory):
    """(a queued user, the drop folder, a server streaming it)."""
    with Workbench(Settings.from_env(env={"SLEUTH_HOME": str(browser_home)})) as wb:
        user = str(wb.queue()["user_id"].iloc[0])
    drop = tmp_path_factory.mktemp("drop")
    srv = start_server(browser_home, tmp_path_factory.mktemp("log") / "streamlit.log",
                       {"SLEUTH_ANALYST": "browser-analyst", "SLEUTH_STREAM": str(drop)})
    try:
        yield user, drop, srv
    finally:
        srv.stop()


def test_an_open_case_says_its_risk_changed_when_new_events_stream_in(page: Page, live, artifacts):
    user, drop, server = live
    page.goto(f"{server.url}/case?user={user}")
    heading = page.get_by_role("heading", name=re.compile(r"^Case: user "))
    expect(heading).to_contain_text(user, timeout=90_000)
    expect(page.get_by_text(re.compile(r"events streamed"))).to_be_visible(timeout=30_000)
    notice = page.get_by_text("Risk changed with new events")
    expect(notice).to_have_count(0)

    (drop / "burst.jsonl.part").write_text("".join(json.dumps(r) + "\n" for r in new_events([user], 25)))
    (drop / "burst.jsonl.part").rename(drop / "burst.jsonl")      # write, then rename into the folder

    expect(notice).to_be_visible(timeout=60_000)                   # no goto, no reload: the page polls
    page.screenshot(path=str(artifacts / "stream_risk_changed.png"))
    page.get_by_role("button", name="Show the new events").click()
    expect(notice).to_have_count(0, timeout=60_000)
    expect(page.get_by_text(re.compile(r"25 events streamed"))).to_be_visible(timeout=30_000)
    assert (drop / "processed" / "burst.jsonl").exists()
