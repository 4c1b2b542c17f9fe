"""The Streamlit pages, driven in-process by AppTest on a tiny real store (tests/conftest.py:
synthetic users, a tiny trained model, scored cases). Each test checks what the analyst sees and
what reaches the store."""
from __future__ import annotations

import base64
import re
import json
from pathlib import Path

import numpy as np
import pytest

from analyst import resources

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

APP = Path(__file__).resolve().parents[1] / "app.py"
TIMEOUT = 120


@pytest.fixture(scope="module", autouse=True)
def release_workbenches():
    """Close the app's cached Workbenches (their DuckDB files) when this module is done."""
    yield
    resources._workbench.clear()


@pytest.fixture
def home(home_copy, monkeypatch) -> Path:
    """A private copy of the tiny home (tests/conftest.py), selected through the environment."""
    monkeypatch.setenv("SLEUTH_HOME", str(home_copy.home))
    for key in ("SLEUTH_DB", "SLEUTH_MODELS", "SLEUTH_ANALYST"):
        monkeypatch.delenv(key, raising=False)
    yield home_copy.home


def workbench():
    """The app's own Workbench (AppTest runs in this process; a second connection would clash)."""
    return resources.workbench()


# a sign-in configuration as .streamlit/secrets.toml would hold it (AppTest never contacts the provider)
AUTH = {"redirect_uri": "http://127.0.0.1:8501/oauth2callback", "cookie_secret": "test-cookie-secret",
        "client_id": "sleuth", "client_secret": "test", "server_metadata_url":
        "http://127.0.0.1:9/.well-known/openid-configuration"}


def app(analyst_name: str | None = None, **session) -> AppTest:
    """The app; with `analyst_name`, signed in as that identity (sign-in configured), else in
    local mode as the local operator."""
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    if analyst_name:
        signed_in(at, analyst_name)
    for key, value in session.items():
        at.session_state[key] = value
    return at


def signed_in(at: AppTest, identity: str | None, **claims) -> AppTest:
    """Configure sign-in on `at` and sign `identity` in (None: signed out)."""
    at.secrets["auth"] = AUTH
    at.user = {"is_logged_in": False} if identity is None else {"is_logged_in": True, "email": identity, **claims}
    return at


def shown(markdown: str) -> str:
    """Markdown source as the analyst reads it: the data escapes of views/common.esc removed."""
    return re.sub(r"\\(.)", r"\1", str(markdown)).replace("\u200b", "")


def no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def open_case(at: AppTest, user_id: str) -> AppTest:
    at.switch_page("analyst/views/case.py")
    at.query_params["user"] = user_id
    return at.run()


def plotly_array(value) -> np.ndarray:
    """A Plotly JSON array: a list, or a typed array {"dtype", "bdata", "shape"} (numpy input)."""
    if isinstance(value, dict) and "bdata" in value:
        arr = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        return arr.reshape([int(n) for n in str(shape).split(",")]) if shape else arr
    return np.asarray(value)


def figures(at: AppTest) -> list[dict]:
    """The Plotly figures on the page, in page order, as drawn by analyst/views/chart.py.

    The app's .streamlit/config.toml turns static serving on (AppTest reads it too), so they are
    chart.py's component (the app's own plotly.js bundle); a plain `st.plotly_chart` (the fallback)
    would count as well.
    """
    found = []
    for element in at.get("bidi_component") + at.get("plotly_chart"):
        proto = element.proto
        if hasattr(proto, "spec"):
            found.append(json.loads(proto.spec))
        elif proto.component_name == "sleuth_plotly":
            found.append(json.loads(json.loads(proto.json)["figure"]))
    return found


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


# ---------------------------------------------------------------------------------------- queue
def test_queue_lists_open_cases_riskiest_first(home):
    at = app().run()
    no_errors(at)
    assert at.title[0].value == "Case queue"
    queue = workbench().queue()
    assert len(queue) == 6
    assert metric(at, "Cases shown") == "6"
    table = at.dataframe[0].value
    assert list(table["user_id"]) == list(queue["user_id"])
    assert table["risk"].is_monotonic_decreasing
    assert list(table["risk_pct"]) == list((queue["risk"] * 100).round(0))
    assert {"top_reason", "tags", "why", "status", "assignee", "age_days"} <= set(table.columns)


