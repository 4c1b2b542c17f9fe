"""The use cases the app and the CLI share, against a real DuckDB file and a tiny trained model."""
from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from analyst.service import BACKTEST_SHARE, ConflictError, Workbench
from tests.conftest import tiny_scorer_config


@pytest.fixture
def wb(home_copy):
    bench = Workbench(home_copy)
    yield bench
    bench.close()


def test_queue_lists_open_cases_riskiest_first(wb):
    queue = wb.queue()
    assert len(queue) == 6
    assert list(queue["risk"]) == sorted(queue["risk"], reverse=True)
    assert set(queue["why"]) == {"high_risk"}
    labelled = set(wb.store.latest_labels()["user_id"])
    assert not set(queue["user_id"]) & labelled, "cases must go to users nobody has labelled yet"
    assert queue["top_reason"].str.len().gt(0).all(), "every case carries its top reason"


def test_the_case_page_risk_of_a_long_user_is_the_queues(wb):
    """A user with more events than the model reads: the case page explains the latest
    max_events, with the earlier ones as history, so it shows the risk the queue scored."""
    limit = wb.scorer().max_events
    scores = wb.store.latest_scores(wb.current_version()).set_index("user_id")["score"]
    counts = wb.store.events().groupby("user_id").size()
    longest = counts.sort_values(ascending=False).index[:3]
    assert counts[longest[0]] > limit + 10
    for user in longest:
        view = wb.case(str(user))
        assert len(view.timeline) == limit and view.header["events"] == counts[user]
        assert view.risk == pytest.approx(float(scores[user]), abs=1e-5)


def test_queue_filters(wb):
    queue = wb.queue()
    cut = float(queue["risk"].median())
    high = wb.queue(min_risk=cut)
    assert len(high) < len(queue) and (high["risk"] >= cut).all()
    assert wb.queue(event_types=["no_such_event_type"]).empty
    with pytest.raises(ValueError, match="sort"):
        wb.queue(sort="colour")


def test_case_view_carries_timeline_explanation_and_header(wb):
    user = wb.queue().iloc[0]["user_id"]
    view = wb.case(user)
    assert view.model_version == wb.current_version()
    for column in ("risk", "surprise", "attribution"):
        assert column in view.timeline.columns and view.timeline[column].notna().all()
    assert 0.0 <= view.risk <= 1.0
    assert view.timeline["risk"].iloc[-1] == pytest.approx(view.risk, abs=1e-4)
    assert view.header["events"] >= len(view.timeline)
    assert view.explanation.reasons, "plain-word reasons are part of the case"
    assert view.ground_truth is not None and view.ground_truth["label"] in (0, 1)


def test_explanation_is_frozen_with_its_model_version(wb):
    user = wb.queue().iloc[0]["user_id"]
    version = wb.current_version()
    stored = wb.store.get_explanation(user, version)
    assert stored is not None, "cases opened by `score` get their explanation at alert time"
    again = wb.explanation(user)
    assert again.to_dict() == stored


def test_an_explanation_made_by_an_older_method_is_recomputed(wb):
    """Records without a method (made with the all-PAD baseline) are never shown: the next read
    explains again with the current method and stores it as a new row (the old one stays)."""
    from models.explain import METHOD

    user, version = str(wb.queue().iloc[0]["user_id"]), wb.current_version()
    current = wb.explanation(user)
    assert current.method == METHOD
    at = wb.model_window(user)[0]["ts"].iloc[-1]
    old = {k: v for k, v in current.to_dict().items() if k != "method"}
    old["reasons"] = ["made by the old method"]
    wb.store.save_explanation(user, version, at, old)
    assert wb.store.get_explanation(user, version, at)["reasons"] == ["made by the old method"]
    again = wb.explanation(user)
    assert again.method == METHOD and again.reasons != ("made by the old method",)
    assert wb.store.get_explanation(user, version, at)["method"] == METHOD


