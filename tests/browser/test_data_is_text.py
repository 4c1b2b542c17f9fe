"""Data is text (issue 15): Markdown images and links typed by an investigated user (event fields),
an analyst (names, notes) or put in a URL are shown as literal text in a real Chromium, and the
browser never fetches anything from the host they name (a local HTTP server counts requests)."""
from __future__ import annotations

import http.server
import re
import threading

import pandas as pd
import pytest

pytest.importorskip("pytest_playwright")
from playwright.sync_api import Page, expect  # noqa: E402

from analyst.config import Settings  # noqa: E402
from analyst.service import Workbench  # noqa: E402
from tests.browser.conftest import free_port, start_server  # noqa: E402

pytestmark = pytest.mark.browser
USER = "mdusr"


class _Counter(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        _Counter.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture(scope="module")
def trap():
    """A loopback HTTP server the injected Markdown points at; `hits` lists what was fetched."""
    port = free_port()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Counter)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{port}", _Counter.hits
    finally:
        httpd.shutdown()


@pytest.fixture(scope="module")
def injected(browser_home, trap, tmp_path_factory):
    """A user whose events carry Markdown images / links, a decided case with Markdown in the
    analyst's name and note, a blind second review that disagrees: then the app."""
    host, _ = trap
    img, link = f"![t]({host}/field.png)", f"[click]({host}/link)"
    settings = Settings.from_env(env={"SLEUTH_HOME": str(browser_home), "SLEUTH_SECOND_REVIEW_SHARE": "1"})
    wb = Workbench(settings)
    try:
        t0 = pd.Timestamp("2026-03-01 10:00")
        rows = [{"user_id": USER, "ts": t0 + pd.Timedelta(minutes=i), "event_type": "search",
                 "query": f"{img} {link} {host}/bare", "country": img, "currency": link} for i in range(6)]
        wb.store.add_events(pd.DataFrame(rows))
        wb.refresh_links()
        wb.store.refresh_signals()
        version = wb.current_version()
        wb.store.open_cases(pd.DataFrame({"user_id": [USER], "score": [0.9], "why": "high_risk"}), version)
        case = wb.store.latest_case(USER)
        wb.decide(USER, "legit", analyst=f"ana {img}", reason_code="legitimate_behaviour", quality="useful",
                  note=f"first note {img} {link}", case_id=int(case["case_id"]), expected_version=int(case["version"]))
        wb.jobs.wait(60)
        wb.second_review(int(case["case_id"]), "fraud", reviewer="bob", reason_code="payment_fraud",
                         note=f"second note {img}")
    finally:
        wb.close()
    srv = start_server(browser_home, tmp_path_factory.mktemp("log") / "streamlit.log",
                       {"SLEUTH_ANALYST": "carol"})
    try:
        yield srv, img
    finally:
        srv.stop()


def _no_outside_fetch(page: Page, trap) -> None:
    host, hits = trap
    assert not hits, f"the browser fetched {hits} from {host}"
    assert page.locator(f"img[src^='{host}']").count() == 0
    anchors = page.locator(f"a[href^='{host}']")
    assert anchors.count() == 0, [anchors.nth(i).evaluate("a => a.parentElement.outerHTML.slice(0, 300)") for i in range(anchors.count())]


def test_event_fields_in_a_case_are_text(page: Page, injected, trap, artifacts):
    server, img = injected
    page.goto(f"{server.url}/case?user={USER}")
    heading = page.get_by_role("heading", name=re.compile(r"^Case: user "))
    expect(heading).to_contain_text(USER, timeout=90_000)
    expect(page.get_by_text("countries:", exact=False).first).to_contain_text(img, timeout=30_000)
    page.get_by_role("tab", name="Events").click()
    page.wait_for_timeout(1500)
    page.get_by_role("tab", name="History & audit").click()
    page.wait_for_timeout(1500)
    page.screenshot(path=str(artifacts / "data_is_text_case.png"))
    _no_outside_fetch(page, trap)


def test_a_markdown_url_is_text(page: Page, injected, trap):
    server, img = injected
    host, _ = trap
    page.goto(f"{server.url}/case?user=" + f"![t]({host}/url.png)".replace("/", "%2F"))
    expect(page.get_by_text("no events", exact=False).first).to_be_visible(timeout=90_000)
    expect(page.get_by_role("heading", name=re.compile(r"^Case: user "))).to_contain_text("![t](")
    _no_outside_fetch(page, trap)


def test_names_and_notes_on_the_adjudication_page_are_text(page: Page, injected, trap, artifacts):
    server, img = injected
    page.goto(f"{server.url}/review")
    page.get_by_role("tab", name=re.compile("Adjudication")).click()
    expect(page.get_by_text("first note", exact=False).first).to_contain_text(img, timeout=90_000)
    page.screenshot(path=str(artifacts / "data_is_text_review.png"))
    _no_outside_fetch(page, trap)