def test_queue_filters_by_risk_and_status(home):
    at = app().run()
    risks = workbench().queue()["risk"].sort_values()
    cut = float(risks.iloc[3])
    at.slider(key="q_risk").set_value((round(cut, 2), 1.0)).run()
    no_errors(at)
    expected = int((risks >= round(cut, 2)).sum())
    assert metric(at, "Cases shown") == str(expected) and expected < 6
    at.multiselect(key="q_status").set_value(["escalated"]).run()
    assert metric(at, "Cases shown") == "0"
    assert "No case matches these filters" in at.info[0].value


def test_queue_claim_selected_case(home):
    at = app(analyst_name="ana").run()
    at.session_state["queue_table"] = {"selection": {"rows": [1], "columns": [], "cells": []}}
    at.run()
    at.button(key="q_claim").click().run()
    no_errors(at)
    queue = workbench().queue()
    second = at.dataframe[0].value.iloc[1]
    assert queue.set_index("user_id").loc[second["user_id"], "assignee"] == "ana"
    assert metric(at, "Yours") == "1"


def test_next_case_opens_and_claims_the_top_case(home):
    at = app(analyst_name="ana").run()
    top = workbench().queue().iloc[0]
    at.button(key="q_next").click().run()
    no_errors(at)
    assert at.query_params["user"] == top["user_id"]
    assert at.title[0].value == f"Case: user {top['user_id']}"
    assert workbench().queue().set_index("case_id").loc[top["case_id"], "assignee"] == "ana"


# ---------------------------------------------------------------------------------------- case
def test_case_page_shows_header_timeline_and_reasons(home):
    user = workbench().queue().iloc[0]["user_id"]
    at = open_case(app().run(), user)
    no_errors(at)
    view = workbench().case(user)
    assert metric(at, "Risk") == f"{view.risk:.0%}"
    assert metric(at, "Events") == f"{view.header['events']:,}"
    assert view.model_version in at.caption[0].value
    drawn = [f["layout"]["meta"]["chart"] for f in figures(at)]
    assert drawn[:2] == ["timeline", "fields"]  # (+ the attention heatmap in its tab)
    assert len(figures(at)[0]["data"][0]["x"]) == len(view.timeline)
    markdown = " ".join(m.value for m in at.markdown)
    from analyst.views.common import esc   # data in Markdown is escaped (issue 15)
    assert all(esc(reason) in markdown for reason in view.explanation.reasons)
    events = next(d.value for d in at.dataframe if "attribution" in d.value.columns)
    assert len(events) == len(view.timeline)
    assert "surprise" in events.columns
    assert not any("not an explanation" in w.value for w in at.warning)  # lazy tabs: not drawn yet
    assert [b.label for b in at.get("form_submit_button")] == ["Confirm fraud", "Reject", "Escalate"]
    assert at.text_area[0].label == "Note"
    at.session_state["case_tab"] = "Attention"
    at.run()
    no_errors(at)
    assert any("not an explanation" in w.value for w in at.warning)
    heat = figures(at)[-1]["data"][0]
    assert heat["type"] == "heatmap" and plotly_array(heat["z"]).shape == (1, len(view.timeline))
    at.segmented_control(key=f"attn_mode_{user}").set_value("Last layer, per head").run()
    heads = plotly_array(figures(at)[-1]["data"][0]["z"])
    assert heads.shape == np.asarray(view.explanation.attention_last).shape
    at.session_state["case_tab"] = "Similar cases"
    at.run()
    no_errors(at)
    similar = at.dataframe[-1].value
    assert list(similar["user_id"]) == list(view.neighbours["user_id"])


def test_case_without_user_offers_a_picker(home):
    at = app().run()
    at.switch_page("analyst/views/case.py")
    at.run()
    no_errors(at)
    assert at.title[0].value == "Case"
    assert at.main.text_input[0].label == "User id"


def test_unknown_user_is_one_clear_message(home):
    at = open_case(app().run(), "nobody-42")
    assert not at.exception
    assert len(at.error) == 1
    assert "nobody-42" in shown(at.error[0].value) and "no events" in shown(at.error[0].value)