def test_decide_writes_label_audit_and_closes_case(wb):
    row = wb.queue().iloc[0]
    before = len(wb.store.label_history())
    decision = wb.decide(row["user_id"], "fraud", analyst="ana", reason_code="payment_fraud",
                         quality="useful", note="card testing burst", case_id=int(row["case_id"]),
                         expected_version=int(row["version"]))
    history = wb.store.label_history()
    assert len(history) == before + 1
    latest = wb.store.latest_labels().set_index("user_id").loc[row["user_id"]]
    assert int(latest["label"]) == 1 and latest["analyst"] == "ana" and latest["source"] == "analyst"
    assert wb.store.case(int(row["case_id"]))["status"] == "decided"
    audit = wb.audit(row["user_id"])
    assert (audit["action"] == "decide").any() and (audit["actor"] == "ana").any()
    assert decision.next_case_id is not None and decision.next_case_id != int(row["case_id"])
    assert row["user_id"] not in set(wb.queue()["user_id"])


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(note="  "), ValueError, "note"),
    (dict(decision="maybe"), ValueError, "decision"),
    (dict(reason_code="vibes"), ValueError, "reason_code"),
    (dict(analyst=""), PermissionError, "no identity given"),
])
def test_bad_decisions_are_refused_and_write_nothing(wb, kwargs, error, match):
    row = wb.queue().iloc[0]
    args = dict(decision="legit", analyst="ana", reason_code="legitimate_behaviour", quality="useful",
                note="looks fine", case_id=int(row["case_id"]))
    args.update(kwargs)
    before = (len(wb.store.label_history()), len(wb.audit()))
    with pytest.raises(error, match=match):
        wb.decide(row["user_id"], **args)
    assert (len(wb.store.label_history()), len(wb.audit())) == before


