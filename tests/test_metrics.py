"""models.metrics: the evaluate metric dict, thresholds, recall per group, card precision@k."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from models.metrics import (
    METRIC_KEYS, card_precision_at_k, classification_metrics, null_metrics, precision_at_k,
    prevalence_threshold, recall_by_group, top_k_threshold,
)


def test_metric_dict_matches_sklearn_and_hand_counts():
    y = np.array([0, 0, 1, 1, 0, 1, 0, 0])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9, 0.7, 0.05])
    m = classification_metrics(y, s, threshold=0.5)
    assert tuple(m) == METRIC_KEYS
    assert m["auprc"] == pytest.approx(average_precision_score(y, s))
    assert m["auroc"] == pytest.approx(roc_auc_score(y, s))
    # flagged: 0.8 (pos), 0.9 (pos), 0.7 (neg) -> precision 2/3, recall 2/3
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["threshold"] == 0.5
    # k defaults to the number of positives (3): top 3 = 0.9 pos, 0.8 pos, 0.7 neg
    assert m["k"] == 3 and m["precision_at_k"] == pytest.approx(2 / 3)
    assert classification_metrics(y, s, k=2)["precision_at_k"] == 1.0


def test_perfect_and_reversed_rankings():
    y = np.array([0, 0, 0, 1, 1])
    s = np.arange(5, dtype=float)
    assert classification_metrics(y, s)["auprc"] == pytest.approx(1.0)
    assert classification_metrics(y, -s)["auroc"] == pytest.approx(0.0)


def test_no_threshold_gives_null_threshold_metrics():
    m = classification_metrics([0, 1, 0, 1], [0.1, 0.9, 0.3, 0.6])
    assert m["threshold"] is None and m["f1"] is None and m["precision"] is None
    assert m["auroc"] == pytest.approx(1.0)


def test_one_class_gives_nulls_not_errors():
    m = classification_metrics([0, 0, 0], [0.1, 0.5, 0.2], threshold=0.3)
    assert m["auprc"] is None and m["auroc"] is None and m["f1"] is None
    assert m["precision_at_k"] is None and m["k"] is None
    m = classification_metrics([1, 1], [0.1, 0.5], k=1)
    assert m["auroc"] is None and m["k"] == 1
    assert null_metrics(5) == {**dict.fromkeys(METRIC_KEYS), "k": 5}


@pytest.mark.parametrize("y,s", [
    ([0, 2, 1], [0.1, 0.2, 0.3]),          # not binary
    ([0, 1], [0.1, 0.2, 0.3]),             # length mismatch
    ([0, 1, 1], [0.1, np.nan, 0.3]),       # NaN score
])
def test_bad_inputs_raise_value_error(y, s):
    with pytest.raises(ValueError):
        classification_metrics(y, s)


def test_bad_k_raises():
    with pytest.raises(ValueError, match="k=0"):
        classification_metrics([0, 1], [0.2, 0.3], k=0)
    with pytest.raises(ValueError):
        precision_at_k([0, 1], [0.2, 0.3], 3)


def test_prevalence_threshold_flags_the_expected_count():
    rng = np.random.default_rng(0)
    s = rng.random(1000)
    thr = prevalence_threshold(s, 0.03)
    assert (s >= thr).sum() == 30
    assert top_k_threshold(s, 1) == s.max()
    with pytest.raises(ValueError):
        prevalence_threshold(s, 0.0)


def test_prevalence_threshold_handles_ties_without_flagging_everything():
    # 3 high scores, 97 tied low scores: rate 5 % -> k = 5; flagging the tie would flag 100
    s = np.r_[[0.9, 0.8, 0.7], np.full(97, 0.01)]
    thr = prevalence_threshold(s, 0.05)
    assert (s >= thr).sum() == 3
    # if the tie group is closer to k than the strictly-higher group, it is flagged
    s2 = np.r_[[0.9], np.full(5, 0.5), np.full(94, 0.1)]
    assert (s2 >= prevalence_threshold(s2, 0.05)).sum() == 6


def test_recall_by_group():
    y = [1, 1, 1, 1, 0, 1]
    s = [0.9, 0.2, 0.8, 0.7, 0.95, 0.1]
    g = ["ato", "ato", "card", "card", None, None]
    out = recall_by_group(y, s, g, threshold=0.5)
    assert out == {"ato": 0.5, "card": 1.0, "unknown": 0.0}
    assert recall_by_group(y, [1, 0, 1, 1, 1, 0], g) == out
    with pytest.raises(ValueError, match="threshold"):
        recall_by_group(y, s, g)


def _handbook_card_precision(df: pd.DataFrame, top_k: int) -> float:
    """The handbook's card_precision_top_k (chapter 4.2), transcribed as a reference."""
    detected: list = []
    per_day = []
    for day in sorted(df["TX_TIME_DAYS"].unique()):
        d = df[df["TX_TIME_DAYS"] == day][["predictions", "CUSTOMER_ID", "TX_FRAUD"]]
        d = d[~d["CUSTOMER_ID"].isin(detected)]
        d = d.groupby("CUSTOMER_ID").max().sort_values(by="predictions", ascending=False)
        d = d.reset_index(drop=False).head(top_k)
        hits = list(d[d["TX_FRAUD"] == 1]["CUSTOMER_ID"])
        per_day.append(len(hits) / top_k)
        detected.extend(hits)
    return float(np.mean(per_day))


def test_card_precision_hand_example():
    # day 0: cards a (fraud), b, c; k=2 -> top a (0.9), b (0.5): 1/2; a is now detected
    # day 1: a (fraud again, removed), c (fraud, 0.4), d (0.3): top c, d -> 1/2
    days = [0, 0, 0, 0, 1, 1, 1]
    cards = ["a", "a", "b", "c", "a", "c", "d"]
    y = [1, 0, 0, 0, 1, 1, 0]
    s = [0.9, 0.1, 0.5, 0.2, 0.99, 0.4, 0.3]
    assert card_precision_at_k(days, cards, y, s, k=2) == pytest.approx(0.5)
    # without removal day 1's top-2 is a (fraud), c (fraud) -> 1.0; mean 0.75
    assert card_precision_at_k(days, cards, y, s, k=2, remove_detected=False) == pytest.approx(0.75)


def test_card_precision_matches_handbook_reference():
    rng = np.random.default_rng(3)
    n = 3000
    df = pd.DataFrame({
        "TX_TIME_DAYS": rng.integers(0, 7, n),
        "CUSTOMER_ID": rng.integers(0, 400, n),
        "TX_FRAUD": (rng.random(n) < 0.05).astype(int),
    })
    df["predictions"] = rng.random(n) + 0.5 * df["TX_FRAUD"]
    ref = _handbook_card_precision(df, 20)
    got = card_precision_at_k(df["TX_TIME_DAYS"], df["CUSTOMER_ID"], df["TX_FRAUD"],
                              df["predictions"], k=20)
    assert got == pytest.approx(ref)
    assert 0.0 < got < 1.0