def test_decision_needs_a_note(home):
    user = workbench().queue().iloc[0]["user_id"]
    at = open_case(app(analyst_name="ana").run(), user)
    at.get("form_submit_button")[0].click().run()
    assert "note" in at.error[0].value.lower()
    at.selectbox[0].set_value("legitimate_behaviour")
    at.text_area[0].input("looks fine")
    at.get("form_submit_button")[0].click().run()  # Confirm fraud with a legit reason
    assert "contradicts" in at.error[0].value
    assert workbench().label_history().query("source == 'analyst'").empty  # nothing written


def test_no_reason_is_preselected_and_a_decision_needs_one(home):
    user = workbench().queue().iloc[0]["user_id"]          # the riskiest case: the old default said fraud
    at = open_case(app(analyst_name="ana").run(), user)
    assert at.selectbox[0].value is None
    at.text_area[0].input("checked the devices")
    at.get("form_submit_button")[0].click().run()
    assert "reason code" in at.error[0].value.lower()
    assert workbench().label_history().query("source == 'analyst'").empty  # nothing written


def test_confirm_fraud_writes_label_and_audit_then_next_case(home):
    queue = workbench().queue()
    user = queue.iloc[0]["user_id"]
    at = app(analyst_name="ana").run()
    at = open_case(at, user)
    at.selectbox[0].set_value("account_takeover")
    at.text_area[0].input("new device, password change, then 3 declined cards")
    at.get("form_submit_button")[0].click().run()
    no_errors(at)
    assert [s.value for s in at.success if "Decision recorded" in s.value] == ["Decision recorded"]  # once
    assert at.text_area[0].value == ""                 # the recorded note left the form
    labels = workbench().label_history().query("source == 'analyst'")
    assert len(labels) == 1
    row = labels.iloc[0]
    assert (row["user_id"], int(row["label"]), row["analyst"], row["reason"]) == (user, 1, "ana", "account_takeover")
    assert row["note"] == "new device, password change, then 3 declined cards"
    audit = workbench().audit(user)
    decided = audit[audit["action"] == "decide"]
    assert decided[["actor", "new"]].values.tolist() == [["ana", "fraud"]]
    assert '"quality": "useful"' in decided.iloc[0]["detail"]
    # the decision shows in the page's history tab
    at.session_state["case_tab"] = "History & audit"
    at.run()
    assert any(len(d.value) == 1 and "note" in d.value.columns for d in at.dataframe)
    at.button(key="case_next_after").click().run()
    no_errors(at)
    assert at.query_params["user"] != user
    assert at.query_params["user"] in set(queue["user_id"])


def test_analyst_from_environment_is_recorded(home, monkeypatch):
    monkeypatch.setenv("SLEUTH_ANALYST", "env-analyst")
    user = workbench().queue().iloc[1]["user_id"]
    at = open_case(app().run(), user)
    assert not at.sidebar.text_input  # never asked: local mode is the one operator the settings name
    assert any("env-analyst" in shown(m.value) for m in at.sidebar.markdown)
    assert any("local mode - no sign-in" in m.value for m in at.sidebar.markdown)
    at.selectbox[0].set_value("legitimate_behaviour")
    at.text_area[0].input("looks like a normal shopper")
    at.get("form_submit_button")[1].click().run()  # Reject
    no_errors(at)
    row = workbench().label_history().query("source == 'analyst'").iloc[-1]
    assert (row["user_id"], int(row["label"]), row["analyst"]) == (user, 0, "env-analyst")


def test_escalate_writes_no_label(home):
    user = workbench().queue().iloc[2]["user_id"]
    at = app(analyst_name="ana").run()
    at = open_case(at, user)
    at.text_area[0].input("needs the payments team")
    at.get("form_submit_button")[2].click().run()
    no_errors(at)
    assert workbench().label_history().query("source == 'analyst'").empty
    assert workbench().queue(statuses=("escalated",))["user_id"].tolist() == [user]
    decided = workbench().audit(user).query("action == 'decide'")
    assert "insufficient_evidence" in decided.iloc[-1]["detail"]   # no reason chosen: the escalation's own


