"""The Review page (blind second review, agreement, adjudication) and the case page's conflict and
imported-outcome handling, driven in-process by AppTest on a private copy of the tiny store."""
from __future__ import annotations

import pandas as pd
import pytest

pytest.importorskip("streamlit.testing.v1")
from tests.test_app import app, figures, home, no_errors, open_case, release_workbenches, shown, workbench  # noqa: E402,F401

REVIEW_PAGE = "analyst/views/review.py"
SECRET = "ana: first note, must stay hidden from the blind reviewer"


@pytest.fixture(autouse=True)
def reviewers(monkeypatch):
    """bob and lea are reviewers (SLEUTH_ROLES); other signed-in identities are analysts."""
    monkeypatch.setenv("SLEUTH_ROLES", "bob=reviewer; lea=reviewer")


@pytest.fixture
def sampled_home(home, monkeypatch):
    """Every decided case goes to a second review (set before the app's Workbench is created)."""
    monkeypatch.setenv("SLEUTH_SECOND_REVIEW_SHARE", "1")
    return home


def review_page(**session):
    at = app(**session).run()
    at.switch_page(REVIEW_PAGE)
    return at.run()


def decide_top(decision: str = "legit", analyst: str = "ana", note: str = SECRET, position: int = 0):
    row = workbench().queue().iloc[position]
    workbench().decide(row["user_id"], decision, analyst=analyst, quality="useful",
                       reason_code="payment_fraud" if decision == "fraud" else "legitimate_behaviour",
                       note=note, case_id=int(row["case_id"]), expected_version=int(row["version"]))
    return row


def page_text(at) -> str:
    parts = [e.value for kind in ("markdown", "caption", "info", "success", "error", "warning")
             for e in getattr(at, kind)]
    parts += [d.value.to_string() for d in at.dataframe]
    return "\n".join(str(p) for p in parts)


def test_review_page_smoke(home):
    at = review_page()
    no_errors(at)
    assert at.title[0].value == "Second review"
    assert "10%" in at.caption[0].value, "the default share is shown"
    assert any("No blind second review is waiting" in i.value for i in at.info)   # local operator: admin
    analyst = review_page(analyst_name="zoe")                                       # signed in, unmapped
    assert any("done by reviewers; you are signed in as analyst" in i.value for i in analyst.info)
    at.session_state["rv_tab"] = "Agreement"
    at.run()
    no_errors(at)
    assert next(m.value for m in at.metric if m.label == "Second reviews") == "0"
    assert next(m.value for m in at.metric if m.label == "Kappa (all pairs)") == "n/a"
    at.session_state["rv_tab"] = "Adjudication"
    at.run()
    no_errors(at)
    assert any("No disagreement" in i.value for i in at.info)


def test_blind_second_review_is_recorded_without_showing_the_first_decision(sampled_home):
    row = decide_top("legit")
    labels_before = len(workbench().label_history())
    assert not review_page(analyst_name="ana").dataframe, "the first analyst has nothing to second-review"

    at = review_page(analyst_name="bob")
    no_errors(at)
    due = at.dataframe[0].value
    assert due["case_id"].tolist() == [int(row["case_id"])]
    text = page_text(at)
    assert SECRET not in text and "legitimate" not in text.lower(), "blind: nothing of the first decision"
    assert not {"first_analyst", "first_label", "label", "note", "decision"} & set(due.columns)
    assert at.radio(key="rv_decision").value is None, "no pre-selected answer"
    assert [f["layout"]["meta"]["chart"] for f in figures(at)] == ["timeline"], "the timeline is drawn for the reviewer"

    at.get("form_submit_button")[0].click().run()
    assert any("Pick fraud or legit" in e.value for e in at.error)
    at.radio(key="rv_decision").set_value("fraud")
    at.selectbox(key="rv_reason").set_value("payment_fraud")
    at.text_area(key="rv_note").input("bob: three declined cards in a minute")
    at.get("form_submit_button")[0].click().run()
    no_errors(at)
    assert any("recorded" in s.value and "disagrees" in s.value for s in at.success)
    assert any("No blind second review is waiting" in i.value for i in at.info)
    reviews = workbench().store.reviews()
    assert reviews[["case_id", "reviewer", "label", "first_analyst", "first_label"]].values.tolist() == [
        [int(row["case_id"]), "bob", 1, "ana", 0]]
    assert reviews.iloc[0]["note"] == "bob: three declined cards in a minute"
    assert len(workbench().label_history()) == labels_before, "a second review is not a label"

    at.session_state["rv_tab"] = "Agreement"
    at.run()
    no_errors(at)
    assert next(m.value for m in at.metric if m.label == "Second reviews") == "1"
    assert next(m.value for m in at.metric if m.label == "Awaiting adjudication") == "1"
    pairs = next(d.value for d in at.dataframe if "rater_a" in d.value.columns)
    assert pairs[["rater_a", "rater_b", "n"]].values.tolist() == [["ana", "bob", 1]]


