"""Sign-in through a real OpenID Connect provider on loopback (issue 15), in real Chromium: a
shared case link shows the sign-in page and no data; the analyst signs in at the provider,
confirms a fraud, and the label and audit rows carry the signed-in identity; the Model page
refuses the analyst a promote (the service refuses it too: tests/test_access.py)."""
from __future__ import annotations

import shutil

import pytest

pytest.importorskip("pytest_playwright")
from playwright.sync_api import expect  # noqa: E402

from tests.browser.conftest import shown_as, sign_in, sign_in_server  # noqa: E402

pytestmark = pytest.mark.browser
ANALYST = "ana@shop.example"
NOTE = "signed in: new device, then three declined payments"


@pytest.fixture(scope="module")
def signed_home(tiny_home, tmp_path_factory):
    """A private copy of the tiny home and the user of its top case (read before serving)."""
    from analyst.config import Settings
    from analyst.service import Workbench

    home = tmp_path_factory.mktemp("signin") / "home"
    shutil.copytree(tiny_home.home, home)
    wb = Workbench(Settings.from_env(env={"SLEUTH_HOME": str(home)}))
    try:
        user = str(wb.queue().iloc[0]["user_id"])
    finally:
        wb.close()
    return home, user


def test_sign_in_decide_and_the_rows_carry_the_identity(browser, browser_context_args, signed_home, oidc_provider,
                                                        tmp_path_factory, artifacts):
    home, user = signed_home
    server = sign_in_server(home, tmp_path_factory.mktemp("signin_log"), oidc_provider)
    ctx = browser.new_context(**browser_context_args)
    try:
        page = ctx.new_page()
        page.goto(f"{server.url}/case?user={user}")   # a shared link, not signed in
        expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=90_000)
        expect(page.get_by_text("Sign in with your organisation's account")).to_be_visible()
        page.screenshot(path=str(artifacts / "sign_in_page.png"))
        assert user not in page.content() and not page.get_by_test_id("stDataFrame").count()

        sign_in(page, server.url, ANALYST, f"case?user={user}")
        expect(page.get_by_role("heading", name=f"Case: user {user}")).to_be_visible(timeout=90_000)
        expect(page.get_by_text("role: analyst")).to_be_visible()
        reason = page.get_by_role("combobox", name="Reason code")
        reason.click()
        reason.press_sequentially("Payment fr")
        page.get_by_role("option", name="Payment fraud").click()
        page.get_by_label("Note").fill(NOTE)
        page.get_by_role("button", name="Confirm fraud").click()
        expect(page.get_by_text(shown_as(f"Fraud confirmed by {ANALYST}"))).to_be_visible(timeout=60_000)
        page.screenshot(path=str(artifacts / "signed_in_decision.png"))

        page.goto(f"{server.url}/model")
        expect(page.get_by_role("button", name="Roll back")).to_be_disabled(timeout=60_000)
        expect(page.get_by_role("button", name="Retrain from labels")).to_be_disabled()
        page.screenshot(path=str(artifacts / "signed_in_model_page.png"))
    finally:
        ctx.close()
        server.stop()

    from analyst.config import Settings
    from analyst.service import Workbench
    wb = Workbench(Settings.from_env(env={"SLEUTH_HOME": str(home)}))
    try:
        label = wb.label_history().query("source == 'analyst' and user_id == @user").iloc[-1]
        assert (label["analyst"], int(label["label"]), label["note"]) == (ANALYST, 1, NOTE)
        audit = wb.audit(user)
        assert audit[audit["action"] == "decide"]["actor"].tolist() == [ANALYST]
    finally:
        wb.close()
