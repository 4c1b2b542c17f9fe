"""Delayed ground truth: chargeback / refund outcomes imported with `sleuth ingest --labels FILE`
land as source=import labels, show on the user's case and count in the model's metrics."""
from __future__ import annotations

import pandas as pd
import pytest

from analyst.ingest import ingest_labels
from analyst.service import Workbench


@pytest.fixture
def wb(home_copy):
    bench = Workbench(home_copy)
    yield bench
    bench.close()


def unlabelled_users(wb: Workbench, n: int) -> list[str]:
    labelled = set(wb.store.latest_labels()["user_id"])
    return [u for u in wb.store.users()["user_id"] if u not in labelled][:n]


def test_imported_outcomes_join_cases_and_count_in_model_metrics(wb, tmp_path):
    version = wb.current_version()
    assert wb.model_metrics(version)["n"] == 0
    case_user = wb.queue().iloc[0]["user_id"]
    other = [u for u in unlabelled_users(wb, 5) if u != case_user][:2]
    # a chargeback file without a source column: stored as source=import
    chargebacks = tmp_path / "chargebacks.csv"
    pd.DataFrame({"user_id": [case_user, *other], "label": ["fraud", "legit", "fraud"],
                  "reason": ["chargeback", "refund_settled", "chargeback"]}).to_csv(chargebacks, index=False)
    report = ingest_labels(wb.store, chargebacks)
    assert (report.accepted, report.rejected) == (3, 0)

    view = wb.case(case_user)
    imported = view.labels[view.labels["source"] == "import"]
    assert imported[["label", "reason"]].values.tolist() == [[1, "chargeback"]], "the case shows the outcome"
    assert view.case is not None and view.case["user_id"] == case_user

    metrics = wb.model_metrics(version)
    assert metrics["n"] == 3 and metrics["positives"] == 2, "imported outcomes count as reviewed cases"


def test_a_later_chargeback_overrides_an_analyst_decision_in_metrics(wb, tmp_path):
    version = wb.current_version()
    row = wb.queue().iloc[0]
    wb.decide(row["user_id"], "legit", analyst="ana", reason_code="legitimate_behaviour", quality="useful",
              note="looked fine", case_id=int(row["case_id"]), expected_version=int(row["version"]))
    assert (wb.model_metrics(version)["n"], wb.model_metrics(version)["positives"]) == (1, 0)
    outcome = tmp_path / "outcome.csv"
    pd.DataFrame({"user_id": [row["user_id"]], "label": [1], "source": ["import"],
                  "note": ["chargeback 30 days later"]}).to_csv(outcome, index=False)
    ingest_labels(wb.store, outcome)
    latest = wb.store.latest_labels().set_index("user_id").loc[row["user_id"]]
    assert (latest["source"], int(latest["label"])) == ("import", 1), "append-only: the latest wins"
    metrics = wb.model_metrics(version)
    assert (metrics["n"], metrics["positives"]) == (1, 1), "same user, now counted with its true outcome"
    history = wb.store.label_history(row["user_id"])
    assert list(history["source"].iloc[-2:]) == ["analyst", "import"], "the analyst's decision stays in history"