def test_what_if_recomputes_risk(home):
    user = workbench().queue().iloc[0]["user_id"]
    at = open_case(app(case_tab="What-if").run(), user)
    sel = at.multiselect(key=f"whatif_sel_{user}")
    sel.set_value([0, 1]).run()
    at.button(key=f"whatif_go_{user}").click().run()
    no_errors(at)
    expected = workbench().what_if(user, [0, 1])
    assert metric(at, "Risk without 2 event(s)") == f"{expected:.0%}"


def test_a_saturated_risk_change_is_said_in_log_odds_not_as_zero_points():
    from analyst.views.common import risk_change

    assert risk_change(0.40, 0.452) == "+5.2 pts"
    assert risk_change(0.99990, 0.99970) == "-1.10 log-odds (risk saturated)"   # was "-0.0 pts"
    assert risk_change(0.5, 0.5) == "+0.00 log-odds (risk saturated)"


def test_what_if_table_gives_the_log_odds_change(home):
    user = workbench().queue().iloc[0]["user_id"]
    at = open_case(app(case_tab="What-if").run(), user)
    no_errors(at)
    tables = [d.value for d in at.dataframe if "change (log-odds)" in d.value.columns]
    assert tables and np.isfinite(tables[0]["change (log-odds)"]).all()


def test_demo_mode_masks_identifiers_and_reveals_truth(home):
    wb = workbench()
    queue = wb.queue()
    planted = next((u for u in queue["user_id"] if (wb.case(u).ground_truth or {}).get("planted_events")), None)
    user = planted or queue.iloc[0]["user_id"]
    raw_ips = set(wb.case(user).timeline["ip"].dropna())
    at = app(demo_mode=True).run()
    at = open_case(at, user)
    no_errors(at)
    events = next(d.value for d in at.dataframe if "attribution" in d.value.columns)
    if "ip" in events.columns:
        assert not raw_ips & set(events["ip"].dropna())
        assert all(str(v).startswith("ip#") for v in events["ip"].dropna())
    assert any("Guided walk, step 2" in i.value for i in at.info)
    if planted:
        at.toggle(key=f"reveal_{user}").set_value(True).run()
        assert any("planted" in i.value for i in at.info)
        spec = figures(at)[0]
        widths = plotly_array(spec["data"][0]["marker"]["line"]["width"])
        truth = wb.case(user).ground_truth["planted_events"]
        assert [i for i, w in enumerate(widths) if w > 1] == truth  # planted events outlined


def test_demo_guided_walk_starts_on_the_top_case(home):
    top = workbench().queue().iloc[0]["user_id"]
    at = app(demo_mode=True).run()
    no_errors(at)
    assert at.sidebar.toggle[0].value is True
    at.button(key="q_tour").click().run()
    no_errors(at)
    assert at.query_params["user"] == top
    steps = [i.value for i in at.info if "Guided walk, step" in i.value]
    assert len(steps) >= 4 and "step 1" in steps[0]


# ---------------------------------------------------------------------------------------- labels, model
def test_labels_page_history_audit_and_export(home):
    at = app().run()
    at.switch_page("analyst/views/labels.py")
    at.run()
    no_errors(at)
    history = workbench().label_history()
    assert metric(at, "Label rows") == f"{len(history):,}"
    assert {b.label for b in at.get("download_button")} == {"Export CSV", "Export Parquet"}
    at.multiselect(key="lab_source").set_value(["synthetic"]).run()
    shown = at.dataframe[0].value
    assert len(shown) == int((history["source"] == "synthetic").sum())
    assert set(shown["label"]) <= {"fraud", "legit"}


def test_model_page_lists_versions(home):
    at = app().run()
    at.switch_page("analyst/views/model.py")
    at.run()
    assert not at.exception
    current = workbench().current_version()
    assert metric(at, "Current version") == current
    assert current in set(at.dataframe[0].value["version"])


def test_roll_back_is_offered_only_when_an_earlier_version_was_current(home):
    import warnings

    from tests.conftest import tiny_scorer_config

    at = app().run()
    at.switch_page("analyst/views/model.py").run()
    no_errors(at)
    button = at.button(key="m_rollback")
    assert button.disabled and "Nothing to roll back to" in button.help      # one version only
    wb = workbench()
    first = wb.current_version()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        second = wb.train(config=tiny_scorer_config(seed=1), progress=False)
    wb.promote(second, "tester")
    at.run()
    no_errors(at)
    button = at.button(key="m_rollback")
    assert not button.disabled and first in button.help


