"""The app's edge (issue 15), driven by AppTest: with sign-in configured a request that is not
signed in - a shared case link included - sees the sign-in page and no data; an identity with no
role is refused; roles show in the pages; local mode has its badge and serves loopback only."""
from __future__ import annotations

import pytest

pytest.importorskip("streamlit.testing.v1")
from streamlit import config as st_config  # noqa: E402

from tests.test_app import app, home, no_errors, release_workbenches, shown, signed_in, workbench  # noqa: E402,F401


def page_text(at) -> str:
    parts = [e.value for kind in ("title", "subheader", "markdown", "caption", "info", "success", "error", "warning")
             for e in getattr(at, kind)]
    return "\n".join(shown(p) for p in parts)


def test_signed_out_requests_see_the_sign_in_page_and_no_data(home):
    users = workbench().queue()["user_id"].astype(str).tolist()
    queue, case, entity = app(), app(), app()
    for at in (queue, case, entity):
        signed_in(at, None)
    case.query_params["user"] = users[0]
    queue.run()
    case.switch_page("analyst/views/case.py").run()
    entity.query_params.update({"kind": "device_id", "value": "d1"})
    entity.switch_page("analyst/views/entity.py").run()
    for at in (queue, case, entity):
        no_errors(at)
        assert [b.label for b in at.button] == ["Sign in"]
        assert not at.dataframe and not at.metric and not at.sidebar.markdown
        text = page_text(at)
        assert "Sign in with your organisation's account" in text
        assert not any(u in text for u in users)


def test_an_identity_without_a_role_is_refused(home, monkeypatch):
    monkeypatch.setenv("SLEUTH_DEFAULT_ROLE", "none")
    at = signed_in(app(), "stranger@elsewhere.example").run()
    refusals = [e.value for e in at.error]
    assert len(refusals) == 1 and "has no role in sleuth" in shown(refusals[0])
    assert not at.dataframe and [b.label for b in at.button] == ["Sign out"]


def test_the_sidebar_shows_who_is_signed_in_and_their_role(home, monkeypatch):
    monkeypatch.setenv("SLEUTH_ROLES", "group:fraud-leads=reviewer")
    at = signed_in(app(), "rex@shop.example", groups=["fraud-leads"]).run()
    no_errors(at)
    side = "\n".join(shown(m.value) for m in at.sidebar.markdown)
    assert "Signed in: rex@shop.example" in side.replace("**", "") and "role: reviewer" in side
    assert "local mode" not in side
    assert any(b.label == "Sign out" for b in at.sidebar.button)


def test_an_analyst_sees_admin_actions_disabled(home):
    at = app(analyst_name="ana@shop.example").run()
    at.switch_page("analyst/views/model.py").run()
    no_errors(at)
    for key in ("m_retrain", "m_rollback"):
        button = at.button(key=key)
        assert button.disabled and "Admins only (you are signed in as analyst)" in button.help


def test_local_mode_refuses_to_serve_beyond_loopback(home):
    at = app()
    previous = st_config.get_option("server.address")
    st_config.set_option("server.address", "0.0.0.0")
    try:
        at.run()
    finally:
        st_config.set_option("server.address", previous)
    assert len(at.error) == 1 and "refuses to serve address 0.0.0.0 without sign-in" in at.error[0].value
    assert not at.dataframe and not at.metric and not at.sidebar.markdown
    ok = app().run()          # the same app on 127.0.0.1 (.streamlit/config.toml): local mode, badge
    no_errors(ok)
    assert any("local mode - no sign-in" in m.value for m in ok.sidebar.markdown)