def test_adjudication_by_a_third_analyst_writes_the_final_label(sampled_home):
    row = decide_top("legit")
    workbench().second_review(int(row["case_id"]), "fraud", reviewer="bob", reason_code="payment_fraud",
                              note="bob: card testing")
    at = review_page(analyst_name="bob", rv_tab="Adjudication")
    no_errors(at)
    assert any("You took part" in i.value for i in at.info)
    assert not at.get("form_submit_button")

    at = review_page(analyst_name="lea", rv_tab="Adjudication")
    no_errors(at)
    shown = at.dataframe[0].value
    assert shown[["first_analyst", "first_decision", "reviewer", "second_decision"]].values.tolist() == [
        ["ana", "legit", "bob", "fraud"]]
    at.radio(key="rv_adj_decision").set_value("fraud")
    at.selectbox(key="rv_adj_reason").set_value("account_takeover")
    at.text_area(key="rv_adj_note").input("lea: the device change settles it")
    at.get("form_submit_button")[0].click().run()
    no_errors(at)
    assert any("Final label" in s.value for s in at.success)
    assert any("No disagreement" in i.value for i in at.info)
    latest = workbench().store.latest_labels().set_index("user_id").loc[row["user_id"]]
    assert (int(latest["label"]), latest["analyst"], latest["reason"], latest["source"]) == (
        1, "lea", "adjudication", "analyst")
    assert latest["note"] == "lea: the device change settles it"


def test_case_page_hides_the_first_decision_from_a_pending_blind_reviewer(sampled_home):
    row = decide_top("legit")
    at = open_case(app(analyst_name="bob").run(), row["user_id"])
    no_errors(at)
    assert any("blind second review" in i.value for i in at.info)
    assert not any("last decision" in m.value for m in at.markdown)
    at = open_case(app(analyst_name="ana").run(), row["user_id"])
    assert any("last decision: legit" in m.value for m in at.markdown)


def test_case_conflict_keeps_the_losers_note_and_says_who_won(home):
    row = workbench().queue().iloc[0]
    at = open_case(app(analyst_name="ana").run(), row["user_id"])   # ana opens the case ...
    decide_top("legit", analyst="bob", note="bob: normal shopper")   # ... bob decides it meanwhile
    note = "ana: new device, then three declined cards"
    at.selectbox[0].set_value("payment_fraud")
    at.text_area(key=f"note_{row['user_id']}").input(note)
    at.get("form_submit_button")[0].click().run()   # Confirm fraud on the stale case
    assert not at.exception
    errors = [shown(e.value) for e in at.error]
    assert len(errors) == 1 and "Not recorded" in errors[0] and "Rejected (legit) by bob" in errors[0]
    assert note in errors[0], "the note is shown ..."
    assert at.text_area(key=f"note_{row['user_id']}").value == note, "... and still in the text area"
    labels = workbench().label_history().query("source == 'analyst'")
    assert labels[["analyst", "note"]].values.tolist() == [["bob", "bob: normal shopper"]]
    # submitting again on the reloaded case is a deliberate new decision (append-only; the latest wins)
    at.get("form_submit_button")[0].click().run()
    no_errors(at)
    assert any(s.value == "Decision recorded" for s in at.success)
    assert workbench().label_history().query("source == 'analyst'")["analyst"].tolist() == ["bob", "ana"]


def test_case_page_shows_an_imported_outcome(home, tmp_path):
    from analyst.ingest import ingest_labels

    user = workbench().queue().iloc[0]["user_id"]
    path = tmp_path / "chargebacks.csv"
    pd.DataFrame({"user_id": [user], "label": ["fraud"], "reason": ["chargeback"]}).to_csv(path, index=False)
    ingest_labels(workbench().store, path)
    at = open_case(app().run(), user)
    no_errors(at)
    assert any("outcome imported: fraud" in m.value for m in at.markdown)


def test_blind_means_blind_in_the_report_the_labels_page_and_its_exports(sampled_home, tmp_path):
    """Issue 15: the first decision stays hidden from a pending blind reviewer in the downloaded
    case report, the Labels page, its CSV / Parquet export and the linked accounts."""
    from analyst import report

    wb = workbench()
    row = decide_top("legit")
    user = str(row["user_id"])
    view = wb.case(user)
    assert SECRET in report.case_report_html(view)                      # the first analyst's own report
    blind_page = report.case_report_html(view, blind=True)
    assert SECRET not in blind_page and "ana" not in blind_page.split("<h2>Decision</h2>")[1]
    for fmt in ("csv", "parquet"):
        mine = pd.read_csv(wb.export_labels(tmp_path / f"bob.{fmt}", viewer="bob")) if fmt == "csv" else \
            pd.read_parquet(wb.export_labels(tmp_path / f"bob.{fmt}", viewer="bob"))
        assert user not in set(mine["user_id"].astype(str))
    carol = pd.read_csv(wb.export_labels(tmp_path / "carol.csv", viewer="ana"))   # ana decided it: not blind
    assert user in set(carol["user_id"].astype(str))
    at = app(analyst_name="bob").run()
    at.switch_page("analyst/views/labels.py")
    at.run()
    no_errors(at)
    text = page_text(at)
    assert SECRET not in text and user not in set(at.dataframe[0].value["user_id"].astype(str))
    linked = [u for e in wb.links(user, max_users=50, viewer="bob")["entities"] for u in e["users"]
              if u["user_id"] in wb.blind_users("bob")]
    assert all(u["decision"] is None for u in linked)
