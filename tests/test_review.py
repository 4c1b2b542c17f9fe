"""Blind second review, agreement (Cohen's kappa) and adjudication, against a real DuckDB file and a
tiny trained model (tests/conftest.py `home_copy`)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from analyst.config import Settings
from analyst.service.review import BLIND_CASE_FIELDS, kappa, sampled
from analyst.service import ConflictError, Workbench


@pytest.fixture
def wb(home_copy):
    bench = Workbench(replace(home_copy, second_review_share=1.0))  # every decided case is sampled
    yield bench
    bench.close()


def open_more_cases(wb: Workbench, n: int) -> None:
    """Open cases for `n` more users that have no label and no case (the tiny home has 6)."""
    users = set(wb.store.users()["user_id"])
    taken = set(wb.store.latest_labels()["user_id"]) | set(wb.store.cases()["user_id"])
    free = sorted(users - taken)[:n]
    assert len(free) == n, "the tiny home has enough unlabelled users"
    scores = wb.store.latest_scores().set_index("user_id")["score"]
    wb.store.open_cases(pd.DataFrame({"user_id": free, "score": [float(scores[u]) for u in free],
                                      "why": "high_risk"}), wb.current_version())


def decide(wb: Workbench, row, analyst: str, decision: str, note: str | None = None):
    return wb.decide(row["user_id"], decision, analyst=analyst, quality="useful",
                     reason_code="payment_fraud" if decision == "fraud" else "legitimate_behaviour",
                     note=note or f"{analyst}: {decision}", case_id=int(row["case_id"]),
                     expected_version=int(row["version"]))


# ---------------------------------------------------------------------------------- sampling, settings
def test_sample_is_deterministic_per_case_and_about_the_share():
    ids = range(1, 5001)
    tenth = [sampled(i, 0.1) for i in ids]
    assert tenth == [sampled(i, 0.1) for i in ids], "the same case is always in or out"
    assert 0.08 < np.mean(tenth) < 0.12
    fifth = [sampled(i, 0.2) for i in ids]
    assert all(f for t, f in zip(tenth, fifth) if t), "raising the share only adds cases"
    assert not any(sampled(i, 0.0) for i in ids) and all(sampled(i, 1.0) for i in ids)
    with pytest.raises(ValueError, match="share"):
        sampled(1, 1.5)


def test_second_review_share_setting_from_env():
    assert Settings.from_env(env={}).second_review_share == 0.1
    assert Settings.from_env(env={"SLEUTH_SECOND_REVIEW_SHARE": "0.25"}).second_review_share == 0.25
    for bad in ("2", "-0.1", "ten", "nan"):
        with pytest.raises(ValueError, match="SLEUTH_SECOND_REVIEW_SHARE"):
            Settings.from_env(env={"SLEUTH_SECOND_REVIEW_SHARE": bad})


def test_due_follows_the_configured_share(home_copy):
    bench = Workbench(replace(home_copy, second_review_share=0.0))
    try:
        row = bench.queue().iloc[0]
        decide(bench, row, "ana", "fraud")
        assert bench.second_reviews_due("bob").empty, "share 0: nothing goes to a second review"
    finally:
        bench.close()


def test_kappa_helper_matches_sklearn_and_is_none_when_undefined():
    a, b = [1, 0, 1, 1, 0, 0], [1, 0, 0, 1, 0, 1]
    assert kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))
    assert kappa([1, 1, 1], [1, 1, 1]) is None and kappa([1], [0]) is None and kappa([], []) is None


# ---------------------------------------------------------------------------------- the review loop
def test_blind_second_review_then_adjudication(wb):
    queue = wb.queue()
    agree_row, disagree_row = queue.iloc[0], queue.iloc[1]
    decide(wb, agree_row, "ana", "fraud")
    decide(wb, disagree_row, "ana", "legit", note="ana: normal shopper")
    labels_before = len(wb.label_history())

    assert wb.second_reviews_due("ana").empty, "nobody second-reviews their own decision"
    due = wb.second_reviews_due("bob")
    assert set(due["case_id"]) == {int(agree_row["case_id"]), int(disagree_row["case_id"])}
    assert list(due.columns) == ["case_id", "user_id", "opened_at", "score"], "blind: no decision columns"

    blind = wb.blind_case(int(disagree_row["case_id"]), "bob")
    assert blind.labels.empty and blind.audit.empty
    assert set(blind.case) == set(BLIND_CASE_FIELDS)
    assert blind.user_id == disagree_row["user_id"] and len(blind.timeline) > 0
    with pytest.raises(ValueError, match="reviewer"):
        wb.blind_case(int(disagree_row["case_id"]), "ana")
    with pytest.raises(ValueError, match="reviewer"):
        wb.second_review(int(agree_row["case_id"]), "fraud", reviewer="ana", reason_code="other", note="me again")

    first = wb.second_review(int(agree_row["case_id"]), "fraud", reviewer="bob", reason_code="payment_fraud",
                             note="bob: agrees")
    second = wb.second_review(int(disagree_row["case_id"]), "fraud", reviewer="bob", reason_code="account_takeover",
                              note="bob: new device then card testing")
    assert first.agrees and not second.agrees
    assert len(wb.label_history()) == labels_before, "a second review is not a label"
    assert wb.second_reviews_due("bob").empty and wb.second_reviews_due("carl").empty
    with pytest.raises(ConflictError, match="already has a second review") as err:
        wb.second_review(int(agree_row["case_id"]), "legit", reviewer="carl", reason_code="other", note="carl: late")
    assert err.value.note == "carl: late", "the loser's note comes back"
    audit = wb.audit(disagree_row["user_id"])
    assert (audit["action"] == "second_review").sum() == 1

    pending = wb.disagreements()
    assert len(pending) == 1
    item = pending.iloc[0]
    assert (item["case_id"], item["first_analyst"], item["first_decision"], item["reviewer"],
            item["second_decision"]) == (int(disagree_row["case_id"]), "ana", "legit", "bob", "fraud")
    assert item["first_note"] == "ana: normal shopper" and item["second_note"] == "bob: new device then card testing"

    for who in ("ana", "bob"):
        with pytest.raises(ValueError, match="adjudicator"):
            wb.adjudicate(int(item["review_id"]), "fraud", adjudicator=who, reason_code="other", note="mine")
    with pytest.raises(ValueError, match="agree"):
        wb.adjudicate(first.review_id, "fraud", adjudicator="lea", reason_code="other", note="nothing to do")
    done = wb.adjudicate(int(item["review_id"]), "fraud", adjudicator="lea", reason_code="account_takeover",
                         note="lea: the device change settles it")
    latest = wb.store.latest_labels().set_index("user_id").loc[disagree_row["user_id"]]
    assert int(latest["label_id"]) == done.label_id
    assert (int(latest["label"]), latest["source"], latest["analyst"], latest["reason"]) == (
        1, "analyst", "lea", "adjudication")
    history = wb.store.label_history(disagree_row["user_id"])
    assert list(history.loc[history["source"] == "analyst", "label"]) == [0, 1], "append-only: both rows stay"
    assert wb.disagreements().empty
    assert len(wb.disagreements(include_adjudicated=True)) == 1
    adjudicated = wb.audit(disagree_row["user_id"]).query("action == 'adjudicate'")
    assert adjudicated[["actor", "new"]].values.tolist() == [["lea", "fraud"]]
    with pytest.raises(ConflictError, match="adjudicated") as err:
        wb.adjudicate(int(item["review_id"]), "legit", adjudicator="max", reason_code="other", note="max: late")
    assert err.value.note == "max: late"


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(decision="escalate"), ValueError, "decision"),
    (dict(note="  "), ValueError, "note"),
    (dict(reason_code="vibes"), ValueError, "reason_code"),
    (dict(reviewer=""), PermissionError, "no identity given"),
])
def test_bad_second_reviews_are_refused(wb, kwargs, error, match):
    row = wb.queue().iloc[0]
    decide(wb, row, "ana", "fraud")
    args = dict(decision="fraud", reviewer="bob", reason_code="other", note="ok")
    args.update(kwargs)
    with pytest.raises(error, match=match):
        wb.second_review(int(row["case_id"]), **args)
    assert wb.store.reviews().empty


def test_undecided_case_cannot_be_reviewed(wb):
    row = wb.queue().iloc[0]
    with pytest.raises(LookupError, match="not decided"):
        wb.second_review(int(row["case_id"]), "fraud", reviewer="bob", reason_code="other", note="early")


def test_agreement_kappa_per_pair_and_against_the_model(wb):
    open_more_cases(wb, 6)
    queue = wb.queue()
    assert len(queue) == 12
    first = ["fraud", "fraud", "legit", "legit", "fraud", "legit", "fraud", "legit", "legit", "fraud"]
    second = ["fraud", "legit", "legit", "legit", "fraud", "fraud", "fraud", "legit", "fraud", "fraud"]
    reviewer = ["bob"] * 7 + ["carl"] * 3
    for i in range(10):
        decide(wb, queue.iloc[i], "ana", first[i])
    for i in range(10):
        wb.second_review(int(queue.iloc[i]["case_id"]), second[i], reviewer=reviewer[i], reason_code="other",
                         note="second look")

    result = wb.agreement()
    y1 = np.array([f == "fraud" for f in first], dtype=int)
    y2 = np.array([s == "fraud" for s in second], dtype=int)
    assert result.n_reviews == 10
    assert result.kappa == pytest.approx(cohen_kappa_score(y1, y2))
    assert result.agreement == pytest.approx(float((y1 == y2).mean()))
    pairs = result.pairs.set_index(["rater_a", "rater_b"])
    assert list(pairs.index) == [("ana", "bob"), ("ana", "carl")]
    assert pairs.loc[("ana", "bob"), "n"] == 7 and pairs.loc[("ana", "carl"), "n"] == 3
    assert pairs.loc[("ana", "bob"), "kappa"] == pytest.approx(cohen_kappa_score(y1[:7], y2[:7]))

    # analyst vs model: the model says fraud when the current version's latest score >= 0.5
    assert result.threshold == 0.5 and result.model_version == wb.current_version()
    scores = wb.store.latest_scores(wb.current_version()).set_index("user_id")["score"]
    model = result.model.set_index("analyst")
    users = list(queue["user_id"][:10])
    machine = np.array([scores[u] >= 0.5 for u in users], dtype=int)
    assert model.loc["ana", "n"] == 10
    assert model.loc["ana", "agreement"] == pytest.approx(float((y1 == machine).mean()))
    expected = kappa(y1, machine)
    assert (pd.isna(model.loc["ana", "kappa"]) and expected is None) or \
        model.loc["ana", "kappa"] == pytest.approx(expected)
    assert model.loc["bob", "n"] == 7 and model.loc["carl", "n"] == 3
    assert model.loc["(all)", "n"] == 20
    low = wb.agreement(threshold=0.0).model.set_index("analyst")
    assert low.loc["ana", "positives_model"] == 10, "threshold 0: the model calls everyone fraud"
    with pytest.raises(ValueError, match="threshold"):
        wb.agreement(threshold=2)


def test_agreement_with_nothing_reviewed_is_empty(wb):
    result = wb.agreement()
    assert result.n_reviews == 0 and result.kappa is None and result.pairs.empty
