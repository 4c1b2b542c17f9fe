"""The whole analyst loop in a real Chromium: queue -> top case -> timeline chart and attributions
-> confirm fraud with a note -> label row in the store -> next case. Screenshots in test-artifacts/."""
from __future__ import annotations

import re

import pytest

pytest.importorskip("pytest_playwright")
from playwright.sync_api import Page, expect  # noqa: E402

pytestmark = pytest.mark.browser
NOTE = "Card testing: new device, three declined small payments in two minutes."


def _case_heading(page: Page):
    return page.get_by_role("heading", name=re.compile(r"^Case: user "))


def _scroll_to_top(page: Page) -> None:
    """Streamlit scrolls inside its main section, not the window."""
    page.evaluate("""() => { for (const el of document.querySelectorAll('[data-testid="stMain"], section.main'))
                                 el.scrollTo(0, 0); window.scrollTo(0, 0); }""")


def test_queue_to_decision_to_next_case(page: Page, server, artifacts):
    page.goto(server.url)
    expect(page.get_by_role("heading", name="Case queue")).to_be_visible(timeout=60_000)
    expect(page.get_by_test_id("stDataFrame")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("browser-analyst")).to_be_visible()  # identity from SLEUTH_ANALYST
    page.screenshot(path=str(artifacts / "queue.png"))

    # queue -> top case
    page.get_by_role("button", name="Next case").click()
    heading = _case_heading(page)
    expect(heading).to_be_visible(timeout=90_000)
    user = heading.inner_text().split("user ", 1)[1].strip()
    assert re.search(r"user=" + re.escape(user), page.url)

    # the timeline chart really drew: one marker per event, coloured by attribution (colour bar)
    timeline = page.locator(".js-plotly-plot").first
    expect(timeline).to_be_visible(timeout=30_000)
    expect(timeline.locator("g.cartesianlayer g.trace.scatter path.point").first).to_be_attached(timeout=30_000)
    assert timeline.locator("g.cartesianlayer g.trace.scatter path.point").count() >= 3
    expect(timeline.get_by_text("red = towards fraud")).to_be_attached()
    assert timeline.bounding_box()["width"] > 700, "the chart spans its column"
    # drawn with the app's own plotly.js bundle (analyst/views/chart.py), not Streamlit's 4.7 MB one
    loaded = page.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
    assert any("/app/static/plotly-cartesian-" in url for url in loaded), loaded
    assert not any("PlotlyChart" in url for url in loaded), "Streamlit's own Plotly chunk was loaded"
    expect(page.get_by_role("heading", name="Why this risk")).to_be_visible()
    expect(page.get_by_text("Attribution by field")).to_be_attached()

    # confirm with a reason code and a note
    reason = page.get_by_role("combobox", name="Reason code")
    reason.click()
    reason.press_sequentially("Payment fr")  # the selectbox filters its options as one types
    page.get_by_role("option", name="Payment fraud").click()
    expect(reason).to_have_value("Payment fraud")
    page.get_by_label("Note").fill(NOTE)
    page.get_by_role("button", name="Confirm fraud").click()
    expect(page.get_by_text("Decision recorded", exact=True)).to_be_visible(timeout=60_000)
    expect(page.get_by_text("Fraud confirmed by browser-analyst")).to_be_visible()
    page.screenshot(path=str(artifacts / "case_decided.png"))

    # the one-file HTML report carries the decision and opens offline (plotly.js inline)
    with page.expect_download(timeout=60_000) as download:
        page.get_by_role("button", name="Download case report").click()
    report = artifacts / download.value.suggested_filename
    download.value.save_as(report)
    html = report.read_text()
    assert f"Case report: user {user}" in html and NOTE in html and "Plotly.newPlot" in html
    assert not re.search(r"<script[^>]+src=", html)
    offline = page.context.new_page()  # it draws its timeline from the file alone
    offline.goto(report.resolve().as_uri())
    expect(offline.locator("#timeline g.trace.scatter path.point").first).to_be_attached(timeout=30_000)
    offline.close()

    # next case: another user
    page.get_by_role("button", name="Next case").click()
    expect(_case_heading(page)).not_to_have_text(f"Case: user {user}", timeout=90_000)
    expect(_case_heading(page)).to_be_visible()
    next_user = _case_heading(page).inner_text().split("user ", 1)[1].strip()
    assert next_user != user
    expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=30_000)
    _scroll_to_top(page)
    page.wait_for_timeout(500)  # let plotly finish its first paint for the screenshot
    page.screenshot(path=str(artifacts / "case.png"))

    # the label row is in the store (read after the server let go of the DuckDB file)
    server.stop()
    from analyst.config import Settings
    from analyst.service import Workbench

    wb = Workbench(Settings.from_env(env={"SLEUTH_HOME": str(server.home)}))
    try:
        labels = wb.label_history().query("source == 'analyst'")
        assert labels[["user_id", "label", "analyst", "note"]].values.tolist() == [
            [user, 1, "browser-analyst", NOTE]]
        cases = wb.store.cases()
        decided = cases[cases["user_id"] == user].iloc[-1]
        assert decided["status"] == "decided"
        # "Next case" took the riskiest case of the queue
        assert float(decided["score"]) == pytest.approx(float(cases["score"].max()))
    finally:
        wb.close()
