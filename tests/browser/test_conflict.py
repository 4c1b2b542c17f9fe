"""Two analysts, each signed in through the loopback OIDC provider (two browser contexts = two
sessions), open the same case; the first confirms fraud,
the second's save is refused with a clear conflict message and their note is kept. Real Chromium."""
from __future__ import annotations

import re
import shutil

import pytest

pytest.importorskip("pytest_playwright")
from playwright.sync_api import Page, expect  # noqa: E402

from tests.browser.conftest import sign_in, sign_in_server  # noqa: E402

pytestmark = pytest.mark.browser
NOTE_A = "ana: new device, then three declined small payments."
NOTE_B = "bob: long-standing customer, the payments went through on retry."


@pytest.fixture(scope="module")
def two_analyst_server(tiny_home, tmp_path_factory, oidc_provider):
    """The app over a private copy of the tiny home with sign-in through the loopback provider
    (each tab signs in as its own analyst), and the user of its top case (read before the server
    takes the DuckDB file)."""
    from analyst.config import Settings
    from analyst.service import Workbench

    home = tmp_path_factory.mktemp("conflict") / "home"
    shutil.copytree(tiny_home.home, home)
    wb = Workbench(Settings.from_env(env={"SLEUTH_HOME": str(home)}))
    try:
        user = str(wb.queue().iloc[0]["user_id"])
    finally:
        wb.close()
    srv = sign_in_server(home, tmp_path_factory.mktemp("log"), oidc_provider)
    try:
        yield srv, user
    finally:
        srv.stop()


def _open_as(page: Page, url: str, user: str, name: str) -> None:
    sign_in(page, url, name, f"case?user={user}")
    expect(page.get_by_role("heading", name=f"Case: user {user}")).to_be_visible(timeout=90_000)
    confirm = page.get_by_role("button", name="Confirm fraud")
    expect(confirm).to_have_count(1, timeout=30_000)  # one decision form, however slow the rerun
    expect(confirm).to_be_visible()


def _pick_reason(page: Page, typed: str, option: str) -> None:
    reason = page.get_by_role("combobox", name="Reason code")
    reason.click()
    reason.press_sequentially(typed)  # the selectbox filters its options as one types
    page.get_by_role("option", name=option).click()
    expect(reason).to_have_value(option)


def test_second_analyst_gets_a_conflict_and_keeps_their_note(browser, browser_context_args, two_analyst_server,
                                                             artifacts):
    server, user = two_analyst_server
    ana_ctx = browser.new_context(**browser_context_args)
    bob_ctx = browser.new_context(**browser_context_args)
    try:
        ana, bob = ana_ctx.new_page(), bob_ctx.new_page()
        _open_as(ana, server.url, user, "ana")
        _open_as(bob, server.url, user, "bob")   # both have the case open, same version

        _pick_reason(ana, "Payment fr", "Payment fraud")
        ana.get_by_label("Note").fill(NOTE_A)
        ana.get_by_role("button", name="Confirm fraud").click()
        expect(ana.get_by_text("Fraud confirmed by ana")).to_be_visible(timeout=60_000)

        _pick_reason(bob, "Legitimate", "Legitimate behaviour")
        bob.get_by_label("Note").fill(NOTE_B)
        bob.get_by_role("button", name="Reject").click()
        conflict = bob.get_by_test_id("stAlert").filter(has_text=re.compile(r"Not recorded: someone else decided"))
        expect(conflict).to_be_visible(timeout=60_000)
        expect(conflict).to_contain_text("Fraud confirmed by ana")
        expect(conflict).to_contain_text(NOTE_B)              # the note is shown ...
        expect(bob.get_by_label("Note")).to_have_value(NOTE_B)  # ... and still in the text area
        expect(bob.get_by_text("last decision: fraud")).to_be_visible()  # the case reloaded as it is now
        bob.screenshot(path=str(artifacts / "case_conflict.png"))
    finally:
        ana_ctx.close()
        bob_ctx.close()

    server.stop()   # then read the store: only ana's decision landed
    from analyst.config import Settings
    from analyst.service import Workbench

    wb = Workbench(Settings.from_env(env={"SLEUTH_HOME": str(server.home)}))
    try:
        labels = wb.label_history().query("source == 'analyst'")
        assert labels[["user_id", "label", "analyst", "note"]].values.tolist() == [[user, 1, "ana", NOTE_A]]
        assert wb.audit(user).query("action == 'decide'")["actor"].tolist() == ["ana"]
    finally:
        wb.close()