def test_model_page_compares_versions_on_reviewed_cases(home):
    at = app().run()
    at.switch_page("analyst/views/model.py")
    at.run()
    no_errors(at)
    metrics = workbench().model_metrics(workbench().current_version())
    if metrics.get("pr_curve"):
        assert any(f["layout"]["meta"]["chart"] == "pr" for f in figures(at))


@pytest.mark.slow
def test_retrain_runs_in_background_then_promote_rescores(home, monkeypatch):
    import time

    monkeypatch.setenv("SLEUTH_ROLES", "ana=admin")   # retrain and promote are admin work
    at = app(analyst_name="ana").run()
    at.switch_page("analyst/views/model.py")
    at.run()
    before = set(workbench().models()["version"])
    at.button(key="m_retrain").click().run()
    assert not at.exception
    assert at.button(key="m_retrain").disabled  # one retrain at a time
    deadline = time.monotonic() + 600
    while True:  # AppTest does not tick fragments: rerun the page, as the fragment would
        at.run()
        done = any("Retrain finished" in s.value for s in at.success)
        if done or any("Retrain failed" in e.value for e in at.error) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert not at.exception and not [e.value for e in at.error if "metrics" not in e.value]
    assert any("Retrain finished" in s.value for s in at.success)
    models = workbench().models()
    (new,) = set(models["version"]) - before
    assert models.set_index("version").loc[new, "status"] == "candidate"
    assert at.selectbox(key="m_cand").value == new
    at.button(key="m_promote").click().run()
    assert not at.exception
    assert workbench().current_version() == new
    assert any(f"{new} is current" in s.value for s in at.success)
    audit = workbench().audit()
    assert ((audit["action"] == "promote") & (audit["new"] == new) & (audit["actor"] == "ana")).any()
    assert set(workbench().queue()["model_version"]) >= {new}


# ---------------------------------------------------------------------------------------- charts
def test_charts_fall_back_to_st_plotly_chart_without_static_serving(home):
    """`streamlit run` with static serving off still draws every chart (Streamlit's own Plotly)."""
    from streamlit import config

    from analyst.views import chart

    assert chart.bundle_url() == "/app/static/plotly-cartesian-4.1.1.min.js"  # .streamlit/config.toml
    user = workbench().queue().iloc[0]["user_id"]
    config.set_option("server.enableStaticServing", False)
    try:
        assert chart.bundle_url() is None
        at = open_case(app().run(), user)
    finally:
        config.set_option("server.enableStaticServing", True)
    no_errors(at)
    assert not at.get("bidi_component")
    assert [json.loads(c.proto.spec)["layout"]["meta"]["chart"] for c in at.get("plotly_chart")][:2] == \
        ["timeline", "fields"]


def test_chart_bundle_url_follows_the_base_url_path():
    from streamlit import config

    from analyst.views import chart

    before = config.get_option("server.baseUrlPath")
    config.set_option("server.baseUrlPath", "/sleuth/")
    try:
        assert chart.bundle_url() == "/sleuth/app/static/plotly-cartesian-4.1.1.min.js"
    finally:
        config.set_option("server.baseUrlPath", before)


def test_case_page_lists_linked_accounts(home):
    """The Linked accounts tab lists who shares this user's entities, with a link to each case."""
    wb = workbench()
    users = wb.queue()["user_id"].astype(str).tolist()
    docs = {u: wb.links(u, max_users=10) for u in users}
    user = next(u for u in users if any(e["n_users"] > 1 for e in docs[u]["entities"]))
    doc = docs[user]
    at = open_case(app().run(), user)
    at.session_state["case_tab"] = "Linked accounts"
    at.run()
    no_errors(at)
    table = at.dataframe[-1].value
    expected = {u["user_id"] for e in doc["entities"] if e["n_users"] > 1 and e["kind"] != "item"
                for u in e["users"]}
    assert expected <= set(table["user_id"])
    assert user not in set(table["user_id"])
    assert all(link == f"case?user={u}" for link, u in zip(table["link"], table["user_id"]))
    assert (table["accounts"] >= 1).all()