def test_two_analysts_on_one_case_one_wins_other_is_told(wb):
    row = wb.queue().iloc[0]
    results: dict[str, object] = {}

    def decide(analyst: str, decision: str) -> None:
        try:
            results[analyst] = wb.decide(row["user_id"], decision, analyst=analyst,
                                         reason_code="other", quality="useful", note=f"{analyst} says",
                                         case_id=int(row["case_id"]), expected_version=int(row["version"]))
        except ConflictError as exc:
            results[analyst] = exc

    threads = [threading.Thread(target=decide, args=(a, d)) for a, d in (("ana", "fraud"), ("bob", "legit"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    outcomes = sorted(type(r).__name__ for r in results.values())
    assert outcomes == ["ConflictError", "Decision"]
    user_labels = wb.store.label_history(row["user_id"])
    assert len(user_labels[user_labels["source"] == "analyst"]) == 1, "exactly one decision landed"


def test_export_labels_csv_and_parquet(wb, tmp_path):
    csv = wb.export_labels(tmp_path / "labels.csv")
    parquet = wb.export_labels(tmp_path / "labels.parquet")
    n = len(wb.label_history())
    assert len(pd.read_csv(csv)) == n == len(pd.read_parquet(parquet))
    with pytest.raises(ValueError, match="format"):
        wb.export_labels(tmp_path / "labels.xlsx")


def test_what_if_removing_events_changes_risk(wb):
    user = wb.queue().iloc[0]["user_id"]
    view = wb.case(user)
    top = view.timeline["attribution"].abs().nlargest(5).index.tolist()
    assert wb.what_if(user, []) == pytest.approx(view.risk, abs=1e-4)
    assert wb.what_if(user, top) != pytest.approx(view.risk, abs=1e-6)
    with pytest.raises(ValueError, match="out of range"):
        wb.what_if(user, [10_000])


def test_neighbours_are_labelled_users(wb):
    user = wb.queue().iloc[0]["user_id"]
    neighbours = wb.neighbours(user, k=3)
    labelled = set(wb.store.latest_labels()["user_id"])
    assert len(neighbours) == 3 and set(neighbours["user_id"]) <= labelled
    assert list(neighbours["similarity"]) == sorted(neighbours["similarity"], reverse=True)


def test_background_retrain_makes_a_candidate_then_promote_and_rollback(wb):
    first = wb.current_version()
    job = wb.start_retrain("ana", config=tiny_scorer_config(seed=1))
    deadline = time.monotonic() + 180
    while not job.done and time.monotonic() < deadline:
        wb.queue()  # the workbench stays usable while training runs
        time.sleep(0.2)
    assert job.done and job.error is None, job.error
    new = job.result["version"]
    assert wb.current_version() == first, "a retrained version waits for an explicit promote"
    wb.promote(new, "ana")
    assert wb.current_version() == new
    assert wb.rollback("ana") == first and wb.current_version() == first
    actions = set(wb.audit()["action"])
    assert {"train", "promote", "rollback"} <= actions


def test_model_metrics_use_reviewed_cases_the_version_never_saw(wb):
    from analyst.synthetic import SyntheticConfig, generate

    version = wb.current_version()
    assert wb.model_metrics(version)["n"] == 0, "training labels (source synthetic) are not reviewed cases"
    _, truth = generate(SyntheticConfig(n_users=60, seed=3, fraud_rate=0.25))  # same as the tiny home
    truth = truth.set_index("user_id")["label"]
    labelled = set(wb.store.latest_labels()["user_id"])
    unlabelled = [u for u in truth.index if u not in labelled]
    positives = [u for u in unlabelled if truth[u] == 1][:4]
    negatives = [u for u in unlabelled if truth[u] == 0][:8]
    for user in positives + negatives:
        wb.decide(user, "fraud" if truth[user] else "legit", analyst="ana", reason_code="other",
                  quality="useful", note="checked against ground truth")

    metrics = wb.model_metrics(version)
    assert metrics["n"] == len(positives) + len(negatives) and metrics["positives"] == len(positives)
    assert set(metrics["precision_at_k"]) == {10}
    assert 0.0 <= metrics["precision_at_k"][10] <= 1.0
    assert metrics["pr_curve"]["recall"][0] == 1.0 and metrics["pr_curve"]["recall"][-1] == 0.0
    assert len(metrics["calibration"]["prob_pred"]) == len(metrics["calibration"]["prob_true"]) >= 1
    assert 0.0 <= metrics["average_precision"] <= 1.0 and 0.0 <= metrics["auc_roc"] <= 1.0

    decided = len(positives) + len(negatives)
    held = math.ceil(BACKTEST_SHARE * decided)
    new = wb.train(config=tiny_scorer_config(seed=1), progress=False)
    snapshot = json.loads(wb.models().set_index("version").loc[new, "data_snapshot"])
    assert len(snapshot["backtest_label_ids"]) == held, "the most recent reviewed labels are held out of the retrain"
    latest = wb.store.latest_labels()
    assert set(snapshot["backtest_label_ids"]) == set(latest.nlargest(held, "label_id")["label_id"])
    assert wb.model_metrics(new)["n"] == held
    both_new, both_old = wb.model_metrics(new, compare_with=version), wb.model_metrics(version, compare_with=new)
    assert both_new["n"] == both_old["n"] == held and both_new["positives"] == both_old["positives"]
    later = wb.train(config=tiny_scorer_config(seed=2), progress=False, backtest_share=0.0)
    assert wb.model_metrics(later)["n"] == 0, "trained on every decision: nothing held out"
    with pytest.raises(ValueError, match="backtest_share"):
        wb.train(backtest_share=1.0)
    with pytest.raises(LookupError, match="no model version"):
        wb.model_metrics("v-missing")


def test_a_contradicting_reason_is_refused_by_the_service(wb):
    row = wb.queue().iloc[0]
    before = (len(wb.store.label_history()), len(wb.audit()))
    with pytest.raises(ValueError, match="contradicts"):
        wb.decide(row["user_id"], "legit", analyst="ana", reason_code="payment_fraud", quality="useful",
                  note="looks fine", case_id=int(row["case_id"]))
    assert (len(wb.store.label_history()), len(wb.audit())) == before


def test_one_view_uses_one_model_version_from_start_to_end(wb):
    """A handle bound before a promotion keeps explaining with its own version, and a version's
    window is cut with that version's max_events, not the current model's."""
    first = wb.model()
    other = wb.train(config=tiny_scorer_config(seed=1, max_events=20), progress=False)
    user = wb.store.events().groupby("user_id").size().idxmax()
    wb.promote(other, "ana")
    view = wb.case(user, model=first)
    assert view.model_version == first.version and view.explanation.model_version == first.version
    assert len(view.timeline) == min(first.max_events, view.header["events"])
    exp = wb.explanation(user, version=first.version)
    assert len(exp.risk_history) == len(view.timeline)
    current = wb.case(user)
    assert current.model_version == other and len(current.timeline) == 20
    assert wb.what_if(user, [0], model=first) == pytest.approx(
        wb.what_if(user, [0], model=wb.model(first.version)))


def test_train_register_audit_and_promote_commit_together(wb, monkeypatch):
    """A failure inside the registering transaction leaves no version row, no audit row and the
    current model as it was; the version's files are removed."""
    from analyst.store import database

    before_models, before_audit, current = len(wb.models()), len(wb.audit()), wb.current_version()
    real = database._write_audit

    def failing(cur, at, actor, action, **kw):
        if action == "train":
            raise RuntimeError("killed between register and audit")
        return real(cur, at, actor, action, **kw)

    monkeypatch.setattr(database, "_write_audit", failing)
    with pytest.raises(RuntimeError, match="killed"):
        wb.train(config=tiny_scorer_config(seed=4), progress=False)
    assert len(wb.models()) == before_models and len(wb.audit()) == before_audit
    assert wb.current_version() == current
    registered = {Path(p).name for p in wb.models()["path"]}
    on_disk = {p.name for p in wb.settings.model_dir.iterdir()}
    assert on_disk == registered, f"left on disk: {on_disk - registered}"
